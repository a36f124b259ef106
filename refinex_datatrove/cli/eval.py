"""``refinex eval``: score refined output against gold pairs, next to baselines on the same documents."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from refinex_datatrove.cli.common import InputError, positive_int, read_text_file


def read_ids_file(path: str) -> list[str]:
    return [line.strip() for line in read_text_file(path, what="ids file").split("\n") if line.strip()]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from refinex_datatrove.eval.metrics import BASELINE_NAMES

    p = subparsers.add_parser(
        "eval",
        help="score refined documents against gold pairs, next to baselines",
        description="Score the refined output (id + text) against line-labelled gold pairs (WCXB format) and "
        "print line-level deletion P/R/F1, character keep / noise removal, new words per 1k tokens, output/input "
        "token ratio and untouched / emptied / dropped shares, documents lost (emptied or dropped while the gold "
        "keeps >= 1 line, a count) and chunks wiped (share of the refine model's chunks deleted whole while the gold "
        "keeps >= half of their lines), for the refined output and the baselines on the same documents. "
        "Percentages; '-' = undefined (e.g. precision when nothing was deleted).",
    )
    p.add_argument("--refined", required=True, metavar="PATH", help="JSONL(.gz) file or datatrove output folder")
    p.add_argument("--gold", required=True, metavar="PATH", help="gold pairs, JSONL(.gz) file or folder")
    p.add_argument(
        "--text-key",
        default=None,
        help="gold field with the input text (default: noisy, or text when the gold records have no noisy field: "
        "the refine input format, e.g. examples/data/demo_web.jsonl)",
    )
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
    p.add_argument(
        "--window",
        type=positive_int,
        default=None,
        help="chunk window for the wiped-chunks figure (default: the default refine model's, from its refinex.json)",
    )
    p.add_argument(
        "--unit", choices=("chars", "words"), default=None, help="window unit (default: the default refine model's)"
    )
    p.add_argument("--json", default=None, metavar="OUT.json", help="write every figure (and per-doc counts)")
    p.add_argument("--no-docs", action="store_true", help="leave the per-document counts out of --json")
    return p


def run(args: argparse.Namespace) -> int:
    from refinex_datatrove.eval.inputs import read_gold_records, read_refined
    from refinex_datatrove.eval.metrics import BASELINE_NAMES, GoldFormatError, evaluate, format_table, load_gold

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in BASELINE_NAMES]
    if unknown:
        raise InputError(f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(BASELINE_NAMES)}")
    if args.name in baselines:
        raise InputError(f"--name {args.name!r} collides with a baseline")
    ids = read_ids_file(args.ids_file) if args.ids_file else None
    try:
        records = list(read_gold_records(args.gold))
        text_key = args.text_key or ("text" if records and "noisy" not in records[0] and "text" in records[0] else "noisy")
        gold = load_gold(
            records,
            text_key=text_key,
            keep_key=args.keep_key,
            gold_text_key=args.gold_text_key,
            id_key=args.id_key,
            group_key=args.group_key,
            ids=ids,
            limit=args.limit,
        )
    except GoldFormatError as e:
        raise InputError(f"gold {args.gold!r}: {e}") from None
    if not gold:
        raise InputError(f"no gold documents selected from {args.gold!r}")
    if ids is not None and len(gold) < len(set(ids)) and args.limit is None:
        found = {g.id for g in gold}
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        print(f"warning: {len(missing)} id(s) of {args.ids_file!r} are not in the gold file", file=sys.stderr)
    refined = read_refined(args.refined, text_key=args.refined_text_key, id_key=args.id_key)
    window, unit = eval_chunking(args.window, args.unit)
    result = evaluate(refined.texts, gold, name=args.name, baselines=baselines, window=window, unit=unit)

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
                "text_key": text_key,
                "keep_key": None if args.gold_text_key else args.keep_key,
                "gold_text_key": args.gold_text_key,
                "id_key": args.id_key,
                "refined_text_key": args.refined_text_key,
                "group_key": args.group_key,
                "limit": args.limit,
                "ids_file": args.ids_file,
                "baselines": baselines,
                "window": window,
                "unit": unit,
            },
            "refined_input": refined.counts(),
            **result.to_dict(include_docs=not args.no_docs),
        }
        _write_json(args.json, payload)
        print(f"\nwrote {args.json}")
    return 0


def eval_chunking(window: int | None, unit: str | None) -> tuple[int, str]:
    """The chunking the wiped-chunks figure uses: the arguments where given, else the default refine model's
    (its ``refinex.json``), else the card defaults."""
    from refinex_datatrove.refine_model.card import DEFAULT_MODEL, model_chunking, resolve_model

    try:
        info = resolve_model(DEFAULT_MODEL)
    except FileNotFoundError:
        info = None
    return model_chunking(info, window, unit)


def _write_json(path: str, payload: Any) -> None:
    import fsspec

    try:
        with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as f:
            json.dump(payload, f, indent=1, ensure_ascii=False)
            f.write("\n")
    except OSError as e:
        raise InputError(f"cannot write {path!r}: {e}") from None
