"""Rebuild ``demo_web.jsonl``, the corpus of ``make demo``, from the WCXB dev pairs (see ATTRIBUTION.md).

Every record is an excerpt of one WCXB page's noisy text (Resiliparse main-content extraction): the page's first
lines, cut at a line boundary to at most :data:`MAX_CHARS` characters, with the per-line ``keep`` labels of those
lines (1 = main content, 0 = boilerplate), so ``refinex eval`` can score the demo. Only pages of the **dev split**
(:func:`refinex_datatrove.train.wcxb.wcxb_split`) are used: the default refine model never saw them in training.
The pages of the default model's dev score (:func:`~refinex_datatrove.train.wcxb.sample_dev_pairs` with its
defaults) are left out too, so the demo and that score use different pages.

Selection (deterministic): pages whose labels are usable (at least one ``keep=1`` line, ``gold_coverage >=``
:data:`MIN_GOLD_COVERAGE`, WCXB gold split into lines like the page) and whose excerpt has both kept and deleted
lines, at least :data:`MIN_LINES` lines and :data:`MIN_CHARS` characters; then round-robin over the page types
(each type's pages in a seeded shuffle) until :data:`N_DOCS` documents, so every page type is represented.

    python examples/data/build_demo_web.py /path/to/wcxb-dev/pairs.jsonl.gz examples/data/demo_web.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from refinex_datatrove.train.wcxb import iter_pairs, sample_dev_pairs, wcxb_split

N_DOCS = 36
MAX_CHARS = 2400
MIN_CHARS = 500
MIN_LINES = 5
MIN_GOLD_COVERAGE = 0.5
SEED = 0
FIELDS = ("id", "text", "url", "page_type", "source", "keep")


def excerpt(text: str, keep: list[int], max_chars: int = MAX_CHARS) -> tuple[str, list[int]]:
    """The longest run of whole first lines of ``text`` with at most ``max_chars`` characters, and its labels."""
    lines = text.split("\n")
    if len(lines) != len(keep):
        raise ValueError(f"{len(keep)} keep labels for {len(lines)} lines")
    n, size = 0, -1
    for line in lines:
        if size + 1 + len(line) > max_chars:
            break
        size += 1 + len(line)
        n += 1
    return "\n".join(lines[:n]), list(keep[:n])


def candidates(pairs: Iterable[dict[str, Any]], excluded_ids: set[str]) -> list[dict[str, Any]]:
    """Demo records for every usable dev page (in input order)."""
    out = []
    for pair in pairs:
        if wcxb_split(pair["id"]) != "dev" or pair["id"] in excluded_ids:
            continue
        if not pair.get("n_keep_lines") or pair.get("gold_coverage", 0.0) < MIN_GOLD_COVERAGE:
            continue
        if pair.get("line_structure_differs"):
            continue
        text, keep = excerpt(pair["noisy"], pair["keep"])
        if len(keep) < MIN_LINES or len(text) < MIN_CHARS or not 0 < sum(keep) < len(keep):
            continue
        out.append(
            {
                "id": pair["id"],
                "text": text,
                "url": pair["url"],
                "page_type": pair["page_type"],
                "source": pair["source"],
                "keep": keep,
            }
        )
    return out


def select(records: list[dict[str, Any]], n_docs: int = N_DOCS, seed: int = SEED) -> list[dict[str, Any]]:
    """Round-robin over page types (sorted), each type's records in a seeded shuffle; result sorted by id."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: r["id"]):
        by_type[rec["page_type"]].append(rec)
    rng = random.Random(seed)
    queues = {t: rng.sample(recs, len(recs)) for t, recs in sorted(by_type.items())}
    chosen: list[dict[str, Any]] = []
    while len(chosen) < n_docs and any(queues.values()):
        for t in sorted(queues):
            if queues[t] and len(chosen) < n_docs:
                chosen.append(queues[t].pop(0))
    return sorted(chosen, key=lambda r: r["id"])


def build(pairs_path: str, n_docs: int = N_DOCS) -> list[dict[str, Any]]:
    """The demo records from a WCXB ``pairs.jsonl.gz``."""
    scored = {p["id"] for p in sample_dev_pairs(pairs_path)}  # the default model's dev score sample
    return select(candidates(iter_pairs(pairs_path, "dev"), scored), n_docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", help="WCXB dev pairs.jsonl.gz")
    parser.add_argument("output", help="output .jsonl")
    parser.add_argument("--docs", type=int, default=N_DOCS, help="documents (default: %(default)s)")
    args = parser.parse_args()
    records = build(args.pairs, args.docs)
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps({k: rec[k] for k in FIELDS}, ensure_ascii=False) + "\n" for rec in records)
    types: dict[str, int] = defaultdict(int)
    for rec in records:
        types[rec["page_type"]] += 1
    chars = sum(len(r["text"]) for r in records)
    print(f"wrote {len(records)} documents ({chars:,} characters) to {args.output}: {dict(sorted(types.items()))}")


if __name__ == "__main__":
    main()
