"""The ``refinex`` console script: small debug tools around the program language.

``refinex render FILE`` shows the numbered lines a program refers to; ``refinex apply --program P FILE`` runs
a program on a file. Other subcommands live in their own modules and are listed in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple


class Subcommand(NamedTuple):
    """A subcommand provided by another module: ``add_parser(subparsers)`` registers it, ``run(args)`` runs it."""

    name: str
    module: str
    add_parser: str
    run: str


SUBCOMMANDS: list[Subcommand] = [
    Subcommand("render", "refinex_datatrove.cli", "add_render_parser", "run_render"),
    Subcommand("apply", "refinex_datatrove.cli", "add_apply_parser", "run_apply"),
    Subcommand("refine", "refinex_datatrove.refine_cli", "add_refine_parser", "run_refine"),
    Subcommand("distill", "refinex_datatrove.distill.cli", "add_distill_parser", "run_distill"),
    Subcommand("eval", "refinex_datatrove.eval.cli", "add_eval_parser", "run_eval"),
    Subcommand("report", "refinex_datatrove.eval.cli", "add_report_parser", "run_report"),
    Subcommand("train", "refinex_datatrove.train.sft", "add_train_parser", "run_train"),
]
"""Adding a subcommand is one line here. Its module is imported when ``main`` builds the parser (so keep its
top-level imports light) and skipped if the module does not exist yet."""

EXIT_OK = 0
EXIT_USAGE = 2


class InputError(Exception):
    """A file the command cannot read; reported on stderr with exit status 2."""


def read_text_file(path: str, what: str = "file") -> str:
    """The UTF-8 text of ``path``, byte for byte (no newline translation).

    Raises:
        InputError: missing, a directory, unreadable, or not valid UTF-8.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise InputError(f"{what} {path!r} is a directory") from None
    except FileNotFoundError:
        raise InputError(f"{what} {path!r} does not exist") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path!r}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{what} {path!r} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


def _write_stdout(text: str) -> None:
    """Write ``text`` as UTF-8 bytes, exactly (no newline translation, whatever the locale)."""
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
        return
    stream.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()


# ---- render ------------------------------------------------------------------------------------------------


def add_render_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "render",
        help="print a file's numbered lines, as the refine model sees them",
        description="Print FILE's lines numbered as [n] line (numbering local to each chunk). With --window, "
        "lines are packed into chunks, each preceded by a '### chunk i: lines a-b' header.",
    )
    p.add_argument("file", metavar="FILE", help="UTF-8 text file")
    p.add_argument("--window", type=positive_int, default=None, help="chunk size (default: one chunk)")
    p.add_argument("--unit", choices=("chars", "words"), default="chars", help="chunk size unit (default: chars)")
    return p


def run_render(args: argparse.Namespace) -> int:
    from refinex_datatrove.program import Chunk, chunk_lines, render_chunk, split_lines

    lines = split_lines(read_text_file(args.file))
    chunks = [Chunk(0, len(lines))] if args.window is None else chunk_lines(lines, args.window, args.unit)
    blocks = []
    for i, chunk in enumerate(chunks, start=1):
        body = render_chunk(lines[chunk.start : chunk.end])
        if len(chunks) > 1:
            skipped = " (skipped)" if chunk.skipped else ""
            body = f"### chunk {i}: lines {chunk.start + 1}-{chunk.end}{skipped}\n{body}"
        blocks.append(body)
    _write_stdout("\n".join(blocks) + "\n")
    return EXIT_OK


# ---- apply -------------------------------------------------------------------------------------------------


def add_apply_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v) or "none"


def run_apply(args: argparse.Namespace) -> int:
    from refinex_datatrove.program import ExecPolicy, execute_document, whole_document

    text = read_text_file(args.file)
    program = read_text_file(args.program, what="program file")
    result = execute_document(text, whole_document(text, program), ExecPolicy(on_invalid=args.policy))
    _write_stdout(result.text)
    summary = (
        f"applied: {_format_counts(result.applied)}; skipped: {_format_counts(result.skipped)}; "
        f"removed {result.lines_removed} lines, {result.chars_removed} chars"
    )
    if result.invalid:
        summary += f"; invalid calls: {_format_counts(result.invalid)}"
    print(summary, file=sys.stderr)
    return EXIT_OK


# ---- main --------------------------------------------------------------------------------------------------


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {n}")
        return n

    parse.__name__ = f"{what.replace('-', '_')}_int"
    return parse


positive_int = _int_at_least(1, "positive")
"""argparse ``type=`` for integers >= 1 (shared by every subcommand)."""
non_negative_int = _int_at_least(0, "non-negative")
"""argparse ``type=`` for integers >= 0."""


def _load(sub: Subcommand) -> tuple[Callable, Callable] | None:
    try:
        module = sys.modules[__name__] if sub.module == __name__ else importlib.import_module(sub.module)
    except ModuleNotFoundError as e:
        if e.name is not None and (sub.module + ".").startswith(e.name + "."):  # the module (or its package) is absent
            return None
        raise
    return getattr(module, sub.add_parser), getattr(module, sub.run)


def build_parser(subcommands: Sequence[Subcommand] | None = None) -> argparse.ArgumentParser:
    """The ``refinex`` parser with every available subcommand (default: :data:`SUBCOMMANDS`)."""
    if subcommands is None:
        subcommands = SUBCOMMANDS
    parser = argparse.ArgumentParser(prog="refinex", description="RefineX debug tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for sub in subcommands:
        loaded = _load(sub)
        if loaded is None:
            continue
        add_parser, run = loaded
        add_parser(subparsers)
        subparsers.choices[sub.name].set_defaults(_run=run)
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


if __name__ == "__main__":
    from refinex_datatrove.cli import main as _main  # the importable module, so its exception classes match

    sys.exit(_main())
