"""``refinex eval`` (score refined output against gold pairs) and ``refinex report`` (the HTML report).

Files are read with fsspec (datatrove's I/O layer), so local paths and remote URLs both work, compressed or not.
The refined output is read line by line rather than with datatrove's ``JsonlReader``, which skips documents
with an empty text: an emptied document would otherwise be scored as dropped. Parquet files (``refinex refine
--output-format parquet``) are read row by row, each row as the JSONL record it stands for
(:func:`refinex_datatrove.metadata.record_from_parquet`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from refinex_datatrove.cli import positive_int


JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".jsonl.xz")
"""JSON Lines files of a folder that are read (datatrove's ``JsonlWriter`` writes ``.jsonl.gz`` by default)."""

PARQUET_SUFFIXES = (".parquet",)
RECORD_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES
"""Files of a folder that are read: JSON Lines and Parquet."""


def _input_error(message: str) -> Exception:
    from refinex_datatrove.cli import InputError

    return InputError(message)


def jsonl_files(path: str) -> list[str]:
    """``path`` itself when it is a file, else the JSONL and Parquet files under the folder (recursively, sorted).

    Raises:
        InputError: the path does not exist, or the folder holds no JSONL or Parquet file.
    """
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(path)
    if not fs.exists(root):
        raise _input_error(f"{path!r} does not exist")
    if not fs.isdir(root):
        return [fs.unstrip_protocol(root) if "://" in path else root]
    files = sorted(f for f in fs.find(root) if f.endswith(RECORD_SUFFIXES))
    if not files:
        raise _input_error(f"no {', '.join(RECORD_SUFFIXES)} file under {path!r}")
    return [fs.unstrip_protocol(f) if "://" in path else f for f in files]


def _iter_parquet(file: str) -> Iterator[tuple[str, int, Any]]:
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refinex_datatrove.metadata import record_from_parquet

    n = 0
    try:
        with fsspec.open(file, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches():
                for row in batch.to_pylist():
                    n += 1
                    try:
                        record: Any = record_from_parquet(row)
                    except ValueError as e:  # a side column that is not a JSON object
                        record = e
                    yield file, n, record
    except (OSError, pa.ArrowException) as e:  # unreadable or truncated file
        raise _input_error(f"cannot read {file!r}: {e}") from None


def iter_jsonl(path: str) -> Iterator[tuple[str, int, Any]]:
    """``(file, line_number, parsed_or_exception)`` for every non-blank line of the JSONL file(s) at ``path``,
    and every row (numbered from 1) of its Parquet files, each as its JSONL record.

    A line that is not valid JSON yields the ``orjson.JSONDecodeError`` instead of raising, so callers decide.
    """
    import fsspec
    import orjson

    for file in jsonl_files(path):
        if file.endswith(PARQUET_SUFFIXES):
            yield from _iter_parquet(file)
            continue
        try:
            with fsspec.open(file, "rb", compression="infer") as f:
                for n, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    try:
                        yield file, n, orjson.loads(raw)
                    except orjson.JSONDecodeError as e:
                        yield file, n, e
        except (OSError, EOFError) as e:  # unreadable / truncated compressed file
            raise _input_error(f"cannot read {file!r}: {e}") from None


@dataclass(slots=True)
class RefinedInput:
    """The refined output read from disk, with counts of what could not be used."""

    texts: dict[str, str] = field(default_factory=dict)
    records: int = 0
    malformed_lines: int = 0
    missing_id: int = 0
    missing_text: int = 0
    duplicate_ids: int = 0
    text_field_absent: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "text_field_absent": self.text_field_absent,
            "malformed_lines": self.malformed_lines,
            "missing_id": self.missing_id,
            "missing_text": self.missing_text,
            "duplicate_ids": self.duplicate_ids,
        }


def read_refined(path: str, *, text_key: str = "text", id_key: str = "id") -> RefinedInput:
    """Read id -> refined text from a JSONL(.gz) file or a datatrove output folder.

    Malformed lines, records without a string id, with a non-string text, and repeated ids (the first one wins)
    are counted, not fatal. A record with an empty text is an emptied document, not a dropped one; so is a record
    without the text field at all, which is how datatrove's ``JsonlWriter`` writes an empty text (it omits empty
    fields), counted as ``text_field_absent``.
    """
    out = RefinedInput()
    for _, _, rec in iter_jsonl(path):
        out.records += 1
        if not isinstance(rec, dict):
            out.malformed_lines += 1
            continue
        doc_id = rec.get(id_key)
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            out.missing_id += 1
            continue
        if text_key not in rec:
            out.text_field_absent += 1
        text = rec.get(text_key, "")
        if not isinstance(text, str):
            out.missing_text += 1
            continue
        if doc_id in out.texts:
            out.duplicate_ids += 1
            continue
        out.texts[doc_id] = text
    return out


def read_gold_records(path: str) -> Iterator[dict[str, Any]]:
    """Gold records from a JSONL(.gz) file or folder; a malformed line is an error (gold must be clean)."""
    for file, n, rec in iter_jsonl(path):
        if isinstance(rec, Exception):
            raise _input_error(f"{file}:{n}: not valid JSON ({rec})")
        if not isinstance(rec, dict):
            raise _input_error(f"{file}:{n}: expected a JSON object, got {type(rec).__name__}")
        yield rec


def read_ids_file(path: str) -> list[str]:
    from refinex_datatrove.cli import read_text_file

    return [line.strip() for line in read_text_file(path, what="ids file").split("\n") if line.strip()]


# --------------------------------------------------------------------------------------------- eval


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from refinex_datatrove.eval.metrics import BASELINE_NAMES

    p = subparsers.add_parser(
        "eval",
        help="score refined documents against gold pairs, next to baselines",
        description="Score the refined output (id + text) against line-labelled gold pairs (WCXB format) and "
        "print line-level deletion P/R/F1, character keep / noise removal, new words per 1k tokens, output/input "
        "token ratio and untouched / emptied / dropped shares, for the refined output and the baselines on the "
        "same documents. Percentages; '-' = undefined (e.g. precision when nothing was deleted).",
    )
    p.add_argument("--refined", required=True, metavar="PATH",
                   help="JSONL(.gz) or Parquet file, or datatrove output folder")
    p.add_argument("--gold", required=True, metavar="PATH", help="gold pairs, JSONL(.gz) file or folder")
    p.add_argument("--text-key", default="noisy", help="gold field with the input text (default: noisy)")
    p.add_argument("--keep-key", default="keep", help="gold field with per-line 0/1 labels (default: keep)")
    p.add_argument(
        "--gold-text-key",
        default=None,
        metavar="KEY",
        help="derive the labels from this gold text field instead (e.g. gold_projected)",
    )
    p.add_argument("--id-key", default="id", help="id field in both files (default: id)")
    p.add_argument("--refined-text-key", default="text", help="refined text field (default: text)")
    p.add_argument("--group-key", default=None, metavar="KEY", help="also report per group (e.g. page_type)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="score the first N gold docs")
    p.add_argument("--ids-file", default=None, metavar="F", help="score only the ids listed in F (one a line)")
    p.add_argument(
        "--baselines",
        default=",".join(BASELINE_NAMES),
        help=f"comma-separated baselines, '' for none (default: {','.join(BASELINE_NAMES)})",
    )
    p.add_argument("--name", default="ours", help="row name of the refined output (default: ours)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write every figure (and per-doc counts)")
    p.add_argument("--no-docs", action="store_true", help="leave the per-document counts out of --json")
    return p


def run_eval(args: argparse.Namespace) -> int:
    from refinex_datatrove.eval.metrics import BASELINE_NAMES, GoldFormatError, evaluate, format_table, load_gold

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in BASELINE_NAMES]
    if unknown:
        raise _input_error(f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(BASELINE_NAMES)}")
    if args.name in baselines:
        raise _input_error(f"--name {args.name!r} collides with a baseline")
    ids = read_ids_file(args.ids_file) if args.ids_file else None
    try:
        gold = load_gold(
            read_gold_records(args.gold),
            text_key=args.text_key,
            keep_key=args.keep_key,
            gold_text_key=args.gold_text_key,
            id_key=args.id_key,
            group_key=args.group_key,
            ids=ids,
            limit=args.limit,
        )
    except GoldFormatError as e:
        raise _input_error(f"gold {args.gold!r}: {e}") from None
    if not gold:
        raise _input_error(f"no gold documents selected from {args.gold!r}")
    if ids is not None and len(gold) < len(set(ids)) and args.limit is None:
        found = {g.id for g in gold}
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        print(f"warning: {len(missing)} id(s) of {args.ids_file!r} are not in the gold file", file=sys.stderr)
    refined = read_refined(args.refined, text_key=args.refined_text_key, id_key=args.id_key)
    result = evaluate(refined.texts, gold, name=args.name, baselines=baselines)

    problems = {k: v for k, v in refined.counts().items() if k not in ("records", "text_field_absent") and v}
    ours = result.methods[args.name].corpus
    n_dropped = round(ours["dropped"] * ours["docs"]) if ours["dropped"] is not None else 0
    print(
        f"{len(gold):,} gold documents scored; {refined.records:,} refined records read from {args.refined}, "
        f"{n_dropped:,} gold documents missing from them (dropped), "
        f"{len(result.unknown_ids):,} refined ids not in the gold set (ignored)"
    )
    if refined.text_field_absent:
        print(
            f"{refined.text_field_absent:,} refined records have no {args.refined_text_key!r} field: read as emptied "
            "documents (datatrove's JsonlWriter omits empty texts)",
            file=sys.stderr,
        )
    if problems:
        print("refined records not used: " + ", ".join(f"{k}={v}" for k, v in problems.items()), file=sys.stderr)
    print()
    print(format_table(result))
    if args.group_key:
        for group in result.methods[args.name].groups:
            print(f"\n{args.group_key} = {group}")
            print(format_table(result, group=group))
    if args.json:
        payload = {
            "refined": args.refined,
            "gold": args.gold,
            "settings": {
                "text_key": args.text_key,
                "keep_key": None if args.gold_text_key else args.keep_key,
                "gold_text_key": args.gold_text_key,
                "id_key": args.id_key,
                "refined_text_key": args.refined_text_key,
                "group_key": args.group_key,
                "limit": args.limit,
                "ids_file": args.ids_file,
                "baselines": baselines,
            },
            "refined_input": refined.counts(),
            **result.to_dict(include_docs=not args.no_docs),
        }
        _write_json(args.json, payload)
        print(f"\nwrote {args.json}")
    return 0


def _write_json(path: str, payload: Any) -> None:
    import fsspec

    try:
        with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as f:
            json.dump(payload, f, indent=1, ensure_ascii=False)
            f.write("\n")
    except OSError as e:
        raise _input_error(f"cannot write {path!r}: {e}") from None


# --------------------------------------------------------------------------------------------- report


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="write a static HTML report of what the programs deleted",
        description="Read documents with metadata['refinex'] (a JSONL(.gz) file or a datatrove output folder) "
        "and write one self-contained HTML file: each document's original text with the deleted spans struck "
        "through and attributed to their calls, the programs, skip reasons, and corpus histograms. The original "
        "text comes from metadata['refinex']['original_text'] (ProgramExecutor(keep_original=True)), from "
        "--originals, or is the document's own text when nothing was removed.",
    )
    p.add_argument("--input", required=True, metavar="PATH",
                   help="JSONL(.gz) or Parquet file, or datatrove output folder")
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


def run_report(args: argparse.Namespace) -> int:
    from refinex_datatrove.eval.report import DEFAULT_MAX_CHARS, report_doc, write_report
    from refinex_datatrove.program import ExecPolicy

    originals: dict[str, str] = {}
    if args.originals:
        originals = read_refined(args.originals, text_key=args.originals_text_key, id_key=args.id_key).texts
    counts = {"malformed_lines": 0}

    def docs() -> Iterator[dict[str, Any]]:
        n = 0
        for file, line, rec in iter_jsonl(args.input):
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
            raise _input_error(f"stats {args.stats!r}: {e}") from None
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
        raise _input_error(f"cannot write {args.out!r}: {e}") from None
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m refinex_datatrove.eval.cli eval|report ...`` (the same as ``refinex eval|report``)."""
    from refinex_datatrove.cli import InputError

    parser = argparse.ArgumentParser(prog="refinex")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub).set_defaults(_run=run_eval)
    add_report_parser(sub).set_defaults(_run=run_report)
    args = parser.parse_args(argv)
    try:
        return args._run(args)
    except InputError as e:
        print(f"refinex {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
