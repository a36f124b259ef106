"""The offline vLLM backend (``vllm.LLM`` in-process) with the shipped default refine model, on the real engine.

One engine serves the base model with the LoRA adapter enabled (requests with and without ``LoRARequest``), a
second one the merged weights. Both run float32 like the transformers backend, so greedy outputs can be compared
token for token; a difference must be a near tie at the first diverging token (explained in the test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refinex_datatrove.refine_model.requests import DEFAULT_MAX_CALLS, assemble_annotations, build_requests, plan_chunks
from refinex_datatrove.llm.base import Generation, GenerationParams, Request
from refinex_datatrove.program import RemoveLines, RemoveStr, parse_program
from tests.vllm.conftest import ENGINE_EXTRA, demo_docs


pytestmark = pytest.mark.vllm

N_DOCS = 4  # 11 chunks of the demo corpus
MAX_MODEL_LEN = 4096  # the expert prompt alone is ~1,500 tokens
PARAMS = GenerationParams(max_tokens=128, temperature=0.0)
NEAR_TIE = 0.5  # logit gap (float32 logits) below which two greedy choices may flip between implementations


def chunk_requests(docs: list[dict], guided: bool = False) -> tuple[list[Request], list[tuple[dict, list]]]:
    requests, plans = [], []
    for doc in docs:
        chunks = plan_chunks(doc["text"], 1200, "chars")
        reqs = build_requests(doc["text"], chunks, guided=guided, max_calls=DEFAULT_MAX_CALLS)
        requests += reqs
        plans.append((doc, chunks))
    return requests, plans


def stored_programs(plans, generations: list[Generation]):
    """(chunk, stored program, status) for every requested chunk, as RefineModelAnnotator stores them."""
    out, it = [], iter(generations)
    for doc, chunks in plans:
        lines_needed = [c for c in chunks if not c.skipped]
        n = len(build_requests(doc["text"], lines_needed))
        gens = [next(it) for _ in range(n)]
        for a in assemble_annotations(doc["text"], chunks, gens):
            if a.finish_reason is not None:
                out.append((a.chunk, a.program, a.status))
    return out


def invalid_calls(program: str, n_lines: int) -> list[str]:
    """Calls the executor could not apply: unparseable lines and line numbers outside ``1..n_lines``."""
    parsed = parse_program(program)
    bad = [f"{c.reason}: {c.source}" for c in parsed.invalid]
    for op in parsed.ops:
        numbers = (op.start, op.end) if isinstance(op, RemoveLines) else (op.line,) if isinstance(op, RemoveStr) else ()
        bad += [f"line {k} outside 1..{n_lines}: {op.to_source()}" for k in numbers if not 1 <= k <= n_lines]
    return bad


@pytest.fixture(scope="module")
def lora_backend(default_adapter: str) -> Iterator:
    """The default refine model as RefineModelAnnotator builds it for backend="vllm": base + LoRARequest."""
    from refinex_datatrove.refine_model.backend import make_refine_backend
    from refinex_datatrove.refine_model.card import resolve_model

    backend = make_refine_backend(
        "vllm", resolve_model("default"),
        {"max_model_len": MAX_MODEL_LEN, "dtype": "float32", "extra": dict(ENGINE_EXTRA)},
    )
    assert backend.lora_path == default_adapter and backend.enable_lora
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def base_backend(lora_backend, smollm2_dir: str):
    """SmolLM2-135M-Instruct without the adapter, on the same engine (requests carry no LoRARequest)."""
    from refinex_datatrove.llm.vllm_backend import VLLMBackend

    assert lora_backend.model_name == smollm2_dir
    backend = VLLMBackend(smollm2_dir, max_model_len=MAX_MODEL_LEN, dtype="float32", enable_lora=True,
                          extra=dict(ENGINE_EXTRA))
    backend._llm = lora_backend.llm  # one engine per module: the LoRA engine serves the base model too
    return backend


@pytest.fixture(scope="module")
def merged_backend(merged_dir: str) -> Iterator:
    from refinex_datatrove.refine_model.backend import make_refine_backend
    from refinex_datatrove.refine_model.card import resolve_model

    backend = make_refine_backend(
        "vllm", resolve_model(merged_dir), {"max_model_len": MAX_MODEL_LEN, "dtype": "float32",
                                            "extra": dict(ENGINE_EXTRA)},
    )
    assert backend.lora_path is None and not backend.enable_lora
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def demo_requests():
    return chunk_requests(demo_docs(N_DOCS))


@pytest.fixture(scope="module")
def hf_reference(demo_requests, default_adapter: str):
    """Greedy outputs of the transformers backend (base + peft adapter, float32) and its model for tie checks."""
    import torch

    from refinex_datatrove.llm.transformers_backend import TransformersBackend
    from refinex_datatrove.refine_model.weights import base_model_dir, load_refine_model

    torch.set_num_threads(1)
    backend = TransformersBackend(base_model_dir(default_adapter), adapter=default_adapter, dtype="float32",
                                  batch_size=4, num_threads=1)
    try:
        gens = backend.generate(demo_requests[0], PARAMS)
    finally:
        backend.close()
    model, tok = load_refine_model(default_adapter, merge=True)
    return gens, model, tok


def explain_difference(model, tok, prompt: str, a: str, b: str) -> str:
    """Why two greedy continuations of ``prompt`` differ: the first diverging token is a near tie.

    Re-scores the common prefix with the transformers model and asserts that the two diverging tokens are its
    top two and that their logit gap is below :data:`NEAR_TIE`; returns a description for the failure message.
    """
    import torch

    ids_a = tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids_b = tok(b, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    i = next(k for k in range(min(len(ids_a), len(ids_b))) if ids_a[k] != ids_b[k])
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + ids_a[:i]])).logits[0, -1].float()
    top2 = torch.topk(logits, 2)
    gap = float(logits[ids_a[i]] - logits[ids_b[i]])
    described = f"token {i}: {tok.decode([ids_a[i]])!r} vs {tok.decode([ids_b[i]])!r}, logit gap {gap:+.3f}"
    assert set(top2.indices.tolist()) == {ids_a[i], ids_b[i]}, f"not the top-2 tokens: {described}"
    assert abs(gap) < NEAR_TIE, f"not a near tie: {described}"
    return described


def test_lora_request_programs_parse_and_match_transformers(lora_backend, demo_requests, hf_reference):
    requests, plans = demo_requests
    gens = lora_backend.generate(requests, PARAMS)
    assert all(g.ok for g in gens), [g.error for g in gens if not g.ok]
    assert all(g.prompt_tokens > 20 and 0 < g.completion_tokens <= PARAMS.max_tokens for g in gens)
    stored = stored_programs(plans, gens)
    assert len(stored) == len(requests) == 11
    bad = {i: invalid_calls(p, c.n_lines) for i, (c, p, _) in enumerate(stored) if invalid_calls(p, c.n_lines)}
    assert not bad, f"the refine model wrote calls that do not parse or fall outside the chunk: {bad}"
    hf_gens, model, tok = hf_reference
    assert all(g.ok for g in hf_gens)
    diffs = [i for i, (v, h) in enumerate(zip(gens, hf_gens, strict=True)) if v.text != h.text]
    explained = [explain_difference(model, tok, requests[i].prompt, gens[i].text, hf_gens[i].text) for i in diffs]
    assert len(diffs) <= len(requests) // 4, f"too many differences to be near ties: {explained}"
    print(f"vLLM LoRARequest vs transformers+peft: {len(requests) - len(diffs)}/{len(requests)} identical; {explained}")


def test_without_lora_request_the_base_model_answers(lora_backend, base_backend, demo_requests):
    requests, _ = demo_requests
    with_lora = lora_backend.generate(requests[:3], PARAMS)
    without = base_backend.generate(requests[:3], PARAMS)
    assert all(g.ok for g in with_lora + without)
    assert [g.text for g in with_lora] != [g.text for g in without]
    assert sum(bool(parse_program(g.text).invalid) for g in without) > sum(
        bool(parse_program(g.text).invalid) for g in with_lora)


def test_merged_weights_match_the_lora_request(merged_backend, lora_backend, demo_requests, hf_reference):
    requests, _ = demo_requests
    merged = merged_backend.generate(requests, PARAMS)
    lora = lora_backend.generate(requests, PARAMS)
    assert all(g.ok for g in merged)
    _, model, tok = hf_reference
    diffs = [i for i, (m, v) in enumerate(zip(merged, lora, strict=True)) if m.text != v.text]
    explained = [explain_difference(model, tok, requests[i].prompt, merged[i].text, lora[i].text) for i in diffs]
    assert len(diffs) <= len(requests) // 4, f"too many differences to be near ties: {explained}"
    print(f"vLLM merged vs LoRARequest: {len(requests) - len(diffs)}/{len(requests)} identical; {explained}")


def test_guided_decoding_repairs_invalid_calls(base_backend, lora_backend):
    """The base model (no adapter) writes prose and bad calls; with ``guided`` every stored call is valid."""
    requests, plans = chunk_requests(demo_docs(N_DOCS))
    free = stored_programs(plans, base_backend.generate(requests, PARAMS))
    bad_chunks = [i for i, (c, p, _) in enumerate(free) if invalid_calls(p, c.n_lines)]
    assert len(bad_chunks) >= 3, "unconstrained decoding should write invalid calls on these chunks"

    guided_requests, guided_plans = chunk_requests(demo_docs(N_DOCS), guided=True)
    assert all(r.guided_regex for r in guided_requests)
    for backend in (base_backend, lora_backend):
        gens = backend.generate(guided_requests, PARAMS)
        assert all(g.ok for g in gens), [g.error for g in gens if not g.ok]
        stored = stored_programs(guided_plans, gens)
        for i in bad_chunks:
            _, program, status = stored[i]
            assert program.strip(), (i, status)
        bad = {i: invalid_calls(p, c.n_lines) for i, (c, p, _) in enumerate(stored) if invalid_calls(p, c.n_lines)}
        assert bad == {}, bad


def test_expert_refiner_on_the_chat_model(base_backend):
    """ExpertRefiner with SmolLM2-135M-Instruct through LLM.chat: every document gets a named status, no crash."""
    from datatrove.data import Document

    from refinex_datatrove.expert_protocol import ExpertStatus
    from refinex_datatrove.steps.expert import ExpertRefiner

    short = [d for d in demo_docs() if len(d["text"]) < 1000][:2]
    docs = [Document(text=d["text"], id=d["id"]) for d in short]
    docs.append(Document(text=demo_docs(1)[0]["text"], id="long"))  # split into two 1,500-character windows
    docs.append(Document(text="  \n \n", id="blank"))
    params = GenerationParams(max_tokens=384, temperature=0.7, top_p=0.8, top_k=20, seed=0)
    step = ExpertRefiner(backend=base_backend, window=1500, params=params, batch_size=4, model="SmolLM2-135M")
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == [d.id for d in docs]
    statuses = {d.id: d.metadata["refinex"]["rewrite"]["status"] for d in out}
    assert set(statuses.values()) <= {s.value for s in ExpertStatus}
    assert statuses["blank"] == ExpertStatus.EMPTY_INPUT
    sent = [d for d in out if d.id != "blank"]
    assert all(d.metadata["refinex"]["rewrite"]["status"] != ExpertStatus.FAILED for d in sent), [
        d.metadata["refinex"]["rewrite"]["error"] for d in sent]
    assert all(d.metadata["refinex"]["rewrite"]["prompt_tokens"] > 1000 for d in sent)
    assert out[2].metadata["refinex"]["rewrite"]["n_windows"] == 2
    for d in sent:
        rewrite = d.metadata["refinex"]["rewrite"]
        if rewrite["status"] == ExpertStatus.OK:
            assert isinstance(rewrite["text"], str)
    stats = {k: v.total for k, v in step.stats.stats.items()}
    assert sum(v for k, v in stats.items() if k.startswith("rewrite_")) == len(docs)
    print("expert statuses:", statuses)


def test_annotator_step_runs_on_vllm(lora_backend):
    """RefineModelAnnotator with the real engine: every document annotated, none failed. Last in the module:
    the step closes the backend it is given at the end of its run."""
    from datatrove.data import Document

    from refinex_datatrove.steps.annotate import RefineModelAnnotator

    step = RefineModelAnnotator(model="default", backend=lora_backend, batch_size=2, max_new_tokens=128)
    docs = [Document(text=d["text"], id=d["id"]) for d in demo_docs(3)]
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == [d["id"] for d in demo_docs(3)]
    stats = {k: v.total for k, v in step.stats.stats.items()}
    assert stats["docs_annotated"] == 3 and stats.get("gen_failed", 0) == 0 and stats["requests"] == 9
    # the decision rule scores every drastic program with the engine's own logprobs: none goes unscored
    assert stats.get("drastic_unscored", 0) == 0
    for d in out:
        chunks = d.metadata["refinex"]["program"]["chunks"]
        assert chunks and all(c["status"] in ("ok", "truncated", "empty", "overruled") for c in chunks)
        for c in chunks:
            if c["status"] == "overruled":  # replaced by keep_all(), the model's program and its margin kept
                assert c["program"] == "keep_all()" and c["overruled_program"] and c["margin"] is not None
