"""``refinex report``: one static HTML file showing what the programs deleted, document by document."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

from refinex_datatrove.cli.common import InputError, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="write a static HTML report of what the programs deleted",
        description="Read documents with metadata['refinex'] (a JSONL(.gz) file or a datatrove output folder) "
        "and write one self-contained HTML file: each document's original text with the deleted spans struck "
        "through and attributed to their calls, the programs, skip reasons, and corpus histograms. The original "
        "text comes from metadata['refinex']['original_text'] (ProgramExecutor(keep_original=True)), from "
        "--originals, or is the document's own text when nothing was removed.",
    )
    p.add_argument("--input", required=True, metavar="PATH", help="JSONL(.gz) file or datatrove output folder")
    p.add_argument("--out", required=True, metavar="OUT.html", help="the HTML file to write")
    p.add_argument("--stats", default=None, metavar="stats.json", help="a datatrove stats.json to show")
    p.add_argument("--originals", default=None, metavar="PATH", help="the input documents, to recover originals")
    p.add_argument("--originals-text-key", default="text", help="text field of --originals (default: text)")
    p.add_argument("--id-key", default="id", help="id field (default: id)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="first N documents only")
    p.add_argument("--max-chars", type=positive_int, default=None, metavar="N", help="characters shown per doc")
    p.add_argument("--title", default="RefineX report", help="page title")
    p.add_argument(
        "--policy",
        choices=("skip_call", "keep_chunk"),
        default="skip_call",
        help="the execution policy the programs ran with (default: skip_call)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from refinex_datatrove.eval.inputs import read_refined
    from refinex_datatrove.eval.report import DEFAULT_MAX_CHARS, report_doc, write_report
    from refinex_datatrove.files import iter_records
    from refinex_datatrove.program import ExecPolicy

    originals: dict[str, str] = {}
    if args.originals:
        originals = read_refined(args.originals, text_key=args.originals_text_key, id_key=args.id_key).texts
    counts = {"malformed_lines": 0}

    def docs() -> Iterator[dict[str, Any]]:
        n = 0
        for file, line, rec in iter_records(args.input):
            if args.limit is not None and n >= args.limit:
                return
            if not isinstance(rec, dict):
                counts["malformed_lines"] += 1
                print(f"warning: {file}:{line}: not a JSON object, skipped", file=sys.stderr)
                continue
            n += 1
            doc_id = rec.get(args.id_key)
            rec = dict(rec, id=doc_id)
            yield report_doc(rec, originals.get(str(doc_id)) if doc_id is not None else None)

    stats = None
    if args.stats:
        from refinex_datatrove.eval.report import load_stats

        try:
            stats = load_stats(args.stats)
        except (OSError, ValueError) as e:
            raise InputError(f"stats {args.stats!r}: {e}") from None
    try:
        path = write_report(
            docs(),
            args.out,
            stats=stats,
            title=args.title,
            policy=ExecPolicy(on_invalid=args.policy),
            max_chars=args.max_chars or DEFAULT_MAX_CHARS,
        )
    except OSError as e:
        raise InputError(f"cannot write {args.out!r}: {e}") from None
    print(f"wrote {path}")
    return 0
