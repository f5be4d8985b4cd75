"""``depth-defocus``: predict, train, eval, render, bag2dataset (no ROS needed; ``demo`` needs rclpy).

Errors the user can fix (bad image, bad lens values, bad checkpoint) print one line
``error: ...`` and exit non-zero; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .argtypes import positive, positive_range
from .estimate.depthmap import FOCUS_SIDES

__all__ = ["main", "build_parser"]


def read_rgb_image(path: Path):
    """Read an image file as (H, W, 3) uint8 RGB through the package's one decoder
    (:mod:`.imagecodec`: what the node and the bag converter accept, the CLI accepts: colour or grey,
    8 or 16 bits, alpha dropped); raise InputError with the reason for anything else."""
    import cv2
    import numpy as np

    from .estimate.estimator import InputError
    from .imagecodec import DecodeError, decode_image

    if not path.is_file():
        raise InputError("file not found")
    if path.stat().st_size == 0:
        raise InputError("file is empty (zero bytes)")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # BGR(A) or grey, uint8 / uint16
    if img is None:
        raise InputError("not a readable image (unknown format or corrupt data)")
    if img.size == 0 or min(img.shape[:2]) == 0:
        raise InputError("zero-size image")
    channels = 1 if img.ndim == 2 else img.shape[2]
    bits = {np.dtype(np.uint8): "8", np.dtype(np.uint16): "16"}.get(img.dtype)
    encoding = {1: "mono", 3: "bgr", 4: "bgra"}.get(channels)
    if bits is None or encoding is None:
        raise InputError(f"{img.dtype} image with {channels} channels; an 8- or 16-bit colour or grey image is needed")
    img = np.ascontiguousarray(img)
    try:
        return decode_image(
            encoding + bits, img.shape[1], img.shape[0], img.strides[0], img.dtype.byteorder == ">", img.view(np.uint8)
        )
    except DecodeError as exc:
        raise InputError(str(exc)) from None


def add_depth_args(p: argparse.ArgumentParser) -> None:
    """Where depth is published: the options shared with the node's parameters of the same names."""
    p.add_argument(
        "--focus-side",
        choices=FOCUS_SIDES,
        default="auto",
        help="side of the focus plane the scene lies on: auto (decided per pixel), front (camera "
        "focused at or beyond the far end of the working range), behind",
    )
    p.add_argument(
        "--max-relative-error",
        type=positive("max relative error"),
        default=0.25,
        help="depth is NaN where its expected relative error exceeds this",
    )
    p.add_argument("--min-depth", type=float, default=0.0, help="working range, near end (m)")
    p.add_argument("--max-depth", type=positive("max depth"), default=float("inf"), help="working range, far end (m)")


