"""Benchmark the two-stage aligner and the distiller on real noisy → deletion-only pairs.

Data: WCXB dev pairs (CC-BY-4.0, credit "WCXB, Murrough Foley"): ``noisy`` page text and ``gold_projected``,
the noisy lines labelled ``keep=1``. For every document whose noisy text has at least ``--prefix-chars``
characters, the pair is cut to the longest prefix of whole lines within that size, so each pair is about 12k
characters, and the true deletion is known exactly: the ``keep=0`` lines, each with one line break (the one
after it, or the one before it for lines at the end of the text, as the executor removes them).

Printed, in one run:

* speed: :func:`refinex_datatrove.distill.align.align` against ``difflib.SequenceMatcher(autojunk=False)`` on
  the whole text, on the first ``--n-difflib`` pairs (target ratio >= 200x), and the aligner's mean on all;
* character precision / recall of the aligner's pure deletions against the true deletions, and of the
  distilled programs' deletions (target >= 0.999);
* share of true deleted lines that the distilled program removes with ``remove_lines`` (target >= 99 %).

Deleting one of two identical lines (or one of two equal characters) gives the same text whichever copy goes;
the aligner then picks one, which may be another copy than the label's. Such deletions are also reported as
"equivalent": the resulting text is exactly the true one, only the positions differ.

A second run adds synthetic edits to the same pairs (seeded): on 10 % of the kept lines of >= 40 characters an
inner 5-30-character deletion, on 3 % of the others a one-character substitution (a rewrite, never a
deletion), so that the character stage and ``remove_str`` are exercised too.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_align.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from refinex_datatrove.distill.align import (
    align,
    apply_opcodes,
    deletion_spans,
    span_overlap,
    spans_length,
)
from refinex_datatrove.distill.to_program import distill_program
from refinex_datatrove.program import RemoveLines, delete_spans, merge_spans, parse_program

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wcxb-dev" / "pairs.jsonl.gz"


def load_docs(path: Path, prefix_chars: int) -> list[tuple[str, list[int]]]:
    """(noisy prefix, keep labels) for docs with >= prefix_chars characters and both labels in the prefix."""
    pairs = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for raw in f:
            rec = json.loads(raw)
            if len(rec["noisy"]) < prefix_chars:
                continue
            lines, keep = rec["noisy"].split("\n"), rec["keep"]
            size, n = -1, 0
            while n < len(lines) and size + len(lines[n]) + 1 <= prefix_chars:
                size += len(lines[n]) + 1
                n += 1
            lines, keep = lines[:n], keep[:n]
            if n == 0 or all(keep) or not any(keep):
                continue
            pairs.append(("\n".join(lines), keep))
    return pairs


Pair = tuple[str, str, list[tuple[int, int]], list[int]]
"""(original, deletion-only rewrite, true deleted spans, keep label per original line)."""


def line_deletion_pair(noisy: str, keep: list[int]) -> Pair:
    """The WCXB pair as it is: the keep=0 lines go, each with one line break."""
    lines = noisy.split("\n")
    last_kept = max(i for i, k in enumerate(keep) if k)
    spans, pos = [], 0
    for i, line in enumerate(lines):
        if not keep[i]:
            spans.append((pos, pos + len(line) + 1) if i < last_kept else (pos - 1, pos + len(line)))
        pos += len(line) + 1
    spans = merge_spans(spans)
    return noisy, delete_spans(noisy, spans), spans, keep


def mixed_edit_pair(noisy: str, keep: list[int], rng: random.Random) -> tuple[Pair, int]:
    """Line deletions plus, on kept lines of >= 40 chars, an inner 5-30-char deletion (10 % of them) and a
    one-character substitution (3 %): a realistic expert edit mix. Returns the pair (true spans = the
    deletions only) and the number of substitutions."""
    _, _, spans, _ = line_deletion_pair(noisy, keep)
    spans = list(spans)
    lines = noisy.split("\n")
    pos, subs = 0, []
    for i, line in enumerate(lines):
        if keep[i] and len(line) >= 40:
            if rng.random() < 0.10:
                size = rng.randint(5, 30)
                start = rng.randint(5, len(line) - size - 5)
                spans.append((pos + start, pos + start + size))
            elif rng.random() < 0.03:
                at = rng.randint(0, len(line) - 1)
                if line[at].isalpha():
                    subs.append(pos + at)
        pos += len(line) + 1
    spans = merge_spans(spans)
    chars = list(noisy)
    for at in subs:
        chars[at] = "#"
    refined = delete_spans("".join(chars), spans)
    return (noisy, refined, spans, keep), len(subs)


def removed_lines(result) -> set[int]:
    out: set[int] = set()
    for cp in result.chunk_programs:
        for op in parse_program(cp.program).ops:
            if isinstance(op, RemoveLines):
                out.update(range(cp.chunk.start + op.start - 1, cp.chunk.start + op.end))
    return out


def evaluate(name: str, pairs: list[Pair], n_difflib: int) -> None:
    print(f"--- {name}: {len(pairs)} pairs, mean {statistics.mean(len(p[0]) for p in pairs):.0f} chars")
    ours, base = [], []
    for original, refined, _spans, _keep in pairs[:n_difflib]:
        t0 = time.perf_counter()
        ops = align(original, refined)
        ours.append(time.perf_counter() - t0)
        assert apply_opcodes(original, refined, ops) == refined
        t0 = time.perf_counter()
        difflib.SequenceMatcher(None, original, refined, autojunk=False).get_opcodes()
        base.append(time.perf_counter() - t0)
    print(
        f"speed on {len(ours)} pairs: two-stage mean {1000 * statistics.mean(ours):.2f} ms, "
        f"difflib(autojunk=False) on the whole text mean {1000 * statistics.mean(base):.0f} ms; "
        f"ratio of means {statistics.mean(base) / statistics.mean(ours):.0f}x, "
        f"median per-pair ratio {statistics.median(b / o for b, o in zip(base, ours)):.0f}x"
    )

    t_all = 0.0
    n_true = al = al_ok = al_eq = 0
    di = di_ok = di_eq = di_true = 0
    lines_true = lines_rl = lines_equiv = 0
    rejected: dict[str, int] = {}
    exact_output = 0
    for original, refined, truth, keep in pairs:
        target = delete_spans(original, truth)
        t0 = time.perf_counter()
        ops = align(original, refined)
        t_all += time.perf_counter() - t0
        found = deletion_spans(ops)
        n_true += spans_length(truth)
        al += spans_length(found)
        al_ok += span_overlap(found, truth)
        if delete_spans(original, found) == target:
            # same result, other positions (e.g. the other copy of a repeated line): an equally right answer
            al_eq += spans_length(found) - span_overlap(found, truth)
        res = distill_program(original, refined)
        if not res.ok:
            rejected[str(res.rejection)] = rejected.get(str(res.rejection), 0) + 1
            continue
        di_true += spans_length(truth)
        di += res.deleted_chars
        di_ok += span_overlap(res.deleted_spans, truth)
        if delete_spans(original, res.deleted_spans) == target:
            exact_output += 1
            di_eq += res.deleted_chars - span_overlap(res.deleted_spans, truth)
        lines = original.split("\n")
        removed = removed_lines(res)
        deleted = {i for i, k in enumerate(keep) if not k}
        lines_true += len(deleted)
        lines_rl += len(deleted & removed)
        # a true deleted line counts as found when another copy of the same line was removed instead
        spare = Counter(lines[i] for i in removed - deleted)
        for i in deleted - removed:
            if spare[lines[i]] > 0:
                spare[lines[i]] -= 1
                lines_equiv += 1

    n_emitted = len(pairs) - sum(rejected.values())
    print(f"aligner mean on all {len(pairs)} pairs: {1000 * t_all / len(pairs):.2f} ms")
    print(
        f"aligner pure deletions vs true: precision {al_ok / al:.4f}, recall {al_ok / n_true:.4f} "
        f"({n_true} true deleted chars); counting equivalent positions (same resulting text) as found: "
        f"precision {(al_ok + al_eq) / al:.4f}, recall {(al_ok + al_eq) / n_true:.4f}"
    )
    print(
        f"distilled: {n_emitted} emitted, rejected {rejected or 'none'}; program output equal to the true "
        f"deletion-only text: {exact_output}/{n_emitted}"
    )
    if di:
        print(
            f"program deletions vs true (emitted pairs): precision {di_ok / di:.4f}, recall {di_ok / di_true:.4f}; "
            f"equivalent positions as found: precision {(di_ok + di_eq) / di:.4f}, "
            f"recall {(di_ok + di_eq) / di_true:.4f}"
        )
    if lines_true:
        print(
            f"true deleted lines removed by remove_lines: {lines_rl}/{lines_true} = {lines_rl / lines_true:.4f}; "
            f"counting a removed identical copy as found: {(lines_rl + lines_equiv) / lines_true:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--prefix-chars", type=int, default=12_000)
    parser.add_argument("--n-difflib", type=int, default=20, help="pairs timed with the whole-text difflib")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    docs = load_docs(args.data, args.prefix_chars)
    evaluate(
        "WCXB line deletions (noisy -> gold_projected)", [line_deletion_pair(n, k) for n, k in docs], args.n_difflib
    )
    rng = random.Random(args.seed)
    mixed, n_subs = [], 0
    for noisy, keep in docs:
        pair, subs = mixed_edit_pair(noisy, keep, rng)
        mixed.append(pair)
        n_subs += subs
    evaluate(f"WCXB + synthetic inner deletions and {n_subs} one-char substitutions", mixed, args.n_difflib)


if __name__ == "__main__":
    main()
