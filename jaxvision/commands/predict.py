"""``jaxvision predict``: classify image files with a trained checkpoint.

    jaxvision predict digit.png --workdir runs/lenet5_mnist
    jaxvision predict a.jpg b.jpg --checkpoint runs/r20/checkpoints/64000 --top-k 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="classify images with a trained checkpoint", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="training workdir (its latest checkpoint)")
    src.add_argument("--checkpoint", help="one checkpoint folder: <workdir>/checkpoints/<step>")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image")
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvision.train.loop import load_workdir_config
    from jaxvision.train.predict import predict_files
    from jaxvision.train.workdir import CHECKPOINTS

    step = None
    workdir = args.workdir
    if args.checkpoint is not None:
        ck = Path(args.checkpoint)
        if not ck.name.isdigit() or ck.parent.name != CHECKPOINTS:
            raise ValueError(f"--checkpoint {ck} is not a <workdir>/checkpoints/<step> folder")
        workdir, step = str(ck.parent.parent), int(ck.name)
    config = load_workdir_config(workdir)
    restored, results = predict_files(config, workdir, list(args.images), step, args.top_k)
    for path, res in zip(args.images, results, strict=True):
        top = res.get("top", [])
        extra = {k: v for k, v in res.items() if k != "top"}
        if args.json:
            print(json.dumps({"image": path, "step": restored,
                              "top": [{"class": c, "probability": p} for c, p in top],
                              **extra}))
        else:
            shown = ", ".join([f"{c} {p:.3f}" for c, p in top]
                              + [f"{k} {_rounded(v)}" for k, v in extra.items()])
            print(f"{path}: {shown}")
    return 0


def _rounded(value: object) -> object:
    """Pixel coordinates to one decimal, for the text output."""
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return round(value, 1) if isinstance(value, float) else value
