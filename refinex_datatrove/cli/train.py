"""``refinex train``: train a refine model with TRL SFT (:func:`refinex_datatrove.train.sft.run_train_script`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``refinex train``: every argument goes to the ``TrlParser`` of :mod:`refinex_datatrove.train.sft`.

    The ``refinex`` CLI is plain argparse, so the sub-command passes its arguments through untouched and the
    ``TrlParser`` (``--config`` YAML + overrides) parses them; trl is imported only when the command runs.
    """
    p = subparsers.add_parser(
        "train",
        help="train a refine model with TRL SFT (see `refinex train --help`)",
        add_help=False,
        prefix_chars="\x00",  # nothing looks like an option here: all arguments are passed through
    )
    p.add_argument("train_argv", nargs=argparse.REMAINDER)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``refinex train`` (``--help``, ``--help-all``, ``--dryrun``, ``--set KEY=VALUE``, ``--config``); returns
    the exit status."""
    from refinex_datatrove.train.sft import run_train_script

    return run_train_script(list(args.train_argv), prog="refinex train")
