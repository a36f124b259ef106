"""The ``refinex`` console script: one module per subcommand, each with ``add_parser(subparsers)`` and
``run(args) -> exit status``.

========  ==========================================================================================
render    a file's numbered lines, as the refine model sees them (:mod:`.render`)
apply     run a program on a file (:mod:`.apply`)
refine    refine a JSONL / Parquet corpus with a refine model (:mod:`.refine`)
distill   the deletion program between an original and its refined text (:mod:`.distill`)
eval      score refined output against gold pairs, next to baselines (:mod:`.eval`)
report    the static HTML report of what programs deleted (:mod:`.report`)
train     train a refine model with TRL SFT (:mod:`.train`)
========  ==========================================================================================

The subcommand modules import only argparse at the top; what a command needs is imported when it runs, so
``refinex --help`` stays fast. Also runnable as ``python -m refinex_datatrove.cli``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from refinex_datatrove.cli import apply, distill, eval, refine, render, report, train
from refinex_datatrove.cli.common import EXIT_OK, EXIT_USAGE, InputError

SUBCOMMANDS: dict[str, ModuleType] = {
    "render": render,
    "apply": apply,
    "refine": refine,
    "distill": distill,
    "eval": eval,
    "report": report,
    "train": train,
}
"""Adding a subcommand: a module with ``add_parser`` / ``run``, and one line here."""


def build_parser() -> argparse.ArgumentParser:
    """The ``refinex`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="refinex", description="RefineX: deletion-only refinement of web text.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(subparsers)
        subparsers.choices[name].set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``refinex`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(run(args) or EXIT_OK)
    except InputError as e:
        print(f"refinex {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


__all__ = ["SUBCOMMANDS", "build_parser", "main"]
