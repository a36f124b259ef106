"""Benchmark: documents/s of the default refine path against the settings it replaced, alternately, in one run.

Refines the demo corpus (``examples/data/demo_web.jsonl``, 36 documents of 0.5-2.4 KB, mean 2.1 KB) and a
seeded slice of the WCXB dev split with each setting, ``--reps`` times, alternating the order (A B, B A, ...), so
that a busy machine slows both alike. Each run is a fresh process (its own torch threads and ``OMP_WAIT_POLICY``)
that loads the model untimed, then times ``RefineModelAnnotator`` over every document; ``ProgramExecutor`` then
runs the programs and ``refinex_datatrove.eval.metrics`` scores them against the line labels.

Settings:

* ``before``: what ``refinex refine IN OUT`` ran before: float32, torch's default threads (every core), one
  fixed batches of 8 requests (28 % padding on the demo), one ``generate`` call per batch (it decodes until its
  longest row ends), 512 tokens per program, no decision rule (so no likelihoods asked for), and the output head
  as transformers calls it (its strided input made torch copy the head once per row at each prefill; the
  backend now hands it a contiguous input).
* ``demo-before``: the same with ``--max-new-tokens 128``, which ``make demo`` used to pass.
* ``default``: ``refinex refine IN OUT`` now, with no flags (:func:`refinex_datatrove.cli.refine.build_config`):
  bfloat16 where the CPU has it, the cores as torch threads with ``OMP_WAIT_POLICY=PASSIVE``, length
  batches of 8 closed at 10 % padding that prefill apart and then decode joined (up to 64 rows), in rounds that
  drop finished rows, each chunk's program bounded by its line count, guided decoding, and the conservative
  decision rule (it asks for the likelihoods, and changes the programs on purpose: compare its quality with
  ``default-no-rule``).
* ``default-no-rule``: the default with ``--overrule-margin off`` (the model's own programs: the quality to
  compare with ``before``'s).
* ``default-apart``: the default with each length batch decoded alone (``decode_batch_size=None``).
* ``default-fp32-no-rule`` / ``unguided-no-rule``: ``default-no-rule`` in float32, or decoding freely: which of
  bfloat16 and the grammar moves the model's own programs away from ``before``'s.
* ``default-1t`` / ``default-2t``: the default with 1 or 2 torch threads forced (threads measured loaded/idle).
* ``default-fp32``: the default in float32 (what bfloat16 alone brings, and its quality).
* ``default-fixed8`` / ``default-one-generate``: the default with fixed batches of 8 (no padding bound) or
  with one ``generate`` call per batch (no decoding rounds): what each of those two changes brings.
* ``unguided`` / ``guided``: ``refinex refine`` with ``--no-guided`` / ``--guided``: free decoding, or decoding
  inside each chunk's program grammar with xgrammar (line numbers within the chunk, ``a <= b``).

Prints per run: seconds, documents/s, prompt tokens/s; then per corpus and setting the median documents/s and
tokens/s, the speed-up over ``before`` (median and min of the per-repetition ratios) and the deletion F1 /
gold content kept (characters of the lines the labels keep) and documents lost (emptied or dropped while the
labels keep a line) of each setting, and what the programs held:
invalid calls, inverted or out-of-range ranges (the executor's ``skipped`` counts) and truncated chunks (a
program cut by its token bound: a runaway generation).

    python benchmarks/bench_refine_speed.py                       # demo + 40 dev documents, 3 repetitions
    python benchmarks/bench_refine_speed.py --reps 5 --dev-docs 0  # all 121 eligible dev documents
    python benchmarks/bench_refine_speed.py --settings before,default,default-fp32 --corpora dev
    python benchmarks/bench_refine_speed.py --settings unguided,guided --reps 2  # grammar-constrained decoding
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "data" / "demo_web.jsonl"
DEV_PAIRS = str(ROOT.parent / "shared" / "data" / "wcxb-dev" / "pairs.jsonl.gz")

BEFORE: dict[str, Any] = {
    "annotate": {"batch_size": 16, "max_new_tokens": 512, "bound_by_lines": False, "overrule_margin": None},
    "head_copy": True,
    "backend": {"dtype": "float32", "decode_round": None, "max_padding": None, "batch_size": 8},
    "threads": "torch",  # torch's own default: every core
    "env": {},
}
SETTINGS: dict[str, dict[str, Any]] = {
    "before": BEFORE,
    "demo-before": {**BEFORE, "annotate": {**BEFORE["annotate"], "max_new_tokens": 128}},
    "default": {"cli": True},
    "default-no-rule": {"cli": True, "args": ["--overrule-margin", "off"]},
    "default-apart": {"cli": True, "backend": {"decode_batch_size": None}},
    "default-fp32-no-rule": {"cli": True, "backend": {"dtype": "float32"}, "args": ["--overrule-margin", "off"]},
    "unguided-no-rule": {"cli": True, "args": ["--no-guided", "--overrule-margin", "off"]},
    "default-1t": {"cli": True, "backend": {"num_threads": 1}},
    "default-2t": {"cli": True, "backend": {"num_threads": 2}},
    "default-fp32": {"cli": True, "backend": {"dtype": "float32"}},
    "default-fixed8": {"cli": True, "backend": {"max_padding": None}},
    "default-one-generate": {"cli": True, "backend": {"decode_round": None}},
    "unguided": {"cli": True, "args": ["--no-guided"]},
    "guided": {"cli": True, "args": ["--guided"]},
}


# ------------------------------------------------------------------------------------------------ one run


def _corpus(name: str, dev_docs: int, pairs: str, demo_docs: int = 0) -> tuple[list[dict[str, Any]], list[Any]]:
    """(records with id/text, gold) of a corpus."""
    from refinex_datatrove.eval.metrics import load_gold

    if name == "demo":
        rows = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = rows[:demo_docs] if demo_docs else rows
        return [{"id": r["id"], "text": r["text"]} for r in rows], load_gold(rows, text_key="text")
    from refinex_datatrove.train.wcxb import sample_dev_pairs

    pool = sample_dev_pairs(pairs, dev_docs or None, seed=0)
    return [{"id": p["id"], "text": p["noisy"]} for p in pool], load_gold(pool, group_key="page_type")


def _annotator(setting: dict[str, Any]) -> Any:
    from refinex_datatrove.steps.annotate import RefineModelAnnotator

    if setting.get("cli"):
        from refinex_datatrove.cli.refine import add_parser as add_refine_parser, build_config

        parser = argparse.ArgumentParser()
        add_refine_parser(parser.add_subparsers())
        args = parser.parse_args(["refine", str(DEMO), "/tmp/unused", "--progress", "0", *setting.get("args", [])])
        annotate = build_config(args)["annotate"]
        annotate["backend_kwargs"] = {**annotate["backend_kwargs"], **setting.get("backend", {})}
        annotate["backend"] = annotate["backend"] or "transformers"
        return RefineModelAnnotator(**annotate)
    backend_kwargs = dict(setting["backend"])
    if setting.get("threads") == "torch":
        import torch

        backend_kwargs["num_threads"] = torch.get_num_threads()  # before anything set it: torch's default
    return RefineModelAnnotator(backend="transformers", backend_kwargs=backend_kwargs, **setting["annotate"])


def _program_counts(annotated: list[Any]) -> dict[str, int]:
    """Invalid calls, inverted and out-of-range ranges (what the executor skips) and truncated chunks of the
    annotated documents' programs."""
    from refinex_datatrove.metadata import read_chunk_programs
    from refinex_datatrove.program.executor import SkipReason, execute_document

    out = {"calls": 0, "invalid": 0, "inverted": 0, "out_of_range": 0, "truncated": 0}
    for doc in annotated:
        meta = doc.metadata["refinex"]
        result = execute_document(doc.text, read_chunk_programs(meta))
        out["calls"] += result.n_calls
        out["invalid"] += result.skipped.get(SkipReason.INVALID_CALL, 0)
        out["inverted"] += result.skipped.get(SkipReason.INVERTED_RANGE, 0)
        out["out_of_range"] += result.skipped.get(SkipReason.LINE_OUT_OF_RANGE, 0)
        out["truncated"] += sum(c.get("status") == "truncated" for c in meta["program"]["chunks"])
    return out


