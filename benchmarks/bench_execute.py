"""Benchmark: cost of executing stored programs, next to a stock datatrove filter.

Builds >= 10,000 documents from the WCXB dev pairs (CC-BY-4.0, "WCXB, Murrough Foley"): random line slices of
the 1,451 noisy pages, programs derived from the slices' keep labels and chunked in 6,000-character windows,
plus a few ``remove_str`` calls. Then, in one run, on one core:

(a) the time of ``ProgramExecutor`` + ``QualityFilter`` against datatrove's ``GopherQualityFilter`` (default
    settings, spaCy's blank English tokenizer) on the same documents; target: ratio <= 5 %. Also against
    Gopher's marginal cost with the words already tokenized, as it runs after GopherRepetitionFilter.
(b) parse + execute throughput of ``execute_document`` in MB/s of UTF-8 input text, as the pipeline runs it
    (no deleted-span offsets) and with ``spans=True`` (what the report asks for), alternately, on the mixed
    documents and on documents of about 2.6 KB and 6 KB (line slices grown to that size); target: >= 150 MB/s.

    python benchmarks/bench_execute.py [--pairs PATH] [--docs 10000] [--sizes 2600,6000] [--profile]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import random
import statistics
import time
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter
from datatrove.utils.text import split_into_words

from refinex_datatrove.labels import programs_from_keep_labels
from refinex_datatrove.metadata import write_program
from refinex_datatrove.program import Chunk, ChunkProgram, execute_document, parse_program
from refinex_datatrove.steps.execute import ProgramExecutor
from refinex_datatrove.steps.quality_filter import QualityFilter

DEFAULT_PAIRS = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wcxb-dev" / "pairs.jsonl.gz")
WINDOW = 6000


def load_pairs(path: str) -> list[tuple[str, list[int]]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [(r["noisy"], r["keep"]) for r in map(json.loads, f)]


def _add_remove_str(rng: random.Random, lines: list[str], cp: ChunkProgram) -> ChunkProgram:
    """Append one ``remove_str`` of a line's first word (a model's typical small edit) to a chunk program."""
    if cp.chunk.skipped:
        return cp
    local = rng.randrange(cp.chunk.n_lines)
    words = lines[cp.chunk.start + local].split()
    if not words or '"' in words[0] or "\\" in words[0]:
        return cp
    call = f'remove_str({local + 1}, "{words[0]}")'
    program = call if cp.program == "keep_all()" else f"{cp.program}\n{call}"
    return ChunkProgram(cp.chunk, program)


def build_documents(pairs: list[tuple[str, list[int]]], n_docs: int, seed: int = 0) -> list[Document]:
    """``n_docs`` documents: random slices (5-150 lines) of the pages, with programs from their keep labels."""
    rng = random.Random(seed)
    docs = []
    while len(docs) < n_docs:
        for text, keep in pairs:
            if len(docs) == n_docs:
                break
            lines = text.split("\n")
            size = min(len(lines), rng.randint(5, 150))
            start = rng.randrange(len(lines) - size + 1)
            lines, labels = lines[start : start + size], keep[start : start + size]
            docs.append(_labelled_document(rng, lines, labels, f"bench/{len(docs)}"))
    return docs


def _labelled_document(rng: random.Random, lines: list[str], labels: list[int], doc_id: str) -> Document:
    """A document of ``lines`` with the programs of its keep labels (30 % of chunks gain a ``remove_str``)."""
    text = "\n".join(lines)
    programs = programs_from_keep_labels(text, labels, window=WINDOW)
    programs = [_add_remove_str(rng, lines, cp) if rng.random() < 0.3 else cp for cp in programs]
    doc = Document(text=text, id=doc_id)
    write_program(doc, programs, source="labels", n_lines=len(lines))
    return doc


def build_sized_documents(
    pairs: list[tuple[str, list[int]]], n_docs: int, size: int, seed: int = 0
) -> list[Document]:
    """``n_docs`` documents of about ``size`` UTF-8 bytes: line slices of the pages grown until they reach
    ``size`` (pages shorter than ``size`` are skipped), with programs from their keep labels."""
    rng = random.Random(seed)
    long_pages = [(t, k) for t, k in pairs if len(t.encode("utf-8")) >= size]
    docs = []
    while len(docs) < n_docs:
        text, keep = long_pages[rng.randrange(len(long_pages))]
        lines = text.split("\n")
        start = rng.randrange(len(lines))
        end, n_bytes = start, 0
        while end < len(lines) and n_bytes < size:
            n_bytes += len(lines[end].encode("utf-8")) + 1
            end += 1
        if n_bytes < 0.9 * size:
            continue
        lines, labels = lines[start:end], keep[start:end]
        docs.append(_labelled_document(rng, lines, labels, f"bench{size}/{len(docs)}"))
    return docs


def _drain(step, docs: list[Document]) -> float:
    start = time.perf_counter()
    for _ in step(iter(docs)):
        pass
    return time.perf_counter() - start


def bench_steps(docs: list[Document]) -> tuple[float, float]:
    """Seconds for ProgramExecutor + QualityFilter, and for GopherQualityFilter, on copies of ``docs``."""
    gopher = GopherQualityFilter()
    list(gopher.run(iter([Document(text="warm up the spaCy tokenizer. " * 20, id="warmup")])))
    executor, quality = ProgramExecutor(), QualityFilter()

    ours = _drain(lambda data: quality.run(executor.run(data)), copy.deepcopy(docs))
    theirs = _drain(GopherQualityFilter().run, copy.deepcopy(docs))
    return ours, theirs


def bench_gopher_marginal(docs: list[Document]) -> float:
    """Seconds in ``GopherQualityFilter.filter`` once the words are tokenized.

    Inside a FineWeb pipeline, GopherQualityFilter follows GopherRepetitionFilter and gets its words from
    datatrove's ``lru_cache`` on ``split_into_parts``: this is its marginal cost there (a lower bound, since
    the step's ``run`` bookkeeping is not included).
    """
    gopher = GopherQualityFilter()
    total = 0.0
    for doc in copy.deepcopy(docs):
        split_into_words(doc.text, gopher.language)  # untimed: fills the cache
        start = time.perf_counter()
        gopher.filter(doc)
        total += time.perf_counter() - start
    return total


def bench_core(docs: list[Document], spans: bool = False) -> tuple[float, int, float]:
    """parse + execute over every document: (CPU seconds, input bytes, parse-only CPU seconds).

    CPU time of this process (``time.process_time``), not wall time: the throughput of one core, the same on a
    machine that other programs keep busy (wall time there measures the share of the core the process got)."""
    jobs = []
    for doc in docs:
        chunks = doc.metadata["refinex"]["program"]["chunks"]
        cps = [ChunkProgram(Chunk(c["start"], c["n_lines"], c["skipped"]), c["program"]) for c in chunks]
        jobs.append((doc.text, cps))
    n_bytes = sum(len(text.encode("utf-8")) for text, _ in jobs)
    start = time.process_time()
    for text, cps in jobs:
        execute_document(text, cps, spans=spans)
    seconds = time.process_time() - start
    start = time.process_time()
    for _, cps in jobs:
        for cp in cps:
            parse_program(cp.program)
    return seconds, n_bytes, time.process_time() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=DEFAULT_PAIRS, help="WCXB pairs.jsonl.gz (default: %(default)s)")
    parser.add_argument("--docs", type=int, default=10_000, help="number of documents (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="2600,6000", help="document sizes in bytes for (b) (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions of (b) (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="cProfile the parse+execute loop")
    parser.add_argument("--skip-marginal", action="store_true", help="skip the tokenized-words Gopher timing")
    parser.add_argument("--core-only", action="store_true", help="only (b): skip the GopherQualityFilter timings")
    args = parser.parse_args(argv)

    if not Path(args.pairs).exists():
        parser.error(f"{args.pairs} not found (pass --pairs)")
    pairs = load_pairs(args.pairs)
    docs = build_documents(pairs, args.docs, args.seed)
    n_chunks = sum(len(d.metadata["refinex"]["program"]["chunks"]) for d in docs)
    n_calls = sum(
        len(parse_program(c["program"]).ops) for d in docs for c in d.metadata["refinex"]["program"]["chunks"]
    )
    mb = sum(len(d.text.encode("utf-8")) for d in docs) / 1e6
    print(f"{len(docs)} documents, {mb:.1f} MB, {n_chunks} chunks, {n_calls} calls")

    sets = [("mixed", docs)]
    for size in (int(x) for x in args.sizes.split(",") if x.strip()):
        sized = build_sized_documents(pairs, args.docs, size, args.seed)
        mean = sum(len(d.text.encode("utf-8")) for d in sized) / len(sized)
        sets.append((f"{mean / 1000:.1f} KB", sized))
    print("(b) parse+execute on one core, MB/s of input per CPU second (median of alternating repeats)  "
          "[target >= 150 MB/s]")
    for label, group in sets:
        lean, full, parse_only = [], [], []
        for _ in range(args.repeats):
            seconds, n_bytes, parse_seconds = bench_core(group, spans=False)
            lean.append(n_bytes / 1e6 / seconds)
            parse_only.append(parse_seconds)
            seconds, n_bytes, _ = bench_core(group, spans=True)
            full.append(n_bytes / 1e6 / seconds)
        mean_kb = n_bytes / len(group) / 1000
        print(
            f"    {label:>8} documents ({len(group)}, mean {mean_kb:.1f} KB): {statistics.median(lean):6.1f} MB/s "
            f"(min {min(lean):.1f}); with deleted-span offsets (spans=True, the report's path) "
            f"{statistics.median(full):.1f} MB/s; ratio {statistics.median(lean) / statistics.median(full):.2f}x; "
            f"parse alone {statistics.median(parse_only):.3f} s"
        )
    if args.core_only:
        return
    ours, theirs = bench_steps(docs)
    print(
        f"(a) ProgramExecutor+QualityFilter: {ours:.2f} s; GopherQualityFilter: {theirs:.2f} s; "
        f"ratio {100 * ours / theirs:.1f} %  [target <= 5 %]"
    )
    if not args.skip_marginal:
        marginal = bench_gopher_marginal(docs)
        print(
            f"    GopherQualityFilter.filter with words already tokenized (its cost after GopherRepetitionFilter): "
            f"{marginal:.2f} s; ratio {100 * ours / marginal:.1f} %"
        )
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        bench_core(docs)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
