from __future__ import annotations

import copy
import pickle

import pytest
from datatrove.data import Document

from refinex_datatrove.llm.base import Generation, GenerationParams
from refinex_datatrove.llm.scripted import ScriptedBackend, request_text
from refinex_datatrove.prompts import load_prompt
from refinex_datatrove.steps.expert import EXPERT_PARAMS, ExpertRefiner


def doc_of(request) -> str:
    return request_text(request).split("Input: [doc]", 1)[1].rsplit("[/doc]", 1)[0]


def answer(refined: str, reason: str = "menu removed") -> str:
    return f"modification_reason: [doc]{reason}[/doc]\nrefined_text: [doc]{refined}[/doc]"


def drop_nav(request, params) -> str:
    """A scripted expert: deletes lines starting with 'NAV', keeps the rest."""
    lines = doc_of(request).split("\n")
    return answer("\n".join(line for line in lines if not line.startswith("NAV")))


def run(step, docs):
    out = list(step.run(iter(docs), rank=0, world_size=1))
    return out, {k: v.total for k, v in step.stats.stats.items()}


def make_docs(n: int) -> list[Document]:
    return [Document(text=f"NAV Home | About\nParagraph {i} about tides.", id=f"d{i}") for i in range(n)]


def test_well_formed_rewrites_are_recorded_and_text_untouched():
    backend = ScriptedBackend(drop_nav)
    step = ExpertRefiner(backend=backend, batch_size=2, model="scripted-expert")
    docs = make_docs(3)
    originals = [d.text for d in docs]
    out, stats = run(step, docs)
    assert [d.text for d in out] == originals
    for i, doc in enumerate(out):
        rewrite = doc.metadata["refinex"]["rewrite"]
        assert rewrite["text"] == f"Paragraph {i} about tides."
        assert rewrite["status"] == "ok"
        assert rewrite["reason"] == "menu removed"
        assert rewrite["prompt"] == "expert_refine_v1"
        assert rewrite["prompt_sha256"] == load_prompt("expert_refine_v1").sha256
        assert rewrite["model"] == "scripted-expert"
        assert rewrite["finish_reason"] == "stop"
        assert rewrite["n_windows"] == 1
        assert rewrite["prompt_tokens"] > 0 and rewrite["completion_tokens"] > 0
        assert set(doc.metadata["refinex"]) >= {"rewrite", "program", "exec"}
    assert stats["total"] == 3 and stats["forwarded"] == 3 and stats["rewrite_ok"] == 3
    assert stats["tokens_in"] == sum(d.metadata["refinex"]["rewrite"]["prompt_tokens"] for d in out)
    assert stats["tokens_out"] == sum(d.metadata["refinex"]["rewrite"]["completion_tokens"] for d in out)
    # batching across documents: 3 docs with batch_size 2 -> 2 generate calls, paper decoding params
    assert backend.calls == 2
    assert all(params == EXPERT_PARAMS for _, params in backend.requests)
    assert (EXPERT_PARAMS.temperature, EXPERT_PARAMS.top_p, EXPERT_PARAMS.top_k) == (0.7, 0.8, 20)


def test_long_document_is_refined_in_windows_and_reassembled():
    lines = []
    for i in range(40):
        lines += [f"NAV menu {i}", f"Sentence number {i} stays in the document."]
    doc = Document(text="\n".join(lines), id="long")
    backend = ScriptedBackend(drop_nav)
    step = ExpertRefiner(backend=backend, window=300)
    (out,), stats = run(step, [doc])
    rewrite = out.metadata["refinex"]["rewrite"]
    assert rewrite["n_windows"] == len(backend.requests) > 1
    assert rewrite["text"] == "\n".join(line for line in lines if not line.startswith("NAV"))
    assert stats["windows"] == rewrite["n_windows"]


def test_truncated_unparseable_and_failed_are_counted_not_raised():
    replies = {
        "trunc": Generation(text="refined_text: [doc]Paragraph cut sh", finish_reason="length"),
        "chat": "I am sorry, I cannot do that.",
        "fail": Generation(text="", finish_reason="error", error="HTTP 503"),
        "good": answer("Body good."),
    }

    def script(request, params):
        return replies[doc_of(request).split()[-1]]

    docs = [Document(text=f"Body {k}", id=k) for k in replies]
    out, stats = run(ExpertRefiner(backend=ScriptedBackend(script), batch_size=4), docs)
    status = {d.id: d.metadata["refinex"]["rewrite"]["status"] for d in out}
    assert status == {"trunc": "truncated", "chat": "unparseable", "fail": "failed", "good": "ok"}
    texts = {d.id: d.metadata["refinex"]["rewrite"]["text"] for d in out}
    assert texts == {"trunc": None, "chat": None, "fail": None, "good": "Body good."}
    assert out[2].metadata["refinex"]["rewrite"]["error"] == "HTTP 503"
    assert out[0].metadata["refinex"]["rewrite"]["finish_reason"] == "length"
    for name in ("rewrite_truncated", "rewrite_unparseable", "rewrite_failed", "rewrite_ok"):
        assert stats[name] == 1
    assert stats["total"] == stats["forwarded"] == 4


