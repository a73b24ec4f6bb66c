"""``jaxvision convert``: a torchvision checkpoint -> a safe Flax variables file.

    jaxvision convert resnet50 resnet50-0676ba61.pth resnet50.safetensors
    jaxvision convert vgg16 https://download.pytorch.org/models/vgg16-397923af.pth vgg16.msgpack

The source is read without executing it (see :mod:`jaxvision.weights.io`); the output
(``.safetensors`` or Flax ``.msgpack``, no pickle) holds the converted variables and loads
with ``jaxvision.weights.load(MODEL, DST)`` or ``--weights DST``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a torchvision .pth checkpoint to .safetensors / .msgpack",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="zoo model name, e.g. resnet50")
    p.add_argument("src", help="torchvision checkpoint: a .pth file or an URL")
    p.add_argument("dst", help="output file, .safetensors or .msgpack")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from jaxvision.weights import load, write

    dst = Path(args.dst)
    if dst.suffix not in (".safetensors", ".msgpack"):
        raise ValueError(f"output {dst} must end in .safetensors or .msgpack (safe formats "
                         "that hold no code)")
    try:
        variables = load(args.model, args.src)
    except KeyError as e:  # an unknown model name
        raise ValueError(e.args[0]) from None
    write(variables, dst)
    leaves = jax.tree_util.tree_leaves(variables.get("params", {}))
    n = sum(int(np.prod(x.shape)) for x in leaves)
    print(f"wrote {dst}: {args.model} variables ({n:,} parameters, "
          f"collections {', '.join(sorted(variables))})")
    return 0
