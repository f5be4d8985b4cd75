"""Synthesis: what makes training and benchmark images from depth, texture and the optics.

* :mod:`.render`   the occlusion-aware thin-lens renderer (disc PSF, PSF shape variety), sRGB <->
  linear, sensor noise / demosaicing / JPEG
* :mod:`.textures` photographs from scikit-image (never the benchmark's) and procedural textures
* :mod:`.layout`   the geometry of a random scene: planes, spheres, boxes ray-cast into depth and colour
* :mod:`.camera`   sampling the lens and sensor of a scene (focal length, f-number, focus distance)
* :mod:`.scenes`   a whole sample (layout + camera + rendering) and datasets of them as shards
* :mod:`.shards`   the shard file format and atomic writes

Imports only :mod:`depth_defocus_ros.optics` from the package.
"""
