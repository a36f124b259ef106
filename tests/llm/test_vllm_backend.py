"""VLLMBackend request building and output mapping against a fake ``vllm`` module; one real-vLLM test."""

from __future__ import annotations

import importlib.machinery
import pickle
import sys
import types
from types import SimpleNamespace
from typing import ClassVar

import pytest

from refinex_datatrove.llm import GenerationParams, Request, make_backend
from refinex_datatrove.llm.vllm_backend import (
    VLLM_INSTALL_HINT,
    VLLMBackend,
    output_to_generation,
    to_sampling_kwargs,
)


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeStructuredOutputsParams:
    def __init__(self, regex=None):
        self.regex = regex


class FakeGuidedDecodingParams:
    def __init__(self, regex=None):
        self.regex = regex


class FakeLoRARequest:
    def __init__(self, name, int_id, path):
        self.name, self.int_id, self.path = name, int_id, path


def fake_output(text: str, reason: str | None = "stop", n_prompt: int = 3, n_out: int | None = None):
    n_out = len(text.split()) if n_out is None else n_out
    completion = SimpleNamespace(text=text, finish_reason=reason, token_ids=list(range(n_out)), stop_reason=None)
    return SimpleNamespace(prompt_token_ids=list(range(n_prompt)), outputs=[completion])


class FakeLLM:
    """Stands in for vllm.LLM: records calls; 'TOO LONG' in a prompt makes the whole call raise, like vLLM."""

    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple[str, list, object, dict]] = []
        FakeLLM.instances.append(self)

    def _check(self, items):
        for item in items:
            text = item if isinstance(item, str) else item[-1]["content"]
            if "TOO LONG" in text:
                raise ValueError("prompt is longer than max_model_len")

    def chat(self, messages, sampling_params, **kwargs):
        self.calls.append(("chat", messages, sampling_params, kwargs))
        self._check(messages)
        return [fake_output(f"chat:{m[-1]['content']}", n_prompt=10 + i) for i, m in enumerate(messages)]

    def generate(self, prompts, sampling_params, **kwargs):
        self.calls.append(("generate", prompts, sampling_params, kwargs))
        self._check(prompts)
        return [fake_output(f"raw:{p}", reason="length", n_prompt=len(p)) for p in prompts]


