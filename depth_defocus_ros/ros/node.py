"""``depth_defocus_node``: metric depth, defocus, uncertainty and point clouds from one camera.

Subscribed topics:
    ``image`` (sensor_msgs/Image) or ``image/compressed`` (sensor_msgs/CompressedImage) when
    ``image_transport`` is ``compressed``; ``camera_info`` (sensor_msgs/CameraInfo).
Published topics:
    ``depth/image`` (32FC1, m, NaN invalid), ``depth/camera_info``, ``defocus/image`` (32FC1, CoC
    px), ``depth/uncertainty`` (32FC1, m; when ``uncertainty`` is on), ``depth/preview`` and
    ``defocus/preview`` (bgr8), ``points`` (organised PointCloud2, x y z rgb float32), and
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray).
Parameters:
    see :data:`depth_defocus_ros.ros.params.PARAMS` and config/depth_defocus.yaml.

The subscription callbacks only hand the message to a worker thread (latest frame wins: a frame
that arrives while the model is busy replaces the one waiting, and counts as dropped). The worker
decodes, checks, runs the estimator and publishes with the input header. Bad input is logged
(rate-limited per kind), counted in diagnostics and skipped.

The node's parts: :mod:`.slot` (the latest-frame-wins mailbox), :mod:`~depth_defocus_ros.ros.camera` (CameraInfo per
frame size and frame_id, the camera's frame_id), :mod:`.outputs` (one frame's messages),
:mod:`.stats` and :mod:`.diagnostics` (what ``/diagnostics`` reports), :mod:`.signals` (stopping).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..model.checkpoint import CheckpointError
from ..optics import LensError
from .camera import FRAME_ID_RELOCK, CameraInfoStore, FrameIdLock
from .conversions import BadInput, check_camera_info, check_raw_image, compressed_to_rgb, image_to_rgb
from .diagnostics import count_changes, diagnostic_status
from .outputs import publish_outputs, published_depth
from .params import (
    LENS_SOURCES_ENV,
    PARAM_NAMES,
    ConfigError,
    NodeConfig,
    config_from_values,
    declare_parameters,
    lens_report,
)
from .pointcloud import Intrinsics
from .signals import StopSignals, spin_until_stopped
from .slot import LatestSlot
from .stats import STAGES, Stats

__all__ = ["DepthDefocusNode", "main", "OUTPUT_TOPICS", "INPUT_TOPICS"]

NODE_NAME = "depth_defocus_node"
INPUT_TOPICS = {"image": Image, "image/compressed": CompressedImage, "camera_info": CameraInfo}
OUTPUT_TOPICS = {
    "depth/image": Image,
    "depth/camera_info": CameraInfo,
    "defocus/image": Image,
    "depth/uncertainty": Image,
    "depth/preview": Image,
    "defocus/preview": Image,
    "points": PointCloud2,
}
LOG_EVERY_S = 5.0  # at most one log line per kind of bad input in this period


class DepthDefocusNode(Node):
    """The node (see module doc). ``estimator`` replaces the checkpoint (tests, embedding)."""

    def __init__(self, node_name: str = NODE_NAME, *, estimator=None, **kwargs):
        self._stop = threading.Event()  # before anything that can fail: destroy_node needs them
        self._slot = LatestSlot()
        self._worker = None
        super().__init__(node_name, **kwargs)
        self._cfg: NodeConfig = config_from_values(declare_parameters(self))
        self._warn_unknown_overrides()
        cfg = self._cfg
        if estimator is None:
            from ..estimate.estimator import Estimator

            estimator = Estimator.load(cfg.model_path or None, device=cfg.device, half=None if cfg.half else False)
        self.estimator = estimator
        self.model_name = str(getattr(estimator, "path", None) or type(estimator).__name__)
        self.device = str(getattr(estimator, "device", "cpu"))
        self.half = bool(getattr(estimator, "half", False))
        self.stats = Stats()
        self._busy = False
        self._infos = CameraInfoStore()  # matched with a frame by its size and frame, not by arrival
        self._mismatch_counted = None
        self._fallback_warned = False
        self._intr_source = "none yet"
        self._frame = FrameIdLock()
        self._last_log: dict = {}
        self._last_diag_counts: Counter = Counter()

        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {name: self.create_publisher(t, name, out_qos) for name, t in OUTPUT_TOPICS.items()}
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if cfg.reliable_qos:
            in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        else:
            in_qos = qos_profile_sensor_data
        if cfg.image_transport == "compressed":
            self._image_sub = self.create_subscription(CompressedImage, "image/compressed", self._on_image, in_qos)
        else:
            self._image_sub = self.create_subscription(Image, "image", self._on_image, in_qos)
        self._info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        self._pending_changes: list = []
        self._commit_guard = self.create_guard_condition(self._commit_parameters)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._check_lens_ranges(cfg)
        self._log_lens(cfg)
        self._warm_up()
        self._worker = threading.Thread(target=self._run, name="depth_defocus_worker", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"ready: model {self.model_name} on {self.device} ({'fp16' if self.half else 'fp32'}); subscribed to "
            f"{self._image_sub.topic_name} and {self._info_sub.topic_name} "
            f"({'reliable' if cfg.reliable_qos else 'sensor-data'} QoS); lens {cfg.focal_length_mm} mm "
            f"f/{cfg.f_number} focused at {cfg.focus_distance_m} m"
        )

    def _log_lens(self, cfg: NodeConfig) -> None:
        """Once at start-up: the lens and where each value came from; a warning on the defaults."""
        import json
        import os

        try:
            sources = json.loads(os.environ.get(LENS_SOURCES_ENV, "") or "{}")
        except ValueError:
            sources = {}
        info, warning = lens_report(cfg, sources)
        self.get_logger().info(info)
        if warning:
            self.get_logger().warning(warning)

    # ---------------------------------------------------------------- callbacks (executor thread)
    def _on_image(self, msg) -> None:
        now = time.monotonic()
        self.stats.frame_in(now)
        if isinstance(msg, Image):
            try:
                check_raw_image(msg)  # structure only: no pixel is read here
            except BadInput as exc:
                self._bad_input(exc.kind, f"frame skipped: {exc}")
                return
        if self._slot.put((msg, now)):
            self.stats.count("frames_dropped")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intr = check_camera_info(msg)
        except BadInput as exc:
            self._bad_input(exc.kind, f"{exc} on {self._info_sub.topic_name}: ignored")
            return
        self._infos.add(msg, intr)

    def _validate_parameters(self, params) -> SetParametersResult:
        values = {name: self.get_parameter(name).value for name in PARAM_NAMES}
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            config_from_values(values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        """Collect the change; the new snapshot is taken by :meth:`_commit_parameters` once the
        executor is done with the request. rclpy's SetParameters service (``ros2 param set``, a
        driver setting focal length, f-number and focus distance in one call) applies a request's
        parameters one at a time: taking the snapshot per parameter would let a frame be computed
        with the focal length of one setting and the focus distance of another."""
        changed = [p for p in params if p.name in PARAM_NAMES]
        if changed:
            self._pending_changes += changed
            self._commit_guard.trigger()

    def _commit_parameters(self) -> None:
        """Executor thread, after the set-parameters request: one new snapshot for the worker."""
        changed, self._pending_changes = self._pending_changes, []
        if not changed:
            return
        self._cfg = config_from_values({name: self.get_parameter(name).value for name in PARAM_NAMES})
        self.get_logger().info("parameters set: " + ", ".join(f"{p.name}={p.value}" for p in changed))
        self._check_lens_ranges(self._cfg)

    # ---------------------------------------------------------------- worker thread
    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._slot.take(timeout=0.1)
            if item is None:
                continue
            self._busy = True
            try:
                self._process(*item)
            except BadInput as exc:
                self._bad_input(exc.kind, f"frame skipped: {exc}")
            except Exception as exc:  # noqa: BLE001 - the node never dies on a frame
                if self._stop.is_set() or not self.context.ok():
                    break
                self._bad_input("processing_error", f"frame skipped: {type(exc).__name__}: {exc}", error=True)
            finally:
                self._busy = False

    def idle(self) -> bool:
        """True when no frame is waiting or being processed."""
        return self._slot.empty() and not self._busy

    def _process(self, msg, t_recv: float) -> None:
        cfg = self._cfg  # one consistent snapshot per frame
        t0 = time.monotonic()
        rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)  # (H, W, 3)
        h, w = rgb.shape[:2]
        header = msg.header
        self._check_frame_id(header.frame_id)
        intr, info = self._intrinsics(w, h, header.frame_id, cfg)
        t1 = time.monotonic()
        pred = self.estimator.predict(
            rgb,
            cfg.lens,
            intr.fx,
            uncertainty=cfg.uncertainty or cfg.max_uncertainty_m > 0,
            focus_side=cfg.focus_side,
            max_relative_error=cfg.max_relative_error,
            min_depth_m=cfg.min_depth_m,
            max_depth_m=cfg.max_depth_m,
        )
        t2 = time.monotonic()
        depth = published_depth(pred.depth, cfg)
        if self._stop.is_set():
            return
        publish_outputs(self._pubs, cfg, header, rgb, depth, pred, intr, info)
        self._record_frame(header, pred, t_recv, t0, t1, t2)

    def _record_frame(self, header, pred, t_recv: float, t0: float, t1: float, t2: float) -> None:
        """Stage times (decoded at t1 - t0, estimated at t2 - t1, published now) and latencies."""
        now = time.monotonic()
        read_s = (pred.timing or {}).get("read_s", 0.0)
        for name, seconds in zip(STAGES, (t1 - t0, read_s, t2 - t1 - read_s, now - t2)):
            self.stats.stage(name, seconds)
        age = (self.get_clock().now().nanoseconds - (header.stamp.sec * 10**9 + header.stamp.nanosec)) * 1e-9
        self.stats.frame_out(now, now - t_recv, age if header.stamp.sec or header.stamp.nanosec else None)

    def _check_frame_id(self, frame_id: str) -> None:
        previous = self._frame.frame_id
        checked = self._frame.check(frame_id)  # raises BadInput for a frame to skip
        if checked == "first" and not frame_id:
            self._log_once("frame_id", "frames have an empty header.frame_id: outputs will too (RViz needs one)")
        elif checked == "followed":
            self.get_logger().warning(
                f"frame_id changed from '{previous}' to '{frame_id}' for "
                f"{FRAME_ID_RELOCK} frames in a row: following it"
            )

    def _intrinsics(self, w: int, h: int, frame_id: str, cfg: NodeConfig):
        """(Intrinsics, CameraInfo or None) for a w x h frame: the latest CameraInfo received for
        this size and frame_id (a CameraInfo without frame_id fits any frame), else the fx
        parameter. A latest CameraInfo that fits no frame is counted as ``camera_info_mismatch``."""
        latest, found = self._infos.match(w, h, frame_id)
        if latest is not None and found is not latest and self._mismatch_counted is not latest[0]:
            self._mismatch_counted = latest[0]
            m = latest[0]
            self._bad_input(
                "camera_info_mismatch",
                f"CameraInfo ({m.width}x{m.height}, frame "
                f"'{m.header.frame_id}') does not match the image ({w}x{h}, frame '{frame_id}'): "
                "ignored",
            )
        if found is not None:
            self._fallback_warned, self._intr_source = False, "CameraInfo"
            return found[1], found[0]
        if not self._fallback_warned:
            self._fallback_warned = True
            self.get_logger().warning(
                f"no CameraInfo matching the {w}x{h} image has arrived on {self._info_sub.topic_name}: using the fx "
                f"parameter ({cfg.fx} px) and the image centre; metric depth is only as right as fx"
            )
        self._intr_source = "fx parameter"
        return Intrinsics.centred(cfg.fx, w, h), None

    # ---------------------------------------------------------------- helpers
    def _bad_input(self, kind: str, message: str, error: bool = False) -> None:
        self.stats.count(kind)
        self.stats.count("bad_input_total")
        now = time.monotonic()
        last, suppressed = self._last_log.get(kind, (-math.inf, 0))
        if now - last >= LOG_EVERY_S:
            more = f" ({suppressed} more like it since the last message)" if suppressed else ""
            (self.get_logger().error if error else self.get_logger().warning)(message + more)
            self._last_log[kind] = (now, 0)
        else:
            self._last_log[kind] = (last, suppressed + 1)

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._last_log:
            self._last_log[key] = (time.monotonic(), 0)
            self.get_logger().warning(message)

    def _warn_unknown_overrides(self) -> None:
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        unknown = sorted(set(overrides) - set(PARAM_NAMES) - {"use_sim_time", "start_type_description_service"})
        if unknown:
            self.get_logger().warning(
                f"ignoring unknown parameter(s) {', '.join(unknown)}; this node's parameters "
                f"are: {', '.join(PARAM_NAMES)}"
            )

    def _check_lens_ranges(self, cfg: NodeConfig) -> None:
        ranges = getattr(self.estimator, "lens_ranges", None) or {}
        for name in ("focal_length_mm", "f_number", "focus_distance_m"):
            r = ranges.get(name)
            v = getattr(cfg, name)
            if r and not r[0] <= v <= r[1]:
                self.get_logger().warning(
                    f"{name} = {v} is outside the range the model was trained on "
                    f"({r[0]} .. {r[1]}): expect less accurate depth"
                )

    def _warm_up(self) -> None:
        """One inference before the first frame, so that it does not pay for allocation / autotuning."""
        cfg = self._cfg
        try:
            self.estimator.predict(np.zeros((240, 320, 3), np.uint8), cfg.lens, cfg.fx * 0.5)
        except Exception as exc:  # noqa: BLE001 - reported, and the frames will tell
            self.get_logger().warning(f"warm-up inference failed: {type(exc).__name__}: {exc}")

    def _publish_diagnostics(self) -> None:
        s = self.stats.snapshot()
        counts, new = count_changes(s, self._last_diag_counts)
        self._last_diag_counts = counts
        st = diagnostic_status(
            s,
            counts,
            new,
            name=f"{self.get_fully_qualified_name()}: depth estimation",
            image_topic=self._image_sub.topic_name,
            device=self.device,
            precision="fp16" if self.half else "fp32",
            model=self.model_name,
            intrinsics_from=self._intr_source,
            frame_id=self._frame.frame_id or "",
        )
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)

    def destroy_node(self):
        self._stop.set()
        self._slot.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=30.0)
        return super().destroy_node()


def main(args=None) -> int:
    """``ros2 run depth_defocus_ros depth_defocus_node [--ros-args ...]``; returns the exit status:
    0 after SIGINT/SIGTERM (any number of them), 2 when the node cannot start."""
    stop = StopSignals()  # before anything slow: a Ctrl-C during start-up is a clean stop too
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    status = 0
    try:
        node = DepthDefocusNode()
        spin_until_stopped(node, stop)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, CheckpointError, LensError, ParameterException, RuntimeError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        status = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        stop.ignore_further()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
