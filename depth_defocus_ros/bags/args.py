"""``depth-defocus bag2dataset``'s command line: arguments -> :class:`.options.ConvertOptions` ->
:func:`.convert.convert_bags`."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from ..argtypes import positive
from .convert import convert_bags
from .options import MODES, ConvertError, ConvertOptions
from .pairing import SPLITS

__all__ = ["add_bag2dataset_args", "options_from_args", "run_bag2dataset"]


def _pair(name):
    def conv(v):
        try:
            a, b = (float(x) for x in v.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be two numbers LO,HI, got {v!r}") from None
        if not (0 < a <= b):
            raise argparse.ArgumentTypeError(f"{name} needs 0 < LO <= HI, got {v!r}")
        return (a, b)

    return conv


def _ratios(v):
    try:
        r = tuple(float(x) for x in v.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--split-ratio must be TRAIN,VAL,TEST, got {v!r}") from None
    if len(r) != 3 or min(r) < 0 or sum(r) <= 0:
        raise argparse.ArgumentTypeError(f"--split-ratio needs three non-negative numbers, got {v!r}")
    return r


def add_bag2dataset_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``depth-defocus bag2dataset``, in their ``--help`` order."""
    p.add_argument("bags", nargs="+", help="rosbag2 folders (sqlite3 or MCAP), .mcap/.db3 files, ROS 1 .bag files")
    p.add_argument("--out", required=True, help="dataset folder (re-run the same command to continue)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="real-defocus",
        help="real-defocus: RGB frames are the focused images, lens from flags/YAML; render: RGB "
        "frames are all-in-focus, focused images are rendered; unlabeled: frames without depth "
        "(for --domain-data)",
    )
    _add_topics_args(p)
    _add_lens_args(p)
    _add_pairing_args(p)
    _add_splits_args(p)
    _add_render_args(p)
    _add_output_args(p)


def _add_topics_args(p: argparse.ArgumentParser) -> None:
    """The topic flags (auto-detected when there is one obvious choice)."""
    g = p.add_argument_group("topics (auto-detected when there is one obvious choice)")
    g.add_argument("--rgb-topic")
    g.add_argument("--depth-topic", help="registered to the RGB camera (e.g. aligned_depth_to_color)")
    g.add_argument("--info-topic", help="CameraInfo of the RGB camera (fx = K[0])")


def _add_lens_args(p: argparse.ArgumentParser) -> None:
    """The lens flags: the recording lens (real-defocus, unlabeled) or the rendered lens (render); mm, m, px."""
    g = p.add_argument_group("lens (real-defocus, unlabeled: the recording lens; render: the rendered lens)")
    g.add_argument("--focal-length-mm", type=positive("--focal-length-mm"))
    g.add_argument("--f-number", type=positive("--f-number"))
    g.add_argument("--focus-distance", dest="focus_distance_m", type=positive("--focus-distance"), help="m")
    g.add_argument(
        "--lens",
        dest="lens_file",
        help="YAML with focal_length_mm, f_number, focus_distance_m and optional per-bag entries under 'bags:'",
    )
    g.add_argument("--fx", type=positive("--fx"), help="focal length in px of the RGB images (default: CameraInfo)")


def _add_pairing_args(p: argparse.ArgumentParser) -> None:
    """RGB-depth pairing (s) and subsampling flags."""
    g = p.add_argument_group("pairing and subsampling")
    g.add_argument(
        "--max-dt", type=positive("--max-dt"), default=0.02, help="largest RGB-depth stamp gap (s, default 0.02)"
    )
    g.add_argument("--every", type=positive("--every", int), default=1, help="keep every N-th pair")
    g.add_argument("--min-gap", type=float, default=0.0, help="at least this long (s) between kept frames (default 0)")
    g.add_argument(
        "--min-valid", type=float, default=0.05, help="skip frames with a smaller valid-depth fraction (default 0.05)"
    )
    g.add_argument(
        "--assume-registered", action="store_true", help="accept depth whose frame_id differs from the RGB frame_id"
    )
    g.add_argument("--depth-scale", type=positive("--depth-scale"), help="m per unit of 16-bit depth (0.001)")


def _add_splits_args(p: argparse.ArgumentParser) -> None:
    """The train/val/test split flags (time blocks in s, or whole bags)."""
    g = p.add_argument_group("splits")
    g.add_argument("--split-by", choices=["time", "bag", "none"], default="time")
    g.add_argument("--split-ratio", type=_ratios, default=(0.8, 0.1, 0.1), help="TRAIN,VAL,TEST (default 0.8,0.1,0.1)")
    g.add_argument("--block-s", type=positive("--block-s"), default=20.0, help="time block length (s, default 20)")
    g.add_argument(
        "--guard-s",
        type=float,
        default=1.0,
        help="frames this close (s) to another split's block are dropped (default 1)",
    )
    g.add_argument(
        "--bag-split",
        action="append",
        default=[],
        metavar="BAG=SPLIT",
        help="with --split-by bag: put BAG (its name) into SPLIT",
    )
    g.add_argument("--seed", type=int, default=0)


def _add_render_args(p: argparse.ArgumentParser) -> None:
    """The ``render`` mode flags (f-number / focus ranges, CoC cap, device)."""
    g = p.add_argument_group("render mode")
    g.add_argument("--renders", type=positive("--renders", int), default=1, help="focused images per frame (default 1)")
    g.add_argument(
        "--f-number-range",
        type=_pair("--f-number-range"),
        default=(1.4, 4.0),
        help="LO,HI (default 1.4,4), unless --f-number",
    )
    g.add_argument(
        "--focus-range",
        type=_pair("--focus-range"),
        default=None,
        help="LO,HI m (default: focus on the depth of a random visible point)",
    )
    g.add_argument(
        "--max-coc-frac",
        type=positive("--max-coc-frac"),
        default=0.1,
        help="stop down until the largest CoC is at most this fraction of the width",
    )
    g.add_argument("--no-aif", dest="keep_aif", action="store_false", help="do not store the all-in-focus images")
    g.add_argument("--device", default="cpu", help="device for rendering (cpu, cuda)")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """The output flags (shard size and compression, resizing, workers, progress)."""
    g = p.add_argument_group("output")
    g.add_argument("--shard-size", type=positive("--shard-size", int), default=32, help="frames per shard (default 32)")
    g.add_argument("--long-side", type=int, default=0, help="downscale so the long side is at most PX (fx with it)")
    g.add_argument(
        "--compress",
        choices=("none", "deflate1", "deflate6"),
        default="none",
        help="shard compression, all lossless: none (default: fastest; about 140 frames/s at 640x480 on "
        "one core), deflate1, deflate6 (smaller, 3-5x slower); see DATASET.md",
    )
    g.add_argument(
        "--no-compress",
        dest="compress",
        action="store_const",
        const="none",
        help="same as --compress none (kept for old command lines)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="parallel processes (0: convert in this process)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def options_from_args(args) -> ConvertOptions:
    bag_split = {}
    for item in args.bag_split:
        if "=" not in item or item.split("=", 1)[1] not in SPLITS:
            raise ConvertError(f"--bag-split wants BAG=SPLIT with SPLIT in {', '.join(SPLITS)}, got {item!r}")
        k, v = item.split("=", 1)
        bag_split[k] = v
    d = {k: v for k, v in vars(args).items() if k in {f.name for f in fields(ConvertOptions)}}
    d.update(bag_split=bag_split, progress=not args.quiet)
    return ConvertOptions.from_dict(d)


def run_bag2dataset(args) -> int:
    try:
        opts = options_from_args(args)
        status, _ = convert_bags(args.bags, opts)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status
