"""Reading the blur: per pixel, the CoC diameter (px) of one image and its uncertainty.

* :mod:`.reblur`    the training-free reading: re-blur edges with the optics' own disc, fit the CoC
* :mod:`.propagate` edge-aware propagation of sparse readings over the image
* :mod:`.reader`    the learned reader: a small CNN on an image pyramid, level fusion, spread
* :mod:`.refiner`   the reader's stage 2 on a quarter-resolution grid

Imports :mod:`depth_defocus_ros.synth.render` (the renderer's disc and sRGB -> linear, so the
training-free fit blurs exactly as the data was rendered); optics is allowed, not needed.
"""
