"""``jaxvision summary``: per-layer table of a zoo model, with parameters, MACs and FLOPs.

    jaxvision summary resnet50
    jaxvision summary alexnet --input-size 256 256 --depth 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "summary", help="per-layer table of a model (shapes, parameters, FLOPs)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="zoo model name (see `jaxvision summary --list`)", nargs="?")
    p.add_argument("--list", action="store_true", help="list the zoo's model names")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input height and width (default: the model's own, e.g. 224 224)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--depth", type=int, default=None,
                   help="show modules nested at most this deep (default: all)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier size")
    p.add_argument("--no-flops", action="store_true", help="skip XLA's FLOP count")
    p.add_argument("--json", action="store_true", help="print the totals as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvision.models import get_model, list_models
    from jaxvision.summary import summarize

    if args.list:
        print("\n".join(list_models()))
        return 0
    if not args.model:
        raise ValueError("name a model, e.g. `jaxvision summary resnet50`; "
                         "`jaxvision summary --list` lists them")
    config = {} if args.num_classes is None else {"num_classes": args.num_classes}
    try:
        module = get_model(args.model, **config)
    except KeyError as e:  # an unknown name: the registry's message lists the known ones
        raise ValueError(e.args[0]) from None
    shape = None
    if args.input_size is not None:
        channels = getattr(module, "default_input_shape", (0, 0, 3))[-1]
        shape = (*args.input_size, channels)
    try:
        s = summarize(module, shape, batch_size=args.batch_size, flops=not args.no_flops)
    except (ValueError, TypeError) as e:  # e.g. an input too small for the model
        raise ValueError(f"{args.model} at input {shape}: {e}") from None
    s = dataclasses.replace(s, name=args.model)
    if args.json:
        print(json.dumps({"model": args.model, "input_shape": list(s.input_shape),
                          "output_shape": s.output_shape, "params": s.params,
                          "batch_stats": s.batch_stats, "macs": s.macs, "flops": s.flops}))
    else:
        print(s.table(args.depth))
    return 0
