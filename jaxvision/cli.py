"""The ``jaxvision`` command line: one subcommand per module in ``jaxvision.commands``.

Each command module defines ``add_parser(subparsers)`` that registers its subcommand and
sets ``func`` (taking the parsed ``argparse.Namespace``, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules under jaxvision.commands, imported lazily so that `jaxvision --help`
# stays fast and one command's heavy imports do not slow the others.
COMMANDS = ("summary", "classify", "convert", "train", "eval", "predict")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxvision",
        description="Classic convolutional networks in JAX/Flax, exact to torchvision.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"jaxvision.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"jaxvision.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `jaxvision` alone runs the main job: train the default experiment.
        if "train" in sub_names(parser):
            args = parser.parse_args(["train", *(argv or [])])
        else:
            parser.print_help()
            return 0
    return int(args.func(args) or 0)


def sub_names(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:  # noqa: SLF001 (argparse has no public accessor)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return list(action.choices)
    return []


if __name__ == "__main__":
    sys.exit(main())