def cmd_predict(args) -> int:
    import cv2
    import numpy as np

    from .estimate.estimator import Estimator, InputError
    from .optics import Lens
    from .viz import defocus_preview, depth_preview

    lens = Lens.from_mm(args.focal_length_mm, args.f_number, args.focus_distance)
    est = Estimator.load(args.model, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for p in map(Path, args.images):
        try:
            rgb = read_rgb_image(p)
            fx = args.fx if args.fx else args.focal_length_mm / args.sensor_width_mm * rgb.shape[1]
            pred = est.predict(
                rgb,
                lens,
                fx,
                uncertainty=args.uncertainty,
                focus_side=args.focus_side,
                max_relative_error=args.max_relative_error,
                min_depth_m=args.min_depth,
                max_depth_m=args.max_depth,
            )
        except (InputError, ValueError) as exc:
            print(f"error: {p}: {exc}", file=sys.stderr)
            failed.append(p)
            continue
        arrays = {"depth": pred.depth, "defocus": pred.defocus}
        if pred.uncertainty is not None:
            arrays["uncertainty"] = pred.uncertainty
        np.savez_compressed(out / f"{p.stem}.npz", **arrays)
        vmax = max(4.0, float(np.percentile(pred.defocus, 99)))
        preview = np.concatenate(
            [
                rgb[:, :, ::-1],
                depth_preview(pred.depth, args.preview_min_m, args.preview_max_m),
                defocus_preview(pred.defocus, vmax),
            ],
            axis=1,
        )
        cv2.imwrite(str(out / f"{p.stem}_preview.png"), preview)
        pub = np.isfinite(pred.depth)
        med = float(np.median(pred.depth[pub])) if pub.any() else float("nan")
        print(
            f"{p}: {rgb.shape[1]}x{rgb.shape[0]} fx {fx:.1f}px  depth median {med:.2f} m on {pub.mean():.0%} of "
            f"pixels  "
            f"CoC median {float(np.median(pred.defocus)):.2f} px -> {out / (p.stem + '.npz')}"
        )
    ok = len(args.images) - len(failed)
    print(f"{ok} of {len(args.images)} images done" + (f", {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


def cmd_train(args) -> int:
    from .learn.train import run_training

    return run_training(args)


def cmd_train_reader(args) -> int:
    from .learn.train_reader import run_reader_training

    return run_reader_training(args)


def cmd_render_patches(args) -> int:
    from .learn.patches import PatchConfig, render_patch_shards

    config = PatchConfig(
        small_share=args.small_share,
        small_max_px=args.small_max_px,
        flat_leaf_share=args.flat_leaf_share,
        flat_region_share=args.flat_region_share,
        photo_downscale=tuple(args.photo_downscale),
    )
    render_patch_shards(args.out, args.shards, args.tiles_per_shard, args.seed, config, args.workers)
    return 0


def cmd_eval(args) -> int:
    from .evaluation.heldout import run_eval

    return run_eval(args)


def cmd_render(args) -> int:
    from .synth.scenes import render_shards, scene_config_from_args

    render_shards(args.out, args.scenes, args.seed, args.shard_size, scene_config_from_args(args))
    print(f"wrote {args.scenes} scenes to {args.out}")
    return 0


def cmd_bag2dataset(args) -> int:
    from .bags.args import run_bag2dataset

    return run_bag2dataset(args)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``error: ...``), not a usage dump; ``-h`` still shows usage."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _add_predict_parser(sub) -> None:
    """``depth-defocus predict``: images + lens -> depth, defocus (and uncertainty) files."""
    pr = sub.add_parser("predict", help="depth + defocus for images")
    pr.add_argument("images", nargs="+", help="8-bit RGB images")
    pr.add_argument("--focus-distance", type=positive("focus distance"), required=True, help="m")
    pr.add_argument("--f-number", type=positive("f-number"), required=True)
    pr.add_argument("--focal-length-mm", type=positive("focal length"), required=True)
    g = pr.add_mutually_exclusive_group(required=True)
    g.add_argument("--fx", type=positive("fx"), help="focal length in px at the image's resolution")
    g.add_argument(
        "--sensor-width-mm", type=positive("sensor width"), help="derive fx = focal length / sensor width * image width"
    )
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument(
        "--model", default=None, help="checkpoint, or 'training-free' (default: the shipped default, models/README.md)"
    )
    pr.add_argument("--device", default="auto")
    add_depth_args(pr)
    pr.add_argument("--uncertainty", action="store_true", help="also write the depth uncertainty (m)")
    pr.add_argument("--preview-min-m", type=float, default=0.2)
    pr.add_argument("--preview-max-m", type=float, default=20.0)
    pr.set_defaults(func=cmd_predict)


def _add_train_parsers(sub) -> None:
    """``train`` (the multi-task network) and ``train-reader`` (the blur reader)."""
    from .learn.train_args import add_train_args

    tr = sub.add_parser("train", help="train or fine-tune (torchrun for DDP)")
    add_train_args(tr)
    tr.set_defaults(func=cmd_train)

    from .learn.train_reader import add_reader_train_args

    trr = sub.add_parser("train-reader", help="train the blur reader on patches (torchrun for DDP)")
    add_reader_train_args(trr)
    trr.set_defaults(func=cmd_train_reader)


def _add_render_patches_parser(sub) -> None:
    """``render-patches``: the blur reader's training patches."""
    from .learn.patches import PatchConfig

    rp = sub.add_parser("render-patches", help="render training patches for the blur reader (resumable)")
    rp.add_argument("--out", required=True)
    rp.add_argument("--shards", type=int, default=300)
    rp.add_argument("--tiles-per-shard", type=int, default=100)
    rp.add_argument("--seed", type=int, default=1)
    rp.add_argument("--workers", type=int, default=1, help="processes")
    d = PatchConfig()
    rp.add_argument(
        "--small-share",
        type=float,
        default=d.small_share,
        help="share of tiles whose typical CoC (px at the reader's level) is uniform in [0, --small-max-px]; "
        "the rest are log-uniform up to the largest CoC (the CoC prior the reader learns)",
    )
    rp.add_argument("--small-max-px", type=float, default=d.small_max_px)
    rp.add_argument(
        "--flat-leaf-share",
        type=float,
        default=d.flat_leaf_share,
        help="share of leaves of one colour (no texture: what the reader answers where a patch shows no evidence)",
    )
    rp.add_argument(
        "--flat-region-share",
        type=float,
        default=d.flat_region_share,
        help="share of tiles with a textureless surface in front, wider than the reader's view",
    )
    rp.add_argument(
        "--photo-downscale",
        type=positive_range,
        default=d.photo_downscale,
        metavar="LO,HI",
        help="photographs are reduced by a factor drawn uniformly from LO-HI (>= 1: never magnified); "
        "a coarse pyramid level sees a photograph reduced 2^level times more than the finest",
    )
    rp.set_defaults(func=cmd_render_patches)


def _add_eval_parser(sub) -> None:
    """``eval``: held-out synthetic sets, a dataset, or the real-photo benchmark."""
    ev = sub.add_parser("eval", help="metrics on held-out sets or a dataset")
    ev.add_argument(
        "--model", default=None, help="checkpoint, or 'training-free' (default: the shipped default, models/README.md)"
    )
    ev.add_argument(
        "--real",
        choices=["motorcycle"],
        default=None,
        help="the real-photo benchmark (Middlebury Motorcycle re-focused at fixed lens settings) "
        "instead of the synthetic held-out sets",
    )
    ev.add_argument(
        "--plot",
        default="eval/motorcycle_sparsification.png",
        help="--real: where to write the sparsification plot (AbsRel against coverage); the read-vs-true "
        "CoC plots (2-D histograms) are written next to it",
    )
    ev.add_argument("--focus-side", choices=FOCUS_SIDES, default="auto")
    ev.add_argument(
        "--learned-side",
        choices=["checked", "on", "off"],
        default="checked",
        help="a reader's learned side of the focus plane: used only if its calibration check passed "
        "(scripts/side_check.py), always, or never",
    )
    ev.add_argument("--max-relative-error", type=positive("max relative error"), default=0.25)
    ev.add_argument(
        "--heldout",
        action="append",
        choices=["layers", "structured"],
        help="fixed synthetic held-out set (default: both)",
    )
    ev.add_argument("--data", action="append", help="dataset folder (shards)")
    ev.add_argument("--split", default=None, help="split of --data (e.g. test)")
    ev.add_argument("--cache", default="heldout", help="folder where held-out sets and benchmark cases are kept")
    ev.add_argument("--scenes", type=int, default=None, help="use only the first N held-out scenes")
    ev.add_argument("--max-batches", type=int, default=None)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--out", default=None, help="write metrics JSON here")
    ev.set_defaults(func=cmd_eval)


def _add_render_parser(sub) -> None:
    """``render``: synthetic scenes into dataset shards."""
    rd = sub.add_parser("render", help="render synthetic scenes into dataset shards")
    rd.add_argument("--out", required=True)
    rd.add_argument("--scenes", type=int, default=1000)
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--shard-size", type=int, default=100)
    from .synth.scenes import add_scene_args

    add_scene_args(rd)
    rd.set_defaults(func=cmd_render)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="depth-defocus", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    _add_predict_parser(sub)
    _add_train_parsers(sub)
    _add_render_patches_parser(sub)
    _add_eval_parser(sub)
    _add_render_parser(sub)

    from .bags.args import add_bag2dataset_args

    bd = sub.add_parser("bag2dataset", help="rosbags (RGB + depth + CameraInfo) -> dataset shards (see DATASET.md)")
    add_bag2dataset_args(bd)
    bd.set_defaults(func=cmd_bag2dataset)

    try:  # the demo needs rclpy (PyPI ROS 2 wheels or a ROS install); the rest of the CLI does not
        from .ros.demo import add_demo_parser
    except ImportError:
        dm = sub.add_parser("demo", help="ROS 2 demo (needs rclpy)")
        dm.set_defaults(func=_no_ros)
    else:
        add_demo_parser(sub)
    return p


def _no_ros(args) -> int:
    print(
        "error: 'depth-defocus demo' needs rclpy: install the ROS 2 wheels "
        "(pip install -r requirements.txt) or source a ROS 2 install",
        file=sys.stderr,
    )
    return 2


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["train"], ["train-reader"], ["render-patches"]):
        # CPU training shares cores with data rendering: OpenMP threads that spin while waiting
        # for a busy core slow every step several-fold; passive waiting avoids that
        import os

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .estimate.estimator import InputError
    from .model.checkpoint import CheckpointError
    from .optics import LensError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CheckpointError, LensError, InputError, FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
