"""One frame's outputs of ``depth_defocus_node``: the depth as published (m, NaN outside the
working range) and the messages on the output topics, each built only when it has a subscriber.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo

from ..viz import defocus_preview, depth_preview
from .conversions import camera_info_from_intrinsics, numpy_to_image, points_to_pointcloud2
from .pointcloud import depth_to_points, make_points_array

__all__ = ["published_depth", "publish_outputs"]


def published_depth(depth, cfg) -> np.ndarray:
    """(H, W) float32 m, NaN where not determined (REP 118): not finite or outside
    [``cfg.min_depth_m``, ``cfg.max_depth_m``]."""
    depth = np.asarray(depth, dtype=np.float32)
    invalid = ~np.isfinite(depth) | (depth < cfg.min_depth_m) | (depth > cfg.max_depth_m)
    return np.where(invalid, np.float32(np.nan), depth)


def publish_outputs(pubs: dict, cfg, header, rgb, depth, pred, intr, info) -> None:
    """Publish a frame's outputs with the input ``header`` on the publishers ``pubs`` (by topic):
    ``rgb`` (H, W, 3) the input, ``depth`` from :func:`published_depth`, ``pred`` the estimator's
    prediction, ``intr`` the Intrinsics used and ``info`` the CameraInfo they came from (or None)."""
    h, w = rgb.shape[:2]

    def wanted(name):
        return pubs[name].get_subscription_count() > 0

    if wanted("depth/image"):
        pubs["depth/image"].publish(numpy_to_image(depth, "32FC1", header))
    if wanted("depth/camera_info"):
        ci = camera_info_from_intrinsics(intr, w, h) if info is None else _copy_camera_info(info)
        ci.header = header
        pubs["depth/camera_info"].publish(ci)
    if wanted("defocus/image"):
        pubs["defocus/image"].publish(numpy_to_image(pred.defocus, "32FC1", header))
    if cfg.uncertainty and pred.uncertainty is not None and wanted("depth/uncertainty"):
        pubs["depth/uncertainty"].publish(numpy_to_image(pred.uncertainty, "32FC1", header))
    if wanted("depth/preview"):
        pubs["depth/preview"].publish(
            numpy_to_image(depth_preview(depth, max(cfg.min_depth_m, 0.05), cfg.max_depth_m), "bgr8", header)
        )
    if wanted("defocus/preview"):
        pubs["defocus/preview"].publish(
            numpy_to_image(defocus_preview(pred.defocus, cfg.preview_max_coc_px), "bgr8", header)
        )
    if cfg.publish_points and wanted("points"):
        d = depth
        if cfg.max_uncertainty_m > 0 and pred.uncertainty is not None:
            d = np.where(pred.uncertainty > cfg.max_uncertainty_m, np.float32(np.nan), depth)
        dec = cfg.point_decimation
        pts = make_points_array(depth_to_points(d, intr, dec), rgb[::dec, ::dec])
        pubs["points"].publish(points_to_pointcloud2(pts, header))


def _copy_camera_info(info: CameraInfo) -> CameraInfo:
    out = CameraInfo()
    for f in ("height", "width", "distortion_model", "d", "k", "r", "p", "binning_x", "binning_y", "roi"):
        setattr(out, f, getattr(info, f))
    return out
