"""The ``depth-defocus demo``'s own nodes and set-up (imports rclpy: :mod:`.demo` imports this
module only inside :func:`.demo.run_demo`, so that the core CLI pulls in no ROS).

:class:`Player` publishes the samples as a camera would and sets the node's lens parameters before
each frame; :class:`Listener` collects the node's outputs per input stamp and writes them into the
output folder; :func:`create_nodes` makes the three nodes and :func:`wait_for_discovery` waits until
they are matched over DDS.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..optics import coc_px
from .conversions import camera_info_from_intrinsics, image_to_numpy, numpy_to_image
from .demo import DEMO_NAMESPACE, OUTPUTS
from .node import DepthDefocusNode

__all__ = ["Player", "Listener", "create_nodes", "wait_for_discovery"]

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class Player(Node):
    """Publishes the samples as a camera driver would (Image rgb8 + CameraInfo, same header).

    ``node`` is the depth_defocus_node (its lens parameters are set before each frame, and the next
    frame waits until it is done with the previous one), ``frames`` the samples from
    :func:`.demo.load_samples`, ``rate`` the publishing rate (Hz), ``n_frames`` how many to publish
    (the samples repeat), ``intr`` and ``frame_id`` the camera's."""

    def __init__(self, context, node, frames, *, rate: float, n_frames: int, intr, frame_id: str):
        super().__init__("camera_player", namespace=DEMO_NAMESPACE, context=context)
        self.node, self.frames = node, frames
        self.rate, self.n_frames, self.intr, self.frame_id = rate, n_frames, intr, frame_id
        self.pub_image = self.create_publisher(Image, "image", RELIABLE)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.sent: dict[int, tuple[int, str]] = {}  # stamp ns -> (frame number, sample name)
        self.timer = None
        self.t_last = None

    def start(self):
        self.timer = self.create_timer(1.0 / self.rate, self.tick)

    def tick(self):
        n = len(self.sent)
        if n >= self.n_frames:
            self.timer.cancel()
            return
        node = self.node
        if n and not (node.idle() and node.stats.counts["frames_out"] >= n):
            return  # the previous frame is still being processed with its lens: wait
        name, rgb, _, lens = self.frames[n % len(self.frames)]
        node.set_parameters(
            [
                Parameter("focal_length_mm", value=lens.focal_length_m * 1000.0),
                Parameter("f_number", value=lens.f_number),
                Parameter("focus_distance_m", value=lens.focus_distance_m),
            ]
        )
        img = numpy_to_image(rgb, "rgb8")
        img.header.frame_id = self.frame_id
        img.header.stamp = self.get_clock().now().to_msg()
        info = camera_info_from_intrinsics(self.intr, rgb.shape[1], rgb.shape[0], img.header)
        self.sent[img.header.stamp.sec * 10**9 + img.header.stamp.nanosec] = (n, name)
        self.pub_info.publish(info)
        self.pub_image.publish(img)
        self.t_last = time.monotonic()