def install_fake_vllm(monkeypatch: pytest.MonkeyPatch, *, new_api: bool = True) -> types.ModuleType:
    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    vllm.LLM = FakeLLM
    vllm.SamplingParams = FakeSamplingParams
    sampling = types.ModuleType("vllm.sampling_params")
    if new_api:
        sampling.StructuredOutputsParams = FakeStructuredOutputsParams
    else:
        sampling.GuidedDecodingParams = FakeGuidedDecodingParams
    lora = types.ModuleType("vllm.lora")
    lora_request = types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = FakeLoRARequest
    for name, module in [
        ("vllm", vllm),
        ("vllm.sampling_params", sampling),
        ("vllm.lora", lora),
        ("vllm.lora.request", lora_request),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    FakeLLM.instances.clear()
    return vllm


CHAT = Request(messages=[{"role": "user", "content": "[1] hi"}])


def test_sampling_kwargs_map_one_to_one() -> None:
    params = GenerationParams(max_tokens=77, temperature=0.6, top_p=0.9, top_k=20, stop=("\n\n", "END"), seed=5)
    assert to_sampling_kwargs(params) == {
        "max_tokens": 77,
        "temperature": 0.6,
        "top_p": 0.9,
        "top_k": 20,
        "stop": ["\n\n", "END"],
        "seed": 5,
    }
    greedy = to_sampling_kwargs(GenerationParams())
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == -1 and greedy["seed"] is None
    assert "structured_outputs" not in greedy and "guided_decoding" not in greedy


@pytest.mark.parametrize(
    ("new_api", "key", "cls"),
    [
        (True, "structured_outputs", FakeStructuredOutputsParams),
        (False, "guided_decoding", FakeGuidedDecodingParams),
    ],
)
def test_guided_regex_uses_the_installed_api(monkeypatch, new_api, key, cls) -> None:
    install_fake_vllm(monkeypatch, new_api=new_api)
    kwargs = to_sampling_kwargs(GenerationParams(guided_regex=r"keep_all\(\)"))
    assert isinstance(kwargs[key], cls)
    assert kwargs[key].regex == r"keep_all\(\)"
    other = "guided_decoding" if new_api else "structured_outputs"
    assert other not in kwargs


def test_missing_vllm_gives_install_hint(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    backend = VLLMBackend("some/model")  # constructing needs no vllm (steps are built before shipping)
    with pytest.raises(ImportError, match=r"refinex-datatrove\[vllm\]"):
        backend.generate([CHAT], GenerationParams())
    with pytest.raises(ImportError, match="pip install"):
        to_sampling_kwargs(GenerationParams(guided_regex="x"))
    assert VLLM_INSTALL_HINT == "pip install 'refinex-datatrove[vllm]'"


def test_engine_is_created_lazily_with_settings(monkeypatch) -> None:
    install_fake_vllm(monkeypatch)
    backend = VLLMBackend(
        "m",
        tensor_parallel_size=2,
        max_model_len=4096,
        gpu_memory_utilization=0.5,
        dtype="bfloat16",
        extra={"enforce_eager": True, "max_num_seqs": 64},
    )
    assert FakeLLM.instances == []
    backend.generate([CHAT], GenerationParams())
    backend.generate([CHAT], GenerationParams())
    assert len(FakeLLM.instances) == 1  # one engine for the backend's lifetime
    assert FakeLLM.instances[0].kwargs == {
        "model": "m",
        "tensor_parallel_size": 2,
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.5,
        "dtype": "bfloat16",
        "enforce_eager": True,
        "max_num_seqs": 64,
    }
    clone = pickle.loads(pickle.dumps(backend))
    assert clone._llm is None and clone.extra == {"enforce_eager": True, "max_num_seqs": 64}
    backend.close()
    backend.close()
    assert backend._llm is None


def test_mixed_requests_routed_and_reordered(monkeypatch) -> None:
    install_fake_vllm(monkeypatch)
    backend = VLLMBackend("m")
    fake = FakeLLM()
    backend._llm = fake
    requests = [
        Request(prompt="p0"),
        Request(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "c1"}]),
        Request(prompt="p2 long"),
        Request(messages=[{"role": "user", "content": "c3"}]),
    ]
    params = GenerationParams(max_tokens=9, stop=("\n",))
    gens = backend.generate(requests, params)
    assert [g.text for g in gens] == ["raw:p0", "chat:c1", "raw:p2 long", "chat:c3"]
    assert [g.finish_reason for g in gens] == ["length", "stop", "length", "stop"]
    assert [g.prompt_tokens for g in gens] == [2, 10, 7, 11]
    kinds = {kind: (items, sp, kw) for kind, items, sp, kw in fake.calls}
    assert kinds["chat"][0] == [requests[1].messages, requests[3].messages]  # one batched call per kind
    assert kinds["generate"][0] == ["p0", "p2 long"]
    assert kinds["chat"][1].kwargs == to_sampling_kwargs(params)
    assert kinds["chat"][2]["add_generation_prompt"] is True
    assert kinds["chat"][2]["use_tqdm"] is False
    assert "lora_request" not in kinds["chat"][2]


def test_lora_and_chat_template_are_passed(monkeypatch) -> None:
    install_fake_vllm(monkeypatch)
    backend = VLLMBackend("m", lora_path="/adapters/refine", chat_template="{{ messages }}")
    assert backend.engine_kwargs()["enable_lora"] is True
    fake = FakeLLM()
    backend._llm = fake
    backend.generate([CHAT, Request(prompt="x")], GenerationParams())
    for kind, _, _, kwargs in fake.calls:
        assert kwargs["lora_request"].path == "/adapters/refine"
        assert ("chat_template" in kwargs) == (kind == "chat")


