"""The node's parameters: one table (name, default, meaning, range) used to declare them, to check
``config/depth_defocus.yaml`` and to write the docs; and :class:`NodeConfig`, the validated snapshot
the worker reads.

Plain Python (no rclpy at import): :func:`declare_parameters` imports rclpy when it is called.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from ..optics import Lens, LensError, validate_fx

__all__ = [
    "ParamSpec",
    "PARAMS",
    "PARAM_NAMES",
    "NodeConfig",
    "ConfigError",
    "declare_parameters",
    "config_from_values",
    "load_params_yaml",
    "LENS_PARAMS",
    "LAUNCH_PARAMETER_ARGUMENTS",
    "launch_overrides",
    "lens_report",
    "LENS_SOURCES_ENV",
]

LENS_PARAMS = ("focal_length_mm", "f_number", "focus_distance_m")
# node parameters that depth_defocus.launch.py also takes as launch arguments (empty: as in params_file)
LAUNCH_PARAMETER_ARGUMENTS = (
    "device",
    "model_path",
    "image_transport",
    "reliable_qos",
    *LENS_PARAMS,
    "focus_side",
    "max_relative_error",
)
LENS_SOURCES_ENV = "DEPTH_DEFOCUS_LENS_SOURCES"  # set by the launch file: where each lens value came from


class ConfigError(ValueError):
    """Parameter values the node cannot run with; the message is one line naming the parameter."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object  # its Python type (bool, int, float, str) is the parameter's type
    description: str
    read_only: bool = False  # set at start-up only (params file / -p), refused at run time
    range: tuple | None = None  # (lo, hi) inclusive, for int / float
    choices: tuple | None = None  # for str


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "model_path",
        "",
        "checkpoint (.pt) to load, or 'training-free' (no network); empty = the shipped default (models/README.md)",
        read_only=True,
    ),
    ParamSpec("device", "auto", "'auto' (CUDA when present, else CPU), 'cuda', 'cuda:N' or 'cpu'", read_only=True),
    ParamSpec("half", True, "fp16 inference on a GPU (ignored on CPU)", read_only=True),
    ParamSpec(
        "image_transport",
        "raw",
        "'raw': subscribe 'image' (sensor_msgs/Image); 'compressed': subscribe "
        "'image/compressed' (sensor_msgs/CompressedImage, jpeg or png)",
        read_only=True,
        choices=("raw", "compressed"),
    ),
    ParamSpec(
        "reliable_qos",
        False,
        "subscribe with reliable QoS instead of the sensor-data QoS (best effort)",
        read_only=True,
    ),
    ParamSpec("focus_distance_m", 1.2, "lens focus distance (m), along the optical axis", range=(0.01, 1000.0)),
    ParamSpec("f_number", 1.8, "lens f-number", range=(0.5, 64.0)),
    ParamSpec("focal_length_mm", 35.0, "lens focal length (mm)", range=(0.5, 2000.0)),
    ParamSpec(
        "fx",
        622.2,
        "focal length in px at the image's resolution; used only while no CameraInfo "
        "matching the image (size and frame_id) has arrived",
        range=(1.0, 100000.0),
    ),
    ParamSpec(
        "min_depth_m",
        0.1,
        "near end of the working range (m): depth below it is NaN in depth/image and "
        "points, and a side whose depth would fall below it is not taken",
        range=(0.0, 1000.0),
    ),
    ParamSpec(
        "max_depth_m",
        20.0,
        "far end of the working range (m): depth beyond it (or beyond the lens' far "
        "limit) is NaN, and a side whose depth would lie beyond it is not taken",
        range=(0.0, 1000.0),
    ),
    ParamSpec(
        "focus_side",
        "auto",
        "side of the focus plane the scene lies on: 'auto' (decided per pixel; NaN "
        "where it cannot be), 'front' (camera focused at or beyond the far end of its working range: the "
        "best-conditioned set-up), 'behind' (focused at or before the near end)",
        choices=("auto", "front", "behind"),
    ),
    ParamSpec(
        "max_relative_error",
        0.25,
        "publish depth only where its expected relative error (CoC uncertainty "
        "through the thin-lens inverse, and the side's) is at most this; the rest is NaN",
        range=(0.001, 1000.0),
    ),
    ParamSpec("publish_points", True, "publish the point cloud on 'points'"),
    ParamSpec("point_decimation", 1, "keep every n-th pixel in x and y for 'points' (1 = all)", range=(1, 16)),
    ParamSpec("uncertainty", False, "publish depth/uncertainty (32FC1, m: the expected depth error)"),
    ParamSpec(
        "max_uncertainty_m", 0.0, "drop points whose uncertainty exceeds this (m); 0 = keep all", range=(0.0, 1000.0)
    ),
    ParamSpec("preview_max_coc_px", 16.0, "CoC (px) shown brightest in defocus/preview", range=(0.1, 1000.0)),
    ParamSpec("diagnostics_period_s", 1.0, "period of the /diagnostics message (s)", read_only=True, range=(0.1, 60.0)),
)

PARAM_NAMES = tuple(p.name for p in PARAMS)
_SPECS = {p.name: p for p in PARAMS}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class NodeConfig:
    """A validated snapshot of all parameters (field names = parameter names)."""

    model_path: str
    device: str
    half: bool
    image_transport: str
    reliable_qos: bool
    focus_distance_m: float
    f_number: float
    focal_length_mm: float
    fx: float
    min_depth_m: float
    max_depth_m: float
    focus_side: str
    max_relative_error: float
    publish_points: bool
    point_decimation: int
    uncertainty: bool
    max_uncertainty_m: float
    preview_max_coc_px: float
    diagnostics_period_s: float

    @property
    def lens(self) -> Lens:
        return Lens.from_mm(self.focal_length_mm, self.f_number, self.focus_distance_m)


