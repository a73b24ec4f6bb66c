"""``jaxvision eval``: evaluate a training workdir's checkpoint on the eval split.

    jaxvision eval --workdir runs/lenet5_mnist                 # config saved in the workdir
    jaxvision eval --config lenet5_mnist --workdir W data.root=/data/mnist data.eval_split=test
"""

from __future__ import annotations

import argparse
import json

from jaxvision.commands.train import accept_config_flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a trained checkpoint", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help="experiment name or file (default: the workdir's config.json)")
    p.add_argument("--workdir", required=True, help="training workdir holding checkpoints/")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON line")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(func=run, config_flags=[])
    accept_config_flags(p)


def run(args: argparse.Namespace) -> int:
    from jaxvision.train.config import apply_overrides, load_config
    from jaxvision.train.loop import describe, evaluate_checkpoint, load_workdir_config

    overrides = list(args.overrides) + list(args.config_flags)
    if args.config is None:
        config = apply_overrides(load_workdir_config(args.workdir), overrides)
    else:
        config = load_config(args.config, overrides)
    m = evaluate_checkpoint(config, args.workdir, args.step)
    if args.json:
        print(json.dumps(m))
    else:
        print(f"step {m['step']}: {describe(config, m)}")
    return 0