def test_failing_batch_is_retried_one_by_one(monkeypatch) -> None:
    install_fake_vllm(monkeypatch)
    backend = VLLMBackend("m")
    fake = FakeLLM()
    backend._llm = fake
    requests = [Request(prompt="ok 1"), Request(prompt="TOO LONG"), Request(prompt="ok 2"), CHAT]
    gens = backend.generate(requests, GenerationParams())
    assert [g.finish_reason for g in gens] == ["length", "error", "length", "stop"]
    assert "max_model_len" in gens[1].error
    assert gens[0].text == "raw:ok 1" and gens[2].text == "raw:ok 2"
    raw_calls = [items for kind, items, _, _ in fake.calls if kind == "generate"]
    assert raw_calls == [["ok 1", "TOO LONG", "ok 2"], ["ok 1"], ["TOO LONG"], ["ok 2"]]


def test_output_mapping() -> None:
    g = output_to_generation(fake_output("a b c", "length", n_prompt=4, n_out=3))
    assert (g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens) == ("a b c", "length", 4, 3)
    aborted = output_to_generation(fake_output("partial", "abort"))
    assert aborted.finish_reason == "error" and "abort" in aborted.error and aborted.text == "partial"
    unfinished = output_to_generation(fake_output("x", None))
    assert unfinished.finish_reason == "error"
    empty = output_to_generation(SimpleNamespace(prompt_token_ids=[1, 2], outputs=[]))
    assert empty.finish_reason == "error" and empty.prompt_tokens == 2


def test_make_backend_vllm() -> None:
    backend = make_backend("vllm", "m", max_model_len=1024, extra={"enforce_eager": True})
    assert isinstance(backend, VLLMBackend)
    assert backend.engine_kwargs()["max_model_len"] == 1024


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        VLLMBackend("m", tensor_parallel_size=0)
    with pytest.raises(ValueError):
        VLLMBackend("m", gpu_memory_utilization=1.5)


@pytest.mark.vllm
def test_real_vllm_engine_on_tiny_model(request: pytest.FixtureRequest) -> None:
    pytest.importorskip("vllm")
    tiny_model_dir = request.getfixturevalue("tiny_model_dir")  # built only where vllm is installed
    from transformers import AutoTokenizer

    backend = VLLMBackend(
        tiny_model_dir, max_model_len=512, gpu_memory_utilization=0.3, dtype="float32", extra={"enforce_eager": True}
    )
    try:
        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        requests = [CHAT, Request(prompt="remove_lines(1, 2)")]
        gens = backend.generate(requests, GenerationParams(max_tokens=4))
        assert all(g.ok for g in gens)
        assert gens[1].prompt_tokens == len(tok("remove_lines(1, 2)")["input_ids"])
        assert all(g.completion_tokens <= 4 for g in gens)
        assert all(g.finish_reason == "length" for g in gens if g.completion_tokens == 4)
        (guided,) = backend.generate([CHAT], GenerationParams(max_tokens=32, guided_regex=r"keep_all\(\)"))
        assert guided.text == "keep_all()"
    finally:
        backend.close()


def test_request_guided_regex_overrides_batch_params(monkeypatch) -> None:
    install_fake_vllm(monkeypatch)
    backend = VLLMBackend("m")
    fake = FakeLLM()
    backend._llm = fake
    requests = [
        Request(prompt="a", guided_regex=r"remove_lines\(1, 1\)"),
        Request(prompt="b"),
        Request(prompt="c", guided_regex=r"remove_lines\(1, 1\)"),
    ]
    backend.generate(requests, GenerationParams(guided_regex="keep_all\\(\\)"))
    ((_, _, sampling, _),) = fake.calls
    assert isinstance(sampling, list) and len(sampling) == 3  # one SamplingParams per prompt
    regexes = [sp.kwargs["structured_outputs"].regex for sp in sampling]
    assert regexes == [r"remove_lines\(1, 1\)", "keep_all\\(\\)", r"remove_lines\(1, 1\)"]
    assert sampling[0] is sampling[2]  # identical settings share one object
    fake.calls.clear()
    backend.generate([Request(prompt="a"), Request(prompt="b")], GenerationParams())
    ((_, _, sampling, _),) = fake.calls
    assert isinstance(sampling, FakeSamplingParams)  # no per-request differences: a single object
