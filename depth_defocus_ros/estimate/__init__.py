"""Estimation: from one image and its lens to metric depth, defocus and validity.

* :mod:`.depthmap`  depth from CoC on either side of the focus plane, the side rule, validity
* :mod:`.estimator` ``Estimator``: loads a checkpoint (or none: training-free), runs one frame

Imports optics, the helpers, and the groups above it (synth, reading, model); used by the CLI, the
node, learning and evaluation.
"""
