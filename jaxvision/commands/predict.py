"""``jaxvision predict``: classify image files with a trained checkpoint.

    jaxvision predict digit.png --workdir runs/lenet5_mnist
    jaxvision predict a.jpg b.jpg --checkpoint runs/r20/checkpoints/64000 --top-k 3
"""

from __future__ import annotations

import argparse
import json
import sys
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

    step = None
    workdir = args.workdir
    if args.checkpoint is not None:
        ck = Path(args.checkpoint)
        if not ck.name.isdigit() or ck.parent.name != "checkpoints":
            print(f"jaxvision predict: --checkpoint {ck} is not a <workdir>/checkpoints/<step> "
                  "folder", file=sys.stderr)
            return 2
        workdir, step = str(ck.parent.parent), int(ck.name)
    try:
        config = load_workdir_config(workdir)
        restored, results = predict_files(config, workdir, list(args.images), step, args.top_k)
    except (FileNotFoundError, ValueError) as e:
        print(f"jaxvision predict: {e}", file=sys.stderr)
        return 1
    for path, top in zip(args.images, results, strict=True):
        if args.json:
            print(json.dumps({"image": path, "step": restored,
                              "top": [{"class": c, "probability": p} for c, p in top]}))
        else:
            shown = ", ".join(f"{c} {p:.3f}" for c, p in top)
            print(f"{path}: {shown}")
    return 0
