"""Backend faults: the refine annotator against the fake OpenAI-compatible server on 127.0.0.1.

Timeouts, 429s, 500s, dropped connections, malformed JSON and truncated generations: retries are bounded, a
document whose requests finally fail keeps its text with a ``failed`` chunk status, the task finishes; a task
in which every document fails raises with a clear message (a wrong model name or a dead server is caught on
the first shard), and a rerun after the fault is fixed completes the task.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest
from datatrove.data import Document

from refinex_datatrove.refine_model.requests import ChunkStatus
from refinex_datatrove.metadata import META_KEY
from refinex_datatrove.steps.annotate import AnnotateStat, GenerationUnavailable, RefineModelAnnotator
from refinex_datatrove.steps.execute import ProgramExecutor
from tests.fake_openai_server import FakeOpenAIServer, Reply
from tests.resilience.scripted_models import prompt_rows


pytest.importorskip("httpx")

MODEL = "fake-model"
MAX_RETRIES = 3
_ROW = re.compile(r"\[(\d+)\] (.*)")

FAULTS = {
    "ALWAYS429": lambda: Reply(status=429, text="slow down", headers={"Retry-After": "0"}),
    "ALWAYS500": lambda: Reply(status=500, text="internal error"),
    "ALWAYSDROP": lambda: Reply(drop=True),
    "ALWAYSBAD": lambda: Reply(malformed=True),
    "ALWAYSSLOW": lambda: Reply(delay=3.0, text="keep_all()"),
    "ALWAYSNOCHOICES": lambda: Reply(body={"choices": []}),
    "ALWAYS400": lambda: Reply(status=400, text="prompt too long"),
}
RETRIED = {"ALWAYS429", "ALWAYS500", "ALWAYSDROP", "ALWAYSBAD", "ALWAYSSLOW", "ALWAYSNOCHOICES"}


def prompt_of(body: dict) -> str:
    """The refine prompt of a request body (``/completions`` prompt or the last chat message)."""
    return body["prompt"] if "prompt" in body else body["messages"][-1]["content"]


def refine_script(body: dict) -> Reply:
    """The 'model': delete the rows that start with NAV; fault markers in the chunk trigger server faults."""
    if body.get("model") != MODEL:
        return Reply(status=404, text=f"The model `{body.get('model')}` does not exist.")
    prompt = prompt_of(body)
    for marker, fault in FAULTS.items():
        if marker in prompt:
            return fault()
    calls = []
    for row in prompt_rows(prompt):
        m = _ROW.fullmatch(row)
        if m and m.group(2).startswith("NAV"):
            calls.append(f"remove_lines({m.group(1)}, {m.group(1)})")
    if "TRUNC" in prompt:  # cut mid-call by max_tokens
        return Reply(text="\n".join(calls) + '\nremove_str(1, "Parag', finish_reason="length")
    return Reply(text="\n".join(calls) or "keep_all()")


def make_docs(n: int, markers: dict[int, str] | None = None) -> list[Document]:
    docs = []
    for i in range(n):
        lines = [f"NAV home {i}", f"Paragraph one of document {i}.", "NAV share", f"Paragraph two of {i}."]
        if markers and i in markers:
            lines.insert(2, f"{markers[i]} marker line")
        docs.append(Document(text="\n".join(lines), id=f"d{i}"))
    return docs


def expected(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.startswith("NAV"))


def annotator(url: str, *, model: str = MODEL, timeout: float = 1.0, max_retries: int = MAX_RETRIES,
              batch_size: int = 8) -> RefineModelAnnotator:
    return RefineModelAnnotator(
        model=model,
        backend="endpoint",
        backend_kwargs={
            "base_url": url, "timeout": timeout, "max_retries": max_retries, "backoff_base": 0.01,
            "backoff_max": 0.02, "api_key_env": None, "max_concurrency": 4,
        },
        window=10_000,
        batch_size=batch_size,
    )


def refine(step: RefineModelAnnotator, docs: list[Document]) -> list[Document]:
    return list(ProgramExecutor().run(step.run(iter(docs))))


def attempts_with(server: FakeOpenAIServer, marker: str) -> int:
    return sum(marker in prompt_of(r.body) for r in server.completion_requests)


def test_transient_faults_are_retried_and_the_result_is_unchanged():
    docs = make_docs(6)
    originals = {d.id: d.text for d in docs}
    with FakeOpenAIServer(script=refine_script) as server:
        # every kind of transient fault once, then the server behaves; 4 requests in flight get them in any order
        server.inject(Reply(status=429, headers={"Retry-After": "0"}), Reply(status=500), Reply(status=503),
                      Reply(drop=True), Reply(malformed=True), Reply(delay=3.0), Reply(body={"choices": []}))
        step = annotator(server.url, max_retries=8)
        out = refine(step, docs)
        n_requests = len(server.completion_requests)
    assert [d.id for d in out] == [d.id for d in docs]
    for doc in out:
        assert doc.text == expected(originals[doc.id])
        assert {c["status"] for c in doc.metadata[META_KEY]["program"]["chunks"]} == {ChunkStatus.OK}
    # each fault costs one extra attempt (more only if a loaded machine makes a normal request time out)
    assert len(docs) + 7 <= n_requests <= len(docs) * 9
    assert step.stats[AnnotateStat.GEN_FAILED].total == 0
    assert step.stats[AnnotateStat.DOCS_ANNOTATED].total == len(docs)


CAUSES = {"ALWAYS429": "http_429", "ALWAYS500": "http_5xx", "ALWAYSDROP": "connection", "ALWAYSBAD": "malformed",
          "ALWAYSSLOW": "timeout", "ALWAYSNOCHOICES": "malformed"}


@pytest.mark.parametrize("marker", sorted(RETRIED))
def test_a_persistent_transient_fault_fails_the_task_after_bounded_retries(marker):
    """Failure contract: retries exhausted on a transient fault mean the endpoint is down, not that the document
    needs no edit: the task stops before forwarding the failing batch, so no unrefined document is written."""
    docs = make_docs(5, markers={2: marker})
    originals = {d.id: d.text for d in docs}
    with FakeOpenAIServer(script=refine_script) as server:
        step = annotator(server.url, batch_size=1)
        out = []
        with pytest.raises(GenerationUnavailable, match=CAUSES[marker]) as info:
            out.extend(ProgramExecutor().run(step.run(iter(docs))))
        attempts = attempts_with(server, marker)
        assert server.url in str(info.value) and "rerun" in str(info.value)
    assert attempts == MAX_RETRIES + 1
    assert [d.id for d in out] == ["d0", "d1"]  # refined before the fault; nothing of the failing batch
    assert all(d.text == expected(originals[d.id]) for d in out)
    assert step.stats[f"gen_failed_{CAUSES[marker]}"].total == 1
    assert step.stats[AnnotateStat.GEN_RETRIES].total >= MAX_RETRIES


def test_a_request_the_server_rejects_fails_only_its_document_which_is_not_refined():
    """A 4xx is not retried and retrying later would not help: the document keeps its text, carries the error,
    is not executed (no keep_all counted as applied) and the filter sends it to its own output."""
    from refinex_datatrove.steps.failed import FailedGenerationFilter

    docs = make_docs(5, markers={2: "ALWAYS400"})
    originals = {d.id: d.text for d in docs}
    with FakeOpenAIServer(script=refine_script) as server:
        step = annotator(server.url)
        executor = ProgramExecutor()
        out = list(executor.run(step.run(iter(docs))))
        assert attempts_with(server, "ALWAYS400") == 1
    by_id = {d.id: d for d in out}
    failed = by_id["d2"]
    assert failed.text == originals["d2"]
    (chunk,) = failed.metadata[META_KEY]["program"]["chunks"]
    assert chunk["status"] == ChunkStatus.FAILED and "prompt too long" in chunk["error"]
    assert failed.metadata[META_KEY]["exec"]["status"] == "generation_failed"
    assert "applied" not in failed.metadata[META_KEY]["exec"] or not failed.metadata[META_KEY]["exec"]["applied"]
    for doc_id in ("d0", "d1", "d3", "d4"):
        assert by_id[doc_id].text == expected(originals[doc_id])
    assert step.stats[AnnotateStat.GEN_FAILED].total == 1
    assert step.stats["gen_failed_http_4xx"].total == 1
    assert step.stats[AnnotateStat.DOCS_FAILED].total == 1
    assert executor.stats["generation_failed"].total == 1
    assert "applied_keep_all" not in executor.stats.stats  # nothing was applied to d2 (the others have edits)
    kept = [d.id for d in FailedGenerationFilter().run(iter(out))]
    assert kept == ["d0", "d1", "d3", "d4"]


def test_retried_requests_are_counted():
    docs = make_docs(3)
    with FakeOpenAIServer(script=refine_script) as server:
        server.inject(Reply(status=503), Reply(drop=True))
        step = annotator(server.url, batch_size=8)
        out = refine(step, docs)
    assert [d.text for d in out] == [expected(d.text) for d in docs]
    assert step.stats[AnnotateStat.GEN_RETRIES].total == 2
    assert step.stats[AnnotateStat.GEN_FAILED].total == 0


def test_truncated_generation_keeps_its_complete_calls():
    docs = make_docs(3, markers={1: "TRUNC"})
    originals = {d.id: d.text for d in docs}
    with FakeOpenAIServer(script=refine_script) as server:
        step = annotator(server.url)
        out = {d.id: d for d in refine(step, docs)}
    truncated = out["d1"]
    assert truncated.text == expected(originals["d1"])  # the complete remove_lines calls applied
    assert 'remove_str(1, "Parag' not in truncated.metadata[META_KEY]["program"]["chunks"][0]["program"]
    assert truncated.metadata[META_KEY]["program"]["chunks"][0]["status"] == ChunkStatus.TRUNCATED
    assert truncated.metadata[META_KEY]["exec"]["skipped"].get("invalid_call", 0) == 0
    assert step.stats[AnnotateStat.GEN_TRUNCATED].total == 1


def test_every_document_failing_raises_with_a_clear_message():
    docs = make_docs(4, markers=dict.fromkeys(range(4), "ALWAYS500"))
    with FakeOpenAIServer(script=refine_script) as server:
        step = annotator(server.url)
        with pytest.raises(GenerationUnavailable, match=r"4 of 4 requests .* failed after bounded retries"):
            refine(step, docs)
        assert len(server.completion_requests) == 4 * (MAX_RETRIES + 1)


def test_wrong_model_name_fails_the_first_shard_without_retries():
    docs = make_docs(4)
    with FakeOpenAIServer(script=refine_script) as server:
        step = annotator(server.url, model="no-such-model")
        with pytest.raises(RuntimeError, match="no-such-model"):
            refine(step, docs)
        assert len(server.completion_requests) == len(docs)  # a 404 is not retried


def test_dead_server_fails_the_first_shard():
    with FakeOpenAIServer(script=refine_script) as server:
        url = server.url
    step = annotator(url, max_retries=1)  # nothing listens there any more: connection refused
    with pytest.raises(GenerationUnavailable, match=r"connection=2.*Connect"):
        refine(step, make_docs(2))


def test_failed_task_is_not_marked_complete_and_a_rerun_finishes_it(tmp_path):
    """Through LocalPipelineExecutor: the all-failed task raises, leaves no completion mark, and a rerun with
    the server fixed produces the refined output."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    src = tmp_path / "in"
    src.mkdir()
    docs = make_docs(3)
    (src / "part.jsonl").write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    logs, out_dir = tmp_path / "logs", tmp_path / "out"

    def pipeline(url, model):
        return [JsonlReader(str(src)), annotator(url, model=model), ProgramExecutor(), JsonlWriter(str(out_dir))]

    with FakeOpenAIServer(script=refine_script) as server:
        first = LocalPipelineExecutor(pipeline(server.url, "wrong-model"), tasks=1, workers=1,
                                      logging_dir=str(logs))
        with pytest.raises(RuntimeError, match="wrong-model"):
            first.run()
        assert not (logs / "completions" / "00000").exists()
        second = LocalPipelineExecutor(pipeline(server.url, MODEL), tasks=1, workers=1, logging_dir=str(logs))
        second.run()
    assert (logs / "completions" / "00000").exists()
    rows = []
    for path in sorted(out_dir.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            rows += [json.loads(line) for line in f]
    assert sorted((r["id"], r["text"]) for r in rows) == sorted((d.id, expected(d.text)) for d in docs)


def test_wrong_local_model_path_fails_at_the_first_batch(tmp_path, monkeypatch):
    """A wrong model folder with the in-process backend raises on the first batch, before any document is out."""
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-such-model"
    step = RefineModelAnnotator(model=str(missing), backend="transformers", window=10_000)
    out = []
    with pytest.raises(RuntimeError, match="first batch") as info:
        out.extend(step.run(iter(make_docs(3))))
    assert out == []
    assert "no-such-model" in str(info.value)
