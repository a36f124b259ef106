"""``refinex render FILE``: a file's numbered lines, as the refine model sees them."""

from __future__ import annotations

import argparse

from refinex_datatrove.cli.common import EXIT_OK, positive_int, read_text_file, write_stdout


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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


def run(args: argparse.Namespace) -> int:
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
    write_stdout("\n".join(blocks) + "\n")
    return EXIT_OK
