"""OpenAIEndpointBackend against a real ``vllm serve`` on the CPU: ``/v1/completions`` (refine prompts, also with
``structured_outputs``), ``/v1/chat/completions``, and a server restart in the middle of a batch.
"""

from __future__ import annotations

import threading
import time

import pytest

from refinex_datatrove.refine_model.requests import build_requests, plan_chunks
from refinex_datatrove.llm.base import GenerationParams, Request
from refinex_datatrove.program import parse_program
from tests.vllm.conftest import demo_docs
from tests.vllm.test_offline_engine import invalid_calls


pytestmark = pytest.mark.vllm

PARAMS = GenerationParams(max_tokens=96, temperature=0.0)


def refine_requests(n_docs: int, guided: bool = False) -> tuple[list[Request], list[int]]:
    requests, n_lines = [], []
    for doc in demo_docs(n_docs):
        chunks = plan_chunks(doc["text"], 1200, "chars")
        requests += build_requests(doc["text"], chunks, guided=guided)
        n_lines += [c.n_lines for c in chunks if not c.skipped]
    return requests, n_lines


def backend_for(server, **kwargs):
    from refinex_datatrove.llm.openai_endpoint import OpenAIEndpointBackend

    return OpenAIEndpointBackend(server.url, server.served_name, api_key_env=None, timeout=120.0, **kwargs)


@pytest.fixture(scope="module")
def baseline(served_model):
    """Greedy completions of six refine chunks, one request at a time (so no batch mixes them)."""
    requests, _ = refine_requests(2)
    backend = backend_for(served_model, max_concurrency=1, use_chat=False)
    return requests, backend.generate(requests, PARAMS)


def test_completions_endpoint_serves_refine_prompts(served_model, baseline, merged_dir):
    from transformers import AutoTokenizer

    requests, gens = baseline
    assert len(requests) == 6
    assert all(g.ok for g in gens), [g.error for g in gens]
    tok = AutoTokenizer.from_pretrained(merged_dir)
    for r, g in zip(requests, gens, strict=True):
        assert g.prompt_tokens == len(tok(r.prompt)["input_ids"])
        assert 0 < g.completion_tokens <= PARAMS.max_tokens
        assert g.extra["attempts"] == 1
    assert sum(not parse_program(g.text).invalid for g in gens) >= 4  # the refine model writes programs


def test_completions_endpoint_honours_structured_outputs(served_model):
    requests, n_lines = refine_requests(2, guided=True)
    backend = backend_for(served_model, max_concurrency=4, use_chat=False)
    gens = backend.generate(requests, PARAMS)
    assert all(g.ok for g in gens), [g.error for g in gens]
    bad = {}
    for g, n in zip(gens, n_lines, strict=True):
        program = g.text if g.finish_reason == "stop" else "\n".join(g.text.split("\n")[:-1])
        if invalid_calls(program, n):
            bad[g.text] = invalid_calls(program, n)
    assert bad == {}


def test_chat_endpoint(served_model):
    backend = backend_for(served_model, max_concurrency=2, use_chat=True)
    messages = [
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}],
    ]
    gens = backend.generate([Request(messages=m) for m in messages], GenerationParams(max_tokens=24))
    assert all(g.ok and g.text.strip() for g in gens), [(g.text, g.error) for g in gens]
    assert all(g.prompt_tokens > 10 for g in gens)
    body_path, _ = backend.build_body(Request(messages=messages[0]), PARAMS)
    assert body_path == "/chat/completions"


def test_server_restart_mid_batch_is_retried_to_the_same_results(served_model, baseline):
    """The server is stopped after two of six requests and started again on the same port; the backend's
    connection retries (exponential backoff, capped at 4 s, 60 retries: at least ~2 min of patience) carry the
    batch over the restart, and the greedy results equal the uninterrupted ones."""
    requests, expected = baseline
    backend = backend_for(served_model, max_concurrency=1, use_chat=False, max_retries=60, backoff_base=0.5,
                          backoff_max=4.0)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("gens", backend.generate(requests, PARAMS)))
    worker.start()
    deadline = time.monotonic() + 300
    while backend.counters["attempts"] < 3:  # two requests answered, the third in flight
        assert worker.is_alive() and time.monotonic() < deadline, "the batch ended before the restart"
        time.sleep(0.05)
    served_model.stop()
    restarted_at = time.monotonic()
    served_model.start()
    restart_s = time.monotonic() - restarted_at
    worker.join(timeout=300)
    assert not worker.is_alive()
    gens = result["gens"]
    assert all(g.ok for g in gens), [g.error for g in gens]
    assert [g.text for g in gens] == [g.text for g in expected]
    assert backend.counters["retries"] >= 1 and backend.counters["errors"] == 0
    assert backend.counters["errors_by_kind"]["connection"] >= 1, dict(backend.counters["errors_by_kind"])
    assert max(g.extra["attempts"] for g in gens) > 1
    print(f"server restart took {restart_s:.1f} s; counters {backend.counters}")
