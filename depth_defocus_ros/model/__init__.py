"""The learned model: what inference needs of learning.

* :mod:`.network`    the multi-task network (encoder, depth and defocus decoders, lens features)
* :mod:`.checkpoint` the checkpoint format (versions, kinds ``reader`` / ``network``), saving, loading

Imports optics and :mod:`depth_defocus_ros.reading` (the reader is the network's optional frozen
first stage; the training-free reading is one of its inputs); synth is allowed, not needed.
"""