def test_empty_input_sends_nothing():
    backend = ScriptedBackend(drop_nav)
    out, stats = run(ExpertRefiner(backend=backend), [Document(text="  \n ", id="e"), *make_docs(1)])
    assert out[0].metadata["refinex"]["rewrite"]["status"] == "empty_input"
    assert out[0].metadata["refinex"]["rewrite"]["n_windows"] == 0
    assert len(backend.requests) == 1
    assert stats["rewrite_empty_input"] == 1 and stats["rewrite_ok"] == 1


def test_all_documents_failing_at_transport_level_raises_after_forwarding():
    backend = ScriptedBackend(lambda r, p: Generation(text="", finish_reason="error", error="model not found"))
    step = ExpertRefiner(backend=backend, batch_size=2)
    gen = step.run(iter(make_docs(3)))
    seen = []
    with pytest.raises(RuntimeError, match=r"all 3 documents.*model not found"):
        for doc in gen:
            seen.append(doc)
    assert len(seen) == 3
    assert step.stats["rewrite_failed"].total == 3


def test_one_success_prevents_the_all_failed_error():
    def script(request, params):
        if "Paragraph 0" in doc_of(request):
            return answer("Paragraph 0 about tides.")
        return Generation(text="", finish_reason="error", error="timeout")

    _, stats = run(ExpertRefiner(backend=ScriptedBackend(script)), make_docs(3))
    assert stats["rewrite_failed"] == 2 and stats["rewrite_ok"] == 1


class RaisingBackend:
    model = "broken"

    def __init__(self):
        self.calls = 0

    def generate(self, requests, params):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("server went away")
        return [Generation(text=answer("ok text"), finish_reason="stop") for _ in requests]

    def close(self):
        pass


def test_a_generate_call_that_raises_fails_its_batch_only():
    step = ExpertRefiner(backend=RaisingBackend(), batch_size=2)
    out, stats = run(step, make_docs(4))
    assert [d.metadata["refinex"]["rewrite"]["status"] for d in out] == ["failed", "failed", "ok", "ok"]
    assert "server went away" in out[0].metadata["refinex"]["rewrite"]["error"]
    assert stats["batch_error"] == 1
    assert out[0].metadata["refinex"]["rewrite"]["model"] == "broken"


def test_backend_spec_is_created_lazily_in_run_and_closed(monkeypatch):
    created = []

    def fake_make_backend(kind, model, **kwargs):
        backend = ScriptedBackend(drop_nav)
        created.append((kind, model, kwargs, backend))
        return backend

    monkeypatch.setattr("refinex_datatrove.llm.make_backend", fake_make_backend)
    step = ExpertRefiner(backend={"kind": "vllm", "model": "Qwen/Qwen2.5-72B-Instruct", "tensor_parallel_size": 4})
    assert created == []
    assert step.model == "Qwen/Qwen2.5-72B-Instruct"
    pickle.loads(pickle.dumps(step))  # plain config: picklable before run()
    out, _ = run(step, make_docs(2))
    ((kind, model, kwargs, backend),) = created
    assert (kind, model, kwargs) == ("vllm", "Qwen/Qwen2.5-72B-Instruct", {"tensor_parallel_size": 4})
    assert backend.closed
    assert out[0].metadata["refinex"]["rewrite"]["model"] == "Qwen/Qwen2.5-72B-Instruct"


def test_factory_backend_and_instance_not_closed():
    instance = ScriptedBackend(drop_nav)
    run(ExpertRefiner(backend=instance), make_docs(1))
    assert not instance.closed  # the caller owns an instance it passed in
    made = []
    run(ExpertRefiner(backend=lambda: made.append(ScriptedBackend(drop_nav)) or made[-1]), make_docs(1))
    assert made and made[0].closed


def test_step_deepcopies_and_custom_params():
    params = GenerationParams(max_tokens=100, temperature=0.0)
    step = ExpertRefiner(backend=ScriptedBackend(drop_nav), params=params)
    clone = copy.deepcopy(step)
    _, stats = run(clone, make_docs(1))
    assert stats["rewrite_ok"] == 1
    assert clone.backend_spec.requests[0][1] == params


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"backend": {"model": "x"}}, ValueError),
        ({"backend": 42}, TypeError),
        ({"backend": ScriptedBackend([]), "window": 0}, ValueError),
        ({"backend": ScriptedBackend([]), "batch_size": 0}, ValueError),
    ],
)
def test_invalid_configuration_fails_eagerly(kwargs, error):
    with pytest.raises(error):
        ExpertRefiner(**kwargs)


def test_unreadable_refinex_metadata_is_replaced_and_counted():
    doc = Document(text="NAV x\nbody", id="m", metadata={"refinex": "garbage"})
    (out,), stats = run(ExpertRefiner(backend=ScriptedBackend(drop_nav)), [doc])
    assert out.metadata["refinex"]["rewrite"]["text"] == "body"
    assert stats["malformed_refinex"] == 1
