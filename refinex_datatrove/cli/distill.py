"""``refinex distill``: print the deletion program that turns an original text into its refined version.

Examples::

    refinex distill --original page.txt --refined cleaned.txt
    refinex distill --original page.txt --refined cleaned.txt --window 12000 --unit chars

Exit status: 0 with the program on stdout; 3 when a distillation filter rejects the pair (the reason on
stderr); 2 when a file cannot be read or an argument is invalid.
"""

from __future__ import annotations

import argparse
import sys

from refinex_datatrove.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    InputError,
    non_negative_int,
    positive_int,
    read_text_file,
    write_stdout,
)
from refinex_datatrove.distill.to_program import (
    DistillConfig,
    DistillResult,
    distill_document,
    distill_program,
    format_chunk_programs,
)

EXIT_REJECTED = 3


def _add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = DistillConfig()
    p.add_argument("--original", required=True, metavar="A.txt", help="the raw text (UTF-8)")
    p.add_argument("--refined", required=True, metavar="B.txt", help="the refined text (UTF-8)")
    p.add_argument(
        "--window",
        type=positive_int,
        default=None,
        help="chunk size, as the annotator chunks (default: one chunk over the whole document)",
    )
    p.add_argument("--unit", choices=("chars", "words"), default="chars", help="chunk size unit (default: chars)")
    p.add_argument(
        "--min-deleted-chars",
        type=non_negative_int,
        default=defaults.min_deleted_chars,
        help=f"reject pairs deleting 1 to N-1 characters (default: {defaults.min_deleted_chars})",
    )
    p.add_argument(
        "--rewrite-span-limit",
        type=non_negative_int,
        default=defaults.rewrite_span_limit,
        help="reject pairs with an insertion or replacement of at least this many characters; 0 disables "
        f"(default: {defaults.rewrite_span_limit})",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``distill`` on the ``refinex`` subcommand parsers."""
    p = subparsers.add_parser(
        "distill",
        help="print the deletion program turning an original text into its refined version",
        description="Align ORIGINAL and REFINED, keep the deletions and print them as a program (paper §6). "
        "With several chunks each program is preceded by a '# chunk lines a-b' comment. Exit status 3 with "
        "the reason on stderr when a filter rejects the pair.",
    )
    _add_arguments(p)
    return p


def _config(args: argparse.Namespace) -> DistillConfig:
    defaults = DistillConfig()
    limit = getattr(args, "rewrite_span_limit", defaults.rewrite_span_limit)
    return DistillConfig(
        rewrite_span_limit=limit or None,
        min_deleted_chars=getattr(args, "min_deleted_chars", defaults.min_deleted_chars),
    )


def _summary(result: DistillResult) -> str:
    ops = ", ".join(f"{k}={v}" for k, v in sorted(result.op_counts.items()) if v) or "none"
    return (
        f"{result.n_chunks} chunk(s); ops: {ops}; deleted {result.deleted_chars} chars, "
        f"{result.lines_removed} whole lines (aligned deletions {result.aligned_deleted_chars}, "
        f"residue absorbed {result.residue_chars}, dropped {result.dropped_chars}; "
        f"inserted/replaced chars ignored {result.inserted_chars})"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``refinex distill``; returns the exit status (0 ok, 2 unreadable input, 3 rejected)."""
    try:
        original = read_text_file(args.original, what="original file")
        refined = read_text_file(args.refined, what="refined file")
    except InputError as e:
        print(f"refinex distill: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    config = _config(args)
    window = getattr(args, "window", None)
    if window is None:
        result = distill_program(original, refined, config)
    else:
        result = distill_document(original, refined, window, getattr(args, "unit", "chars"), config)
    if not result.ok:
        print(f"refinex distill: rejected: {result.rejection}: {result.detail}", file=sys.stderr)
        return EXIT_REJECTED
    write_stdout(format_chunk_programs(result.chunk_programs) + "\n")
    print(_summary(result), file=sys.stderr)
    return EXIT_OK
