"""``jaxvision train``: train an experiment config (default: LeNet-5 on embedded MNIST).

    jaxvision train                                   # lenet5_mnist, workdir ./runs/lenet5_mnist
    jaxvision train --config resnet20_cifar10 --workdir runs/r20
    jaxvision train --config my_exp.py batch_size=256 optimizer.learning_rate=0.2
    jaxvision train --config lenet5_mnist --config.data.root=/data/mnist   # same as data.root=...

Overrides are ``key=value`` or ``--config.key=value`` (keys of
:data:`jaxvision.train.config.KEYS`; ``--list-keys`` prints them). Running again with the
same ``--workdir`` resumes.
Multi-process: ``--coordinator host:port --num-processes N --process-id I`` on every process
(or the ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID`` variables).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxvision.train.config import DEFAULT_EXPERIMENT, describe, list_experiments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model from an experiment config",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help=f"experiment name ({', '.join(list_experiments())}) or path to a "
                        f"Python file with get_config(); default {DEFAULT_EXPERIMENT}")
    p.add_argument("--workdir", default=None,
                   help="where checkpoints and metrics go; default runs/<experiment>")
    p.add_argument("--coordinator", default=None, help="multi-process: host:port of process 0")
    p.add_argument("--num-processes", type=int, default=None, help="multi-process: count")
    p.add_argument("--process-id", type=int, default=None, help="multi-process: this index")
    p.add_argument("--list-keys", action="store_true", help="print every config key and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. num_train_steps=100 (or --config.KEY=VALUE)")
    p.set_defaults(func=run, config_flags=[])
    accept_config_flags(p)


def accept_config_flags(parser: argparse.ArgumentParser) -> None:
    """Lets ``parser`` take ``--config.KEY=VALUE`` flags (argparse cannot declare a flag
    family): they are set aside into ``args.config_flags`` before argparse parses the rest."""
    parse = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        argv = list(sys.argv[1:] if args is None else args)
        flags = [a for a in argv if a.startswith("--config.")]
        ns, rest = parse([a for a in argv if not a.startswith("--config.")], namespace)
        ns.config_flags = list(getattr(ns, "config_flags", []) or []) + flags
        return ns, rest

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    if args.list_keys:
        for key, default, help in describe():
            print(f"{key} = {default!r}  # {help}")
        return 0
    from jaxvision.train import sharding

    sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    from jaxvision.train.config import load_config
    from jaxvision.train.loop import train_and_evaluate

    # Errors (a bad config, missing data, a non-finite loss) are reported by jaxvision.cli.
    config = load_config(args.config, list(args.overrides) + list(args.config_flags))
    name = Path(args.config).stem if args.config else DEFAULT_EXPERIMENT
    workdir = args.workdir or str(Path("runs") / name)
    train_and_evaluate(config, workdir)
    # A preempted run saved its checkpoint and exits cleanly (0) so the scheduler restarts it.
    return 0
