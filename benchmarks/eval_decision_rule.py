"""The conservative decision rule on ALL eligible WCXB dev documents: generate once, sweep the rule offline.

    # 1. the default model writes every dev chunk's program once, with its likelihoods (nice, 1-2 threads)
    nice python benchmarks/eval_decision_rule.py generate --pairs ../shared/data/wcxb-dev/pairs.jsonl.gz \\
        --out out/dev_generations.jsonl --threads 2
    # 2. the table: before / after the rule (and a sweep of its threshold), next to C4's line rules
    python benchmarks/eval_decision_rule.py table --pairs ../shared/data/wcxb-dev/pairs.jsonl.gz \\
        --generations out/dev_generations.jsonl

``generate`` sends the very requests ``RefineModelAnnotator`` sends (``plan_chunks`` / ``build_requests`` with the
model card's window, each program bounded by its chunk's line count, greedy) through the transformers backend with
``GenerationParams(logprobs=20)`` (the annotator asks for 5: the same ``keep_all()`` values on all 1,604 chunks)
and saves each chunk's generation with ``extra["token_logprobs"]`` and
``extra["first_top_logprobs"]``. ``table`` pairs them back with ``assemble_annotations`` under a
:class:`~refinex_datatrove.refine_model.decision.DecisionRule`, stores them as the annotator does
(``store_annotations``), executes with ``ProgramExecutor`` and scores with ``refinex_datatrove.eval.metrics``.
Data: WCXB, Murrough Foley, CC-BY-4.0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

LOGPROBS = 20  # the README's run; the annotator asks for 5 (refinex_datatrove.steps.annotate.LOGPROBS), which gave
# the same keep_all() log-probability on every one of its 1,604 chunks


def generate(args: argparse.Namespace) -> int:
    from refinex_datatrove.llm.base import GenerationParams
    from refinex_datatrove.program import split_lines
    from refinex_datatrove.refine_model.backend import make_refine_backend
    from refinex_datatrove.refine_model.card import model_chunking, resolve_model
    from refinex_datatrove.refine_model.requests import DEFAULT_MAX_NEW_TOKENS, build_requests, plan_chunks
    from refinex_datatrove.train.wcxb import sample_dev_pairs

    pairs = sample_dev_pairs(args.pairs, args.docs or None, args.seed)
    info = resolve_model(args.model)
    window, unit = model_chunking(info)
    kw = {k: v for k, v in (("num_threads", args.threads), ("dtype", args.dtype)) if v is not None}
    backend = make_refine_backend("transformers", info, kw)
    params = GenerationParams(max_tokens=DEFAULT_MAX_NEW_TOKENS, temperature=0.0, logprobs=LOGPROBS)
    done = set()
    if os.path.exists(args.out):  # resume
        with open(args.out, encoding="utf-8") as f:
            done = {json.loads(line)["id"] for line in f if line.strip()}
    todo = [p for p in pairs if p["id"] not in done]
    print(f"{len(pairs)} dev documents, {len(done)} done, window {window} {unit}", flush=True)
    t_all = time.time()
    with open(args.out, "a", encoding="utf-8") as f:
        for i in range(0, len(todo), args.docs_per_call):
            batch = todo[i : i + args.docs_per_call]
            plans = []
            requests = []
            for p in batch:
                chunks = plan_chunks(p["noisy"], window, unit)
                reqs = build_requests(p["noisy"], chunks, max_tokens=DEFAULT_MAX_NEW_TOKENS)
                plans.append((chunks, len(reqs)))
                requests += reqs
            t0 = time.time()
            gens = backend.generate(requests, params)
            seconds = time.time() - t0
            chars = sum(len(p["noisy"]) for p in batch)
            offset = 0
            for p, (chunks, n) in zip(batch, plans, strict=True):
                mine = gens[offset : offset + n]
                offset += n
                f.write(json.dumps({
                    "id": p["id"],
                    "window": window,
                    "unit": unit,
                    "n_lines": len(split_lines(p["noisy"])),
                    "chunks": [[c.start, c.n_lines, c.skipped] for c in chunks],
                    "generations": [
                        {"text": g.text, "finish_reason": g.finish_reason, "prompt_tokens": g.prompt_tokens,
                         "completion_tokens": g.completion_tokens, "error": g.error, "extra": g.extra}
                        for g in mine
                    ],
                    # the batch's time shared by characters: the time per document the table reports
                    "seconds": seconds * len(p["noisy"]) / max(chars, 1),
                }) + "\n")
            f.flush()
            print(f"{min(i + args.docs_per_call, len(todo))}/{len(todo)} docs, {len(requests)} chunks in "
                  f"{seconds:.0f} s, elapsed {time.time() - t_all:.0f} s", flush=True)
    backend.close()
    return 0


def load_generations(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def annotate_offline(records: list[dict], pairs: dict[str, dict], rule) -> list:
    """The annotated documents the annotator would write under ``rule``, from the saved generations."""
    from datatrove.data import Document

    from refinex_datatrove.llm.base import Generation
    from refinex_datatrove.program import Chunk
    from refinex_datatrove.refine_model.requests import assemble_annotations
    from refinex_datatrove.steps.annotate import store_annotations

    docs = []
    for rec in records:
        text = pairs[rec["id"]]["noisy"]
        chunks = [Chunk(a, n, bool(sk)) for a, n, sk in rec["chunks"]]
        gens = [Generation(**g) for g in rec["generations"]]
        doc = Document(text=text, id=rec["id"], metadata={})
        store_annotations(doc, assemble_annotations(text, chunks, gens, rule), "refinex-smollm2-135m-lora")
        docs.append(doc)
    return docs


def drastic_chunks(records: list[dict], pairs: dict[str, dict], min_share: float) -> list[tuple[bool, float, float]]:
    """Every drastic program (deleting >= ``min_share`` of its chunk's non-blank lines) with whether it is *bad*
    (the gold keeps >= half of the chunk's non-blank lines) and its two margins (first token, whole program)."""
    from refinex_datatrove.llm.base import Generation
    from refinex_datatrove.program import split_lines
    from refinex_datatrove.refine_model.decision import deleted_share, likelihood_of, margin
    from refinex_datatrove.refine_model.requests import clean_generation, needs_request
    from refinex_datatrove.program import Chunk

    out = []
    for rec in records:
        pair = pairs[rec["id"]]
        lines = split_lines(pair["noisy"])
        it = iter(rec["generations"])
        for a, n, sk in rec["chunks"]:
            chunk = Chunk(a, n, bool(sk))
            if not needs_request(lines, chunk):
                continue
            gen = Generation(**next(it))
            mine = lines[chunk.start : chunk.end]
            if deleted_share(clean_generation(gen.text), mine) < min_share:
                continue
            lk = likelihood_of(gen)
            if lk is None:
                continue
            content = [i for i in range(chunk.start, chunk.end) if lines[i].strip()]
            bad = 2 * sum(pair["keep"][i] for i in content) >= len(content)
            out.append((bad, margin(lk, "first"), margin(lk, "program")))
    return out


def auc(pos: list[float], neg: list[float]) -> float | None:
    """Probability that a random ``pos`` value exceeds a random ``neg`` one (ties count half)."""
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def table(args: argparse.Namespace) -> int:
    from refinex_datatrove.eval.dev import execute_annotated
    from refinex_datatrove.eval.metrics import evaluate, format_table, load_gold
    from refinex_datatrove.refine_model.decision import DEFAULT_MARGIN, DEFAULT_MIN_SHARE, DEFAULT_SCORE
    from refinex_datatrove.refine_model.decision import RULE_OFF, DecisionRule
    from refinex_datatrove.train.wcxb import sample_dev_pairs

    records = load_generations(args.generations)
    pairs = {p["id"]: p for p in sample_dev_pairs(args.pairs, None, 0)}
    records = [r for r in records if r["id"] in pairs]
    window, unit = records[0]["window"], records[0]["unit"]
    gold = load_gold([pairs[r["id"]] for r in records], group_key="page_type")
    seconds = sum(r["seconds"] for r in records)
    n_chunks = sum(len(r["generations"]) for r in records)
    print(f"{len(records)} WCXB dev documents ({sum(len(pairs[r['id']]['noisy']) for r in records):,} chars, "
          f"{n_chunks:,} chunk requests), window {window} {unit}; generation {seconds:.0f} s = "
          f"{seconds / len(records):.1f} s per document (nice, {args.threads_note})")

    # which likelihood separates good drastic deletions from bad ones (the gold keeps >= half the chunk)?
    drastic = drastic_chunks(records, pairs, args.min_share)
    bad = [d for d in drastic if d[0]]
    good = [d for d in drastic if not d[0]]
    print(f"\ndrastic programs (delete >= {args.min_share:.0%} of a chunk's lines): {len(drastic)}, of which "
          f"{len(bad)} bad (the gold keeps >= half of the chunk) and {len(good)} good")
    for k, name in ((1, "first token vs keep_all()"), (2, "whole program vs keep_all()")):
        a = auc([d[k] for d in good], [d[k] for d in bad])
        print(f"  AUC of the margin '{name}' (good above bad): {a:.3f}" if a is not None else f"  {name}: -")

    def score(rule):
        docs = annotate_offline(records, pairs, rule)
        overruled = sum(c["status"] == "overruled" for d in docs for c in d.metadata["refinex"]["program"]["chunks"])
        res = evaluate(execute_annotated(docs), gold, name="model", baselines=(), window=window, unit=unit)
        return res.methods["model"].corpus, overruled

    print("\nsweep (corpus figures, %; lost = documents emptied/dropped while the gold keeps >= 1 line; 'guard': the "
          "document guard alone, every drastic program accepted; the margins include the guard)")
    print(f"{'score':8} {'margin':>6} {'del P':>6} {'del R':>6} {'del F1':>6} {'kept':>6} {'lost':>4} "
          f"{'wiped':>6} {'overruled':>9}")
    rows = [("off", None, RULE_OFF), ("guard", None, DecisionRule(margin=-1e9, min_share=args.min_share))]
    rows += [(sc, m, DecisionRule(margin=m, min_share=args.min_share, score=sc))
             for sc in ("first", "program") for m in args.margins]
    for sc, m, rule in rows:
        c, over = score(rule)
        print(f"{sc:8} {('-' if m is None else f'{m:g}'):>6} "
              f"{100 * (c['del_precision'] or 0):6.1f} {100 * (c['del_recall'] or 0):6.1f} "
              f"{100 * (c['del_f1'] or 0):6.1f} {100 * c['char_keep']:6.1f} {c['lost_docs']:4d} "
              f"{100 * c['chunks_wiped']:6.2f} {over:9d}")

    # before / after the default rule, next to the baselines, corpus and per page type
    chosen = DecisionRule(margin=DEFAULT_MARGIN, min_share=DEFAULT_MIN_SHARE, score=DEFAULT_SCORE)
    before = execute_annotated(annotate_offline(records, pairs, RULE_OFF))
    after = execute_annotated(annotate_offline(records, pairs, chosen))
    res = evaluate(after, gold, name="model + rule", window=window, unit=unit)
    off = evaluate(before, gold, name="model alone", baselines=(), window=window, unit=unit)
    methods = {"model + rule": res.methods["model + rule"], "model alone": off.methods["model alone"]}
    methods.update({k: v for k, v in res.methods.items() if k != "model + rule"})
    res.methods = methods
    print(f"\nbefore / after the default rule (margin {DEFAULT_MARGIN:g} nats, score {DEFAULT_SCORE!r}, drastic "
          f"from {DEFAULT_MIN_SHARE:.0%} of a chunk's lines); 'lost docs' a count, the rest %")
    print(format_table(res))
    for group in sorted(res.methods["model + rule"].groups):
        print(f"\npage_type = {group}")
        print(format_table(res, group=group))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res.to_dict(include_docs=False), f, indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write every dev chunk's program once, with its likelihoods")
    g.add_argument("--pairs", required=True, help="WCXB pairs.jsonl.gz")
    g.add_argument("--out", required=True, help="JSON Lines of the generations (appended to: resumes)")
    g.add_argument("--model", default="default")
    g.add_argument("--docs", type=int, default=0, help="dev documents to sample (0 = all eligible)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--dtype", default=None)
    g.add_argument("--docs-per-call", type=int, default=8)
    t = sub.add_parser("table", help="before / after the rule (and a sweep of its margin) from saved generations")
    t.add_argument("--pairs", required=True, help="WCXB pairs.jsonl.gz")
    t.add_argument("--generations", required=True, help="the output of `generate`")
    t.add_argument("--min-share", type=float, default=0.5, help="drastic from this share of a chunk's lines")
    t.add_argument("--margins", type=float, nargs="*", default=[-2, -1, 0, 0.5, 1, 1.5, 2, 3, 4, 6])
    t.add_argument("--threads-note", default="2 torch threads on 2 shared cores",
                   help="how the generation ran, printed with the time per document")
    t.add_argument("--json", help="write the before/after figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cmd == "generate":
        return generate(args)
    return table(args)


if __name__ == "__main__":
    sys.exit(main())