def worker(name: str, corpus: str, dev_docs: int, pairs: str, demo_docs: int = 0) -> dict[str, Any]:
    """Refine one corpus with one setting in this process; returns the figures as a dict."""
    from datatrove.data import Document

    from refinex_datatrove.eval.metrics import evaluate
    from refinex_datatrove.eval.dev import execute_annotated

    records, gold = _corpus(corpus, dev_docs, pairs, demo_docs)
    annotate = _annotator(SETTINGS[name])
    backend = annotate._make_backend()
    t = time.perf_counter()
    backend._load()
    load_s = time.perf_counter() - t
    if SETTINGS[name].get("head_copy"):  # the output head as it was called before (see "before")
        backend.model.get_output_embeddings()._forward_pre_hooks.clear()
    counts = {"prompt": 0, "completion": 0, "requests": 0}
    generate = backend.generate

    def counting_generate(requests, params):
        gens = generate(requests, params)
        counts["requests"] += len(requests)
        counts["prompt"] += sum(g.prompt_tokens for g in gens)
        counts["completion"] += sum(g.completion_tokens for g in gens)
        return gens

    backend.generate = counting_generate
    annotate.backend = backend
    docs = [Document(text=r["text"], id=r["id"], metadata={}) for r in records]
    t = time.perf_counter()
    annotated = list(annotate.run(iter(docs)))
    seconds = time.perf_counter() - t
    scores = evaluate(execute_annotated(annotated), gold, name="model", baselines=()).methods["model"].corpus
    calls = _program_counts(annotated)
    import torch

    return {
        "setting": name,
        "corpus": corpus,
        "docs": len(docs),
        "bytes": sum(len(r["text"].encode("utf-8")) for r in records),
        "seconds": seconds,
        "load_seconds": load_s,
        "docs_per_s": len(docs) / seconds,
        "prompt_tokens_per_s": counts["prompt"] / seconds,
        **counts,
        "del_f1": scores["del_f1"],
        "char_keep": scores["char_keep"],
        "lost_docs": scores["lost_docs"],
        "chunks_wiped": scores["chunks_wiped"],
        **calls,
        "dtype": getattr(backend, "resolved_dtype", None),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_avg": os.getloadavg()[0],
    }


