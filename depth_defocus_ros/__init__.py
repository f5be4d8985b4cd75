"""depth_defocus_ros: metric depth and defocus from one ordinary camera.

The folders follow the pipeline of DESIGN.md; imports run one way, from the top of this list down
(``test/test_lint.py`` fails on an import that runs back up):

* :mod:`.optics` (this folder) the thin lens: CoC <-> depth, the one definition every stage uses;
  beside it the small helpers :mod:`.paths`, :mod:`.imagecodec`, :mod:`.argtypes`, :mod:`.viz`,
  :mod:`.rosenv`, which import nothing of the package but optics
* :mod:`.synth`      rendering, textures, synthetic scenes and their shards
* :mod:`.reading`    reading the blur of one image: training-free fit, propagation, learned reader
* :mod:`.model`      the multi-task network and its checkpoint format
* :mod:`.estimate`   depth from the reading (side, validity) and the ``Estimator`` of the CLI and node
* :mod:`.learn`      datasets, losses, domain adaptation, training loops, the metrics they validate with
* :mod:`.evaluation` held-out synthetic sets and the real-photograph benchmark
* :mod:`.cli`, :mod:`.bags` (rosbags -> datasets), :mod:`.ros` (the node, demo): the users of all above
"""