class Listener(Node):
    """Collects the node's outputs per input stamp and writes them once all have arrived.

    ``player`` tells which frame a stamp was, ``frames`` are the samples (with the measured depth
    the outputs are compared with), ``out`` the output folder, ``intr`` the camera's intrinsics."""

    def __init__(self, context, player: Player, frames, *, out, intr):
        super().__init__("demo_listener", namespace=DEMO_NAMESPACE, context=context)
        self.player, self.frames, self.out, self.intr = player, frames, out, intr
        types = {"depth/camera_info": CameraInfo, "points": PointCloud2}
        self.subs = [
            self.create_subscription(types.get(t, Image), t, lambda m, t=t: self.on_msg(t, m), RELIABLE)
            for t in OUTPUTS
        ]
        self.pending: dict[int, dict] = {}
        self.done: list[dict] = []
        self.figures: list = []
        self.last = None

    def on_msg(self, topic, msg):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        got = self.pending.setdefault(stamp, {})
        got[topic] = msg
        if topic == "points":
            got["latency_s"] = (self.get_clock().now().nanoseconds - stamp) * 1e-9
            got["t_recv"] = time.monotonic()
        if all(t in got for t in OUTPUTS):
            self.write(stamp, self.pending.pop(stamp))

    def write(self, stamp, got):
        n, name = self.player.sent.get(stamp, (len(self.done), "?"))
        sample = next((f for f in self.frames if f[0] == name), None)
        depth = image_to_numpy(got["depth/image"])  # (H, W) m, NaN invalid
        defocus = image_to_numpy(got["defocus/image"])  # (H, W) px
        self._write_images(n, depth, got)
        rec = {
            "frame": n,
            "sample": name,
            "latency_ms": got["latency_s"] * 1000.0,
            "valid_fraction": float(np.isfinite(depth).mean()),
            "depth_median_m": float(np.nanmedian(depth)) if np.isfinite(depth).any() else None,
            "coc_median_px": float(np.median(defocus)),
        }
        if sample is not None and sample[2] is not None:
            from ..evaluation.realeval import case_metrics

            gt, lens = sample[2], sample[3]
            gt_coc = coc_px(np.nan_to_num(gt, nan=1.0), lens, self.intr.fx)
            gt_coc = np.where(np.isfinite(gt), gt_coc, np.nan)
            rec.update(case_metrics(depth, defocus, gt, gt_coc, lens.focus_distance_m))
            self.figures.append((n, sample, depth, defocus, rec))
        rec["t_recv"] = got["t_recv"]
        self.done.append(rec)
        self.last = (n, name, got["points"])
        print(
            f"  frame {n} ({name}): "
            + (f"CoC MAE {rec['coc_mae']:.2f} px, " if "coc_mae" in rec else "")
            + (f"AbsRel {rec['abs_rel']:.3f} " if "abs_rel" in rec else "")
            + (f"on {rec['coverage']:.0%} of the pixels, " if "coverage" in rec else "")
            + f"latency {rec['latency_ms']:.0f} ms",
            flush=True,
        )

    def _write_images(self, n: int, depth, got) -> None:
        """depth_NNN.png and defocus_NNN.png (the previews), depth_NNN_mm.png (uint16 mm, 0 = none)."""
        out = self.out
        depth_png = image_to_numpy(got["depth/preview"])
        defocus_png = image_to_numpy(got["defocus/preview"])
        cv2.imwrite(str(out / f"depth_{n:03d}.png"), depth_png)
        cv2.imwrite(str(out / f"defocus_{n:03d}.png"), defocus_png)
        mm = np.where(np.isfinite(depth), np.clip(depth * 1000.0, 0, 65535), 0).astype(np.uint16)
        cv2.imwrite(str(out / f"depth_{n:03d}_mm.png"), mm)


def create_nodes(ctx, nodes: list, args, frames, cam: dict, *, rate: float, intr, frame_id: str, out):
    """(node, player, listener) in ``ctx``: the depth_defocus_node with the demo's options and the
    first frame's lens, then the :class:`Player` and the :class:`Listener`; each is appended to
    ``nodes`` as soon as it exists, so that the caller destroys what was made if one fails."""
    overrides = [
        Parameter("model_path", value=str(args.model or "")),
        Parameter("device", value=str(args.device)),
        Parameter("focal_length_mm", value=frames[0][3].focal_length_m * 1000.0),
        Parameter("f_number", value=frames[0][3].f_number),
        Parameter("focus_distance_m", value=frames[0][3].focus_distance_m),
        Parameter("fx", value=float(cam["fx"])),
        Parameter("max_depth_m", value=float(args.max_depth)),
        Parameter("uncertainty", value=bool(args.uncertainty)),
    ]
    node = DepthDefocusNode(namespace=DEMO_NAMESPACE, context=ctx, parameter_overrides=overrides)
    nodes.append(node)
    player = Player(ctx, node, frames, rate=rate, n_frames=args.frames, intr=intr, frame_id=frame_id)
    nodes.append(player)
    listener = Listener(ctx, player, frames, out=out, intr=intr)
    nodes.append(listener)
    return node, player, listener


def wait_for_discovery(executor, player: Player, listener: Listener, timeout_s: float = 10.0) -> None:
    """Spin until the player's image has a subscriber and every listener subscription a publisher
    (discovery: start playing once everyone is matched), at most ``timeout_s`` seconds."""
    connected_by = time.monotonic() + timeout_s
    while time.monotonic() < connected_by:
        executor.spin_once(timeout_sec=0.05)
        if player.pub_image.get_subscription_count() and all(s.get_publisher_count() for s in listener.subs):
            break
