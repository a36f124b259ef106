"""``refinex apply --program P FILE``: run a program on a file; the refined text on stdout, byte for byte."""

from __future__ import annotations

import argparse
import sys

from refinex_datatrove.cli.common import EXIT_OK, format_counts, read_text_file, write_stdout


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "apply",
        help="run a program on a file and print the refined text",
        description="Run PROGRAM_FILE on FILE (line numbers as shown by 'refinex render FILE' without --window) "
        "and write the refined text to stdout exactly; a summary of applied and skipped calls goes to stderr.",
    )
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    p.add_argument("--program", required=True, metavar="PROGRAM_FILE", help="program text, one call per line")
    p.add_argument(
        "--policy",
        choices=("skip_call", "keep_chunk"),
        default="skip_call",
        help="skip_call: skip invalid calls only (default); keep_chunk: leave the text unchanged if any call "
        "is invalid",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from refinex_datatrove.program import ExecPolicy, execute_document, whole_document

    text = read_text_file(args.file)
    program = read_text_file(args.program, what="program file")
    result = execute_document(text, whole_document(text, program), ExecPolicy(on_invalid=args.policy))
    write_stdout(result.text)
    summary = (
        f"applied: {format_counts(result.applied)}; skipped: {format_counts(result.skipped)}; "
        f"removed {result.lines_removed} lines, {result.chars_removed} chars"
    )
    if result.invalid:
        summary += f"; invalid calls: {format_counts(result.invalid)}"
    if result.text and not result.text.endswith("\n") and sys.stdout.isatty():
        summary = "\n" + summary  # on a terminal, not glued to the text's last line (stdout stays exact)
    print(summary, file=sys.stderr)
    return EXIT_OK