assert tuple(f.name for f in fields(NodeConfig)) == PARAM_NAMES, "NodeConfig and PARAMS disagree"


def _check_value(spec: ParamSpec, value):
    want = type(spec.default)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not want:
        raise ConfigError(f"{spec.name} must be a {want.__name__}, got {value!r}")
    if want is float and not math.isfinite(value):
        raise ConfigError(f"{spec.name} must be a finite number, got {value!r}")
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        raise ConfigError(f"{spec.name} must be in [{spec.range[0]}, {spec.range[1]}], got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{spec.name} must be one of {', '.join(spec.choices)}; got {value!r}")
    return value


def config_from_values(values: dict) -> NodeConfig:
    """Build and check a :class:`NodeConfig` from ``{name: value}`` (missing names take their
    defaults); raise :class:`ConfigError` with a one-line reason for anything the node cannot use."""
    unknown = sorted(set(values) - set(PARAM_NAMES))
    if unknown:
        raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}")
    merged = {p.name: _check_value(p, values.get(p.name, p.default)) for p in PARAMS}
    cfg = NodeConfig(**merged)
    if not _DEVICE_RE.match(cfg.device):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {cfg.device!r}")
    try:
        cfg.lens  # noqa: B018 (validates focal length, f-number, focus distance together)
        validate_fx(cfg.fx)
    except LensError as exc:
        raise ConfigError(str(exc)) from None
    if not cfg.min_depth_m < cfg.max_depth_m:
        raise ConfigError(f"min_depth_m ({cfg.min_depth_m}) must be less than max_depth_m ({cfg.max_depth_m})")
    return cfg


def declare_parameters(node) -> dict:
    """Declare every parameter of :data:`PARAMS` on an rclpy node, with descriptors; return
    ``{name: value}`` as set by overrides (params file, ``-p``) or defaults."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {
        bool: ParameterType.PARAMETER_BOOL,
        int: ParameterType.PARAMETER_INTEGER,
        float: ParameterType.PARAMETER_DOUBLE,
        str: ParameterType.PARAMETER_STRING,
    }
    decls = []
    for p in PARAMS:
        d = ParameterDescriptor(
            name=p.name, type=types[type(p.default)], description=p.description, read_only=p.read_only
        )
        if p.range is not None and isinstance(p.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]))]
        elif p.range is not None:
            d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
        if p.choices:
            d.additional_constraints = "one of: " + ", ".join(p.choices)
        decls.append((p.name, p.default, d))
    node.declare_parameters("", decls)
    return {p.name: node.get_parameter(p.name).value for p in PARAMS}


def load_params_yaml(path) -> dict:
    """``{name: value}`` from a ROS 2 params file in the ``/**: ros__parameters:`` form."""
    import yaml

    with open(path) as f:
        doc = yaml.safe_load(f)
    try:
        return dict(doc["/**"]["ros__parameters"])
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: expected '/**: ros__parameters:' at the top") from None


def _parse(spec: ParamSpec, text: str):
    """A launch argument's text as the parameter's type."""
    want = type(spec.default)
    if want is bool:
        low = text.strip().lower()
        if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ConfigError(f"{spec.name}:={text!r} is not true or false")
        return low in ("true", "1", "yes", "on")
    if want in (int, float):
        try:
            return want(float(text)) if want is float else int(text)
        except ValueError:
            raise ConfigError(f"{spec.name}:={text!r} is not a number") from None
    return text


def launch_overrides(params_file, arguments: dict) -> tuple[dict, dict]:
    """The node parameters that launch arguments set, typed and checked together with the params
    file as the node will check them: ``({name: value}, {lens parameter: source})``.

    Args:
        params_file: the ``/**: ros__parameters:`` file the node is started with (must exist).
        arguments: ``{name: text}`` of the launch arguments in :data:`LAUNCH_PARAMETER_ARGUMENTS`;
            empty text = not given (the params file's value stands).
    Raises:
        ConfigError: a one-line reason (missing file, bad value, impossible lens).
    """
    import os

    if not os.path.isfile(str(params_file)):
        raise ConfigError(f"params_file {params_file} does not exist")
    from_file = load_params_yaml(params_file)
    overrides = {k: _check_value(_SPECS[k], _parse(_SPECS[k], v)) for k, v in arguments.items() if v != ""}
    config_from_values({**from_file, **overrides})  # the whole set, as the node will check it
    sources = {}
    for name in LENS_PARAMS:
        if name in overrides:
            sources[name] = "launch argument"
        elif name in from_file:
            sources[name] = f"params file {params_file}"
        else:
            sources[name] = "default"
    return overrides, sources


def lens_report(cfg: NodeConfig, sources: dict | None = None) -> tuple[str, str | None]:
    """(one info line: the lens settings and where each came from, a warning or None): the warning
    when all three are the defaults of config/depth_defocus.yaml (depth is then wrong by the ratio
    of the real lens to those, and nothing else would say so)."""
    parts = []
    for name in LENS_PARAMS:
        value = getattr(cfg, name)
        src = (sources or {}).get(name) or ("set at start-up" if value != _SPECS[name].default else "default")
        parts.append(f"{name}={value:g} ({src})")
    info = "lens: " + ", ".join(parts)
    if all(getattr(cfg, n) == _SPECS[n].default for n in LENS_PARAMS):
        d = {n: _SPECS[n].default for n in LENS_PARAMS}
        return info, (
            f"running on the default lens of config/depth_defocus.yaml ({d['focal_length_mm']:g} mm, "
            f"f/{d['f_number']:g}, focus {d['focus_distance_m']:g} m): unless that is your lens, depth is wrong; "
            "set focal_length_mm, f_number and focus_distance_m (params file or launch arguments)"
        )
    return info, None
