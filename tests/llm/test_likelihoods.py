"""The model's own likelihoods (``GenerationParams(logprobs=k)``) on every backend: transformers scores on the tiny
model, the endpoint's OpenAI ``logprobs`` through the fake server, vLLM's ``CompletionOutput.logprobs``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from refinex_datatrove.llm.base import FIRST_TOP_LOGPROBS, TOKEN_LOGPROBS, GenerationParams, Request
from refinex_datatrove.llm.vllm_backend import output_to_generation, to_sampling_kwargs
from refinex_datatrove.refine_model.decision import likelihood_of


PROMPTS = ["Clean:\n[1] Home | News\n[2] The river rose.\n", "Clean:\n[1] a\n", "[1] x y z x y z x y z"]


def test_logprobs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="logprobs"):
        GenerationParams(logprobs=0)


# ------------------------------------------------------------------------------------------------ transformers


def _teacher_forced(backend, prompt: str, completion: list[int]) -> tuple[list[float], list[float]]:
    """Log-probabilities of ``completion`` after ``prompt`` from one forward pass, and the first step's row."""
    import torch

    ids = backend._encode(Request(prompt=prompt))
    x = torch.tensor([ids + completion])
    with torch.inference_mode():
        logp = torch.log_softmax(backend.model(x).logits[0].float(), dim=-1)
    n = len(ids)
    return [float(logp[n - 1 + k, t]) for k, t in enumerate(completion)], logp[n - 1].tolist()


@pytest.mark.parametrize("decode_round", [None, 3])
def test_transformers_logprobs_match_a_teacher_forced_pass(tiny_model_dir: str, decode_round) -> None:
    pytest.importorskip("torch")
    from refinex_datatrove.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_model_dir, dtype="float32", batch_size=3, num_threads=1,
                                  decode_round=decode_round)
    requests = [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS, (12, 7, 4), strict=True)]
    gens = backend.generate(requests, GenerationParams(max_tokens=12, logprobs=5))
    plain = backend.generate(requests, GenerationParams(max_tokens=12))
    assert [g.text for g in gens] == [g.text for g in plain]  # asking for likelihoods changes no token
    assert all(TOKEN_LOGPROBS not in g.extra for g in plain)
    for request, gen in zip(requests, gens, strict=True):
        values = gen.extra[TOKEN_LOGPROBS]
        assert len(values) == gen.completion_tokens >= 1
        completion = backend.tokenizer(gen.text, add_special_tokens=False)["input_ids"]
        if len(completion) != gen.completion_tokens:  # decode/encode is not always a round trip
            continue
        expected, first_row = _teacher_forced(backend, request.prompt, completion)
        assert values == pytest.approx(expected, abs=1e-3)
        top = gen.extra[FIRST_TOP_LOGPROBS]
        assert len(top) <= 5 and max(top.values()) == pytest.approx(max(first_row), abs=1e-3)
        # greedy: the first generated token is the most likely one
        assert values[0] == pytest.approx(max(top.values()), abs=1e-3)
        assert likelihood_of(gen).program == pytest.approx(math.fsum(expected), abs=1e-2)
    backend.close()


# ------------------------------------------------------------------------------------------------ endpoint


def test_endpoint_requests_and_parses_completions_logprobs() -> None:
    pytest.importorskip("httpx")
    from refinex_datatrove.llm.openai_endpoint import OpenAIEndpointBackend
    from tests.fake_openai_server import FakeOpenAIServer

    def script(body):
        if "messages" in body:
            return {"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "keep_all()"},
                                 "logprobs": {"content": [
                                     {"token": "keep", "logprob": -0.25,
                                      "top_logprobs": [{"token": "keep", "logprob": -0.25},
                                                       {"token": "remove", "logprob": -1.5}]},
                                     {"token": "_all()", "logprob": -0.01, "top_logprobs": []}]}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
        return {"choices": [{"index": 0, "finish_reason": "stop", "text": "remove_lines(1, 2)",
                             "logprobs": {"tokens": ["remove", "_lines(1, 2)"], "token_logprobs": [-0.5, -0.125],
                                          "top_logprobs": [{"remove": -0.5, "keep": -1.25}, {"_lines(1, 2)": -0.125}]}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    with FakeOpenAIServer(script=script) as server:
        backend = OpenAIEndpointBackend(server.url, "fake", api_key_env=None)
        gens = backend.generate(
            [Request(prompt="Clean:\n[1] a\n"), Request(messages=[{"role": "user", "content": "x"}])],
            GenerationParams(max_tokens=16, logprobs=7),
        )
        bodies = {r.path: r.body for r in server.completion_requests}
        plain = backend.generate([Request(prompt="x")], GenerationParams(max_tokens=4))
        plain_body = server.completion_requests[-1].body
    assert bodies["/v1/completions"]["logprobs"] == 7
    assert bodies["/v1/chat/completions"]["logprobs"] is True and bodies["/v1/chat/completions"]["top_logprobs"] == 7
    assert "logprobs" not in plain_body and plain[0].ok  # not asked for, not sent
    completion, chat = gens
    assert completion.extra[TOKEN_LOGPROBS] == [-0.5, -0.125]
    assert completion.extra[FIRST_TOP_LOGPROBS] == {"remove": -0.5, "keep": -1.25}
    lk = likelihood_of(completion)
    assert (lk.first, lk.program, lk.keep_all) == (-0.5, -0.625, -1.25)
    assert chat.extra[TOKEN_LOGPROBS] == [-0.25, -0.01]
    assert chat.extra[FIRST_TOP_LOGPROBS] == {"keep": -0.25, "remove": -1.5}


def test_endpoint_reply_without_or_with_malformed_logprobs_has_none() -> None:
    from refinex_datatrove.llm.openai_endpoint import parse_logprobs

    assert parse_logprobs("/completions", {"text": "x"}) == {}
    assert parse_logprobs("/completions", {"logprobs": {"token_logprobs": [None, -1.0]}}) == {}
    assert parse_logprobs("/completions", {"logprobs": {"token_logprobs": ["a"]}}) == {}
    assert parse_logprobs("/chat/completions", {"logprobs": {"content": [{"token": "k"}]}}) == {}
    assert parse_logprobs("/chat/completions", {"logprobs": None}) == {}


# ------------------------------------------------------------------------------------------------ vLLM


def test_vllm_sampling_asks_for_logprobs_and_maps_them() -> None:
    assert to_sampling_kwargs(GenerationParams(logprobs=4))["logprobs"] == 4
    assert "logprobs" not in to_sampling_kwargs(GenerationParams())

    def lp(value, text):
        return SimpleNamespace(logprob=value, rank=1, decoded_token=text)

    steps = [{11: lp(-0.3, "remove"), 12: lp(-1.4, "keep")}, {13: lp(-0.05, "_lines(1, 1)"), 14: lp(-4.0, "x")}]
    completion = SimpleNamespace(text="remove_lines(1, 1)", finish_reason="stop", token_ids=[11, 13],
                                 stop_reason=None, logprobs=steps)
    gen = output_to_generation(SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[completion]))
    assert gen.extra[TOKEN_LOGPROBS] == [-0.3, -0.05]
    assert gen.extra[FIRST_TOP_LOGPROBS] == {"remove": -0.3, "keep": -1.4}
    # a sampled token missing from its step's entries: no likelihoods rather than wrong ones
    completion.logprobs = [{12: lp(-1.4, "keep")}, {13: lp(-0.05, "x")}]
    assert TOKEN_LOGPROBS not in output_to_generation(SimpleNamespace(prompt_token_ids=[1], outputs=[completion])).extra