# ------------------------------------------------------------------------------------------------ driver


def _run(name: str, corpus: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if SETTINGS[name].get("cli"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # what refinex refine sets before torch loads
    cmd = [sys.executable, __file__, "--worker", name, "--corpora", corpus, "--dev-docs", str(args.dev_docs),
           "--demo-docs", str(args.demo_docs), "--pairs", args.pairs]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{name} on {corpus} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="before,default", help="comma-separated; the first is the baseline "
                        f"(known: {', '.join(SETTINGS)}; default: %(default)s)")
    parser.add_argument("--corpora", default="demo,dev", help="demo and/or dev (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default: %(default)s)")
    parser.add_argument("--dev-docs", type=int, default=40, help="dev documents, seeded sample (0: all eligible)")
    parser.add_argument("--demo-docs", type=int, default=0, help="first N demo documents (0: all 36)")
    parser.add_argument("--pairs", default=DEV_PAIRS, help="WCXB pairs.jsonl.gz (default: %(default)s)")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.corpora, args.dev_docs, args.pairs, args.demo_docs)))
        return 0
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or len(names) < 2:
        parser.error(f"need two or more known settings, got {names}")
    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}; settings {names}, "
          f"corpora {corpora}, {args.reps} repetitions, alternating")
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        order = names if rep % 2 == 0 else names[::-1]
        for corpus in corpora:
            for name in order:
                r = _run(name, corpus, args)
                r["rep"] = rep
                runs.append(r)
                print(
                    f"rep {rep} {corpus:>4} {name:>12}: {r['seconds']:6.1f} s, {r['docs_per_s']:.3f} docs/s, "
                    f"{r['prompt_tokens_per_s']:6.0f} prompt tok/s ({r['dtype']}, {r['threads']} threads, "
                    f"load {r['load_avg']:.1f}; model load {r['load_seconds']:.1f} s)",
                    flush=True,
                )
    print()
    base = names[0]
    for corpus in corpora:
        mine = [r for r in runs if r["corpus"] == corpus]
        first = mine[0]
        print(f"{corpus}: {first['docs']} documents, {first['bytes'] / 1000:.0f} KB "
              f"(mean {first['bytes'] / first['docs'] / 1000:.1f} KB), {first['requests']} chunks")
        print(f"  {'setting':>12} {'docs/s':>8} {'tok/s':>7} {'speed-up med':>12} {'min':>6} {'del F1':>7} "
              f"{'kept %':>7} {'lost':>5} {'calls':>6} {'invalid':>7} {'inverted':>8} {'out-of-range':>12} {'truncated':>9}")
        for name in names:
            rs = [r for r in mine if r["setting"] == name]
            ratios = [
                r["docs_per_s"] / b["docs_per_s"]
                for r in rs
                for b in mine
                if b["setting"] == base and b["rep"] == r["rep"]
            ]
            print(
                f"  {name:>12} {statistics.median(r['docs_per_s'] for r in rs):8.3f} "
                f"{statistics.median(r['prompt_tokens_per_s'] for r in rs):7.0f} "
                f"{statistics.median(ratios):11.2f}x {min(ratios):5.2f}x "
                f"{_pct(rs[0]['del_f1']):>7} {_pct(rs[0]['char_keep']):>7} {rs[0]['lost_docs']:5d} {rs[0]['calls']:6d} "
                f"{rs[0]['invalid']:7d} {rs[0]['inverted']:8d} {rs[0]['out_of_range']:12d} {rs[0]['truncated']:9d}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
