"""Markdown tables from ``depth-defocus eval --out`` JSON files (for the model card).

Usage: python scripts/eval_table.py NAME=eval.json [NAME=eval.json ...]
"""

import argparse
import json


def _named_file(text: str) -> tuple:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=eval.json, got {text!r}")
    return name, path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=_named_file, metavar="NAME=eval.json")
    rows = []
    for name, path in ap.parse_args(argv).runs:
        res = json.load(open(path))
        for set_name, r in res["sets"].items():
            o, c2 = r["overall"], r["coc_ge_2px"]
            rows.append((name, set_name.replace("heldout:", ""), o, c2))
    print(
        "| model | set | side acc (CoC>=1px) | AbsRel | SqRel | RMSE (m) | RMSE log | d<1.25 | d<1.25² | d<1.25³ "
        "| CoC MAE (px) | CoC RMSE (px) | AbsRel, CoC>=2px | d<1.25, CoC>=2px |"
    )
    print("|" + "---|" * 14)
    for name, s, o, c2 in rows:
        print(
            f"| {name} | {s} | {o.get('side_acc', float('nan')):.3f} | {o['abs_rel']:.3f} | {o['sq_rel']:.3f} | "
            f"{o['rmse']:.2f} | {o['rmse_log']:.3f} | {o['delta1']:.3f} | {o['delta2']:.3f} | {o['delta3']:.3f} | "
            f"{o['coc_mae']:.3f} | {o['coc_rmse']:.3f} | {c2['abs_rel']:.3f} | {c2['delta1']:.3f} |"
        )


if __name__ == "__main__":
    main()
