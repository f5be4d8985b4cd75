"""Evaluation: how good an estimator is, on data it never trained on.

* :mod:`.heldout`   the held-out synthetic sets (``depth-defocus eval``)
* :mod:`.realbench` the real-photograph benchmark cases (measured depth, re-focused by the optics)
* :mod:`.realeval`  ``eval --real``: per-group metrics, reading tables, kept rates, plots

Imports every group above it; only the CLI and the ROS layer (demo) import it.
"""
