"""ScriptedBackend (the test double) and the backend factory."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from refinex_datatrove.llm import (
    Generation,
    GenerationParams,
    LLMBackend,
    Request,
    ScriptedBackend,
    default_backend_kind,
    make_backend,
)
from refinex_datatrove.llm.scripted import request_text


def test_list_replies_are_consumed_in_order_then_error() -> None:
    backend = ScriptedBackend(["keep_all()", Generation(text="x", finish_reason="length")])
    params = GenerationParams(max_tokens=5)
    first = backend.generate([Request(prompt="one two"), Request(prompt="three")], params)
    assert [(g.text, g.finish_reason) for g in first] == [("keep_all()", "stop"), ("x", "length")]
    assert first[0].prompt_tokens == 2 and first[0].completion_tokens == 1
    (exhausted,) = backend.generate([Request(prompt="more")], params)
    assert exhausted.finish_reason == "error" and "ran out" in exhausted.error
    assert [r.prompt for r, _ in backend.requests] == ["one two", "three", "more"]
    assert backend.calls == 2


def test_callable_replies_stop_strings_and_exceptions() -> None:
    def reply(request: Request, params: GenerationParams) -> str:
        text = request_text(request)
        if text == "boom":
            raise RuntimeError("scripted failure")
        return f"remove_lines(1, 1)\n{text}"

    backend = ScriptedBackend(reply)
    gens = backend.generate(
        [Request(messages=[{"role": "user", "content": "hi"}]), Request(prompt="boom")],
        GenerationParams(stop=("\n",)),
    )
    assert gens[0].text == "remove_lines(1, 1)" and gens[0].ok
    assert gens[1].finish_reason == "error" and "scripted failure" in gens[1].error
    assert isinstance(backend, LLMBackend)
    clone = pickle.loads(pickle.dumps(ScriptedBackend(["a"])))
    assert clone.generate([Request(prompt="p")], GenerationParams())[0].text == "a"
    backend.close()
    assert backend.closed


def test_make_backend_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown backend kind"):
        make_backend("llamacpp", "m")


def test_default_kind_without_vllm(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert default_backend_kind() == "transformers"
    assert make_backend("auto", "m").__class__.__name__ == "TransformersBackend"


def test_importing_llm_package_is_light() -> None:
    code = (
        "import sys, refinex_datatrove.llm as m; m.make_backend; m.default_backend_kind; "
        "print(sorted(x for x in ('torch', 'transformers', 'vllm', 'httpx') if x in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
