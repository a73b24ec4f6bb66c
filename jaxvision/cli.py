"""The ``jaxvision`` command line: one subcommand per module in ``jaxvision.commands``.

Each command module defines ``add_parser(subparsers)`` that registers its subcommand and
sets ``func`` (taking the parsed ``argparse.Namespace``, returning an exit code).

Errors are reported in one place, :func:`main`: a command raises, and a user-facing error
(bad input: ``ValueError`` and its subclasses such as ``ConfigError``, ``CheckpointError``,
``CheckpointMismatchError``; ``OSError`` such as ``FileNotFoundError`` or ``DownloadError``)
is printed as ``jaxvision COMMAND: error: MESSAGE`` on stderr, argparse's own format, with
exit code 2 and no traceback. A training run stopped by a non-finite loss exits with 3.
``--debug`` (or ``JAXVISION_DEBUG=1``) re-raises instead, for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subcommand modules under jaxvision.commands, imported lazily so that `jaxvision --help`
# stays fast and one command's heavy imports do not slow the others.
COMMANDS = ("summary", "classify", "convert", "train", "eval", "predict", "segment",
            "detect")

# Exit codes: 2 is argparse's code for a usage error, and bad input is one.
EXIT_USER_ERROR = 2
EXIT_NON_FINITE_LOSS = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxvision",
        description="Classic convolutional networks in JAX/Flax, exact to torchvision.")
    debug_help = "show the traceback of an error (also JAXVISION_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"jaxvision.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"jaxvision.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    # `jaxvision train ... --debug` works too. SUPPRESS: a subcommand that was not given the
    # flag must not overwrite the top-level value with its own default.
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=debug_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``jaxvision ARGV``; returns the exit code (0 success, 2 bad input, 3 a training
    run stopped by a non-finite loss). A bare ``jaxvision`` prints the help."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        code = exit_code(e)
        if code is None or args.debug or os.environ.get("JAXVISION_DEBUG", "") not in ("", "0"):
            raise
        print(f"jaxvision {args.command}: error: {e}", file=sys.stderr)
        return code


def exit_code(error: BaseException) -> int | None:
    """The exit code for a user-facing error, or None for a bug (which keeps its traceback).

    ``NonFiniteLossError`` is looked up only when its module is already imported: if it is
    not, the error cannot be one, and importing the training loop to find out would cost
    seconds for every failing ``summary``.
    """
    loop = sys.modules.get("jaxvision.train.loop")
    non_finite = getattr(loop, "NonFiniteLossError", None)
    if non_finite is not None and isinstance(error, non_finite):
        return EXIT_NON_FINITE_LOSS
    if isinstance(error, (ValueError, OSError)):
        return EXIT_USER_ERROR
    return None


def sub_names(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:  # noqa: SLF001 (argparse has no public accessor)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return list(action.choices)
    return []


if __name__ == "__main__":
    sys.exit(main())
