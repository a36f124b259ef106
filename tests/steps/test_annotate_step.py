"""RefineModelAnnotator with the ScriptedBackend test double and with a real tiny transformers model."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
from datatrove.data import Document

from refinex_datatrove.refine_model.requests import ChunkStatus
from refinex_datatrove.llm.base import Generation, Request
from refinex_datatrove.llm.scripted import ScriptedBackend, request_text
from refinex_datatrove.metadata import META_KEY, read_chunk_programs
from refinex_datatrove.program import (
    REFINE_INSTRUCTION,
    RENDER_FORMAT,
    is_deletion_of,
    render_chunk,
    render_prompt,
)
from refinex_datatrove.steps.annotate import AnnotateStat, GenerationUnavailable, RefineModelAnnotator
from refinex_datatrove.steps.execute import ProgramExecutor


os.environ.setdefault("HF_HUB_OFFLINE", "1")

_NUMBERED = re.compile(r"^\[(\d+)\] (.*)$")


def chunk_lines_of(request) -> list[str]:
    """The chunk's lines as the model sees them, checking the raw prompt format on the way.

    The refine model gets one raw prompt (no chat messages): the instruction line, the ``[n] line`` block and a
    final line break, after which the program follows.
    """
    assert request.messages is None and isinstance(request.prompt, str)
    body = request.prompt
    assert body.startswith(REFINE_INSTRUCTION + "\n") and body.endswith("\n")
    out = []
    for row in body[len(REFINE_INSTRUCTION) + 1 : -1].split("\n"):
        m = _NUMBERED.match(row)
        assert m and int(m.group(1)) == len(out) + 1, row
        out.append(m.group(2))
    assert body == render_prompt(render_chunk(out))
    return out


def nav_remover(request, params):
    """A scripted 'model': remove every line that starts with NAV; FAIL / TRUNC markers inject failures."""
    lines = chunk_lines_of(request)
    if any("FAIL" in line for line in lines):
        return Generation(text="", finish_reason="error", error="scripted failure")
    calls = [f"remove_lines({i}, {i})" for i, line in enumerate(lines, 1) if line.startswith("NAV")]
    if any("TRUNC" in line for line in lines):
        return Generation(text="\n".join(calls) + '\nremove_str(1, "cut', finish_reason="length", completion_tokens=7)
    return "```\n" + ("\n".join(calls) or "keep_all()") + "\n```"


def make_doc(i: int, n_lines: int = 12, extra: str = "") -> Document:
    lines = []
    for j in range(n_lines):
        lines.append(f"NAV menu item {j}" if j % 3 == 0 else f"Paragraph {j} of document {i} about the river.")
    if extra:
        lines.insert(4, extra)
    return Document(text="\n".join(lines), id=f"doc-{i}")


def run_step(step, docs):
    return list(step.run(iter(docs)))


def test_programs_stored_with_offsets_and_execute_to_the_expected_text():
    docs = [make_doc(i, n_lines=10 + i) for i in range(5)]
    originals = {d.id: d.text for d in docs}
    backend = ScriptedBackend(nav_remover)
    step = RefineModelAnnotator(model="some/model", backend=backend, window=120, batch_size=2)
    out = run_step(step, docs)
    assert [d.id for d in out] == [d.id for d in docs]
    assert backend.closed
    n_requests = len(backend.requests)
    assert n_requests > len(docs)  # small window: several chunks per document
    assert backend.calls == 3  # 5 documents in batches of 2
    for doc in out:
        assert doc.text == originals[doc.id]  # annotation never edits text
        record = doc.metadata[META_KEY]["program"]
        assert record["source"] == "model" and record["model"] == "some/model"
        assert record["render"] == RENDER_FORMAT
        lines = doc.text.split("\n")
        assert record["n_lines"] == len(lines)
        # chunks tile the document in order
        starts = [c["start"] for c in record["chunks"]]
        assert starts[0] == 0 and sum(c["n_lines"] for c in record["chunks"]) == len(lines)
        pairs = zip(record["chunks"], record["chunks"][1:], strict=False)
        assert all(a["start"] + a["n_lines"] == b["start"] for a, b in pairs)
        # every remove_lines(i, i) points, through the chunk offset, at a NAV line of the document
        for chunk in record["chunks"]:
            assert chunk["status"] == "ok"
            for m in re.finditer(r"remove_lines\((\d+), \d+\)", chunk["program"]):
                assert lines[chunk["start"] + int(m.group(1)) - 1].startswith("NAV")
        read_chunk_programs(doc.metadata[META_KEY], len(lines))  # the executor's reader accepts it

    executed = list(ProgramExecutor().run(iter(out)))
    for doc in executed:
        expected = "\n".join(line for line in originals[doc.id].split("\n") if not line.startswith("NAV"))
        assert doc.text == expected

    stats = step.stats
    assert stats[AnnotateStat.REQUESTS].total == n_requests
    assert stats[AnnotateStat.CHUNKS].total == sum(len(d.metadata[META_KEY]["program"]["chunks"]) for d in out)
    assert stats[AnnotateStat.DOCS_ANNOTATED].total == 5
    assert stats[AnnotateStat.TOKENS_IN].total > 0 and stats[AnnotateStat.TOKENS_OUT].total > 0
    assert stats["total"].total == stats["forwarded"].total == 5
    greedy = {params.temperature for _, params in backend.requests}
    assert greedy == {0.0}


def test_failed_and_truncated_chunks_are_counted_and_failed_chunks_keep_their_text():
    docs = [
        make_doc(0, n_lines=9, extra="This line makes the chunk FAIL."),
        make_doc(1, n_lines=9, extra="This line makes the chunk TRUNC."),
        make_doc(2, n_lines=9),
    ]
    originals = [d.text for d in docs]
    step = RefineModelAnnotator(model="m", backend=ScriptedBackend(nav_remover), window=10_000)
    out = run_step(step, docs)
    statuses = [[c["status"] for c in d.metadata[META_KEY]["program"]["chunks"]] for d in out]
    assert statuses == [["failed"], ["truncated"], ["ok"]]
    assert out[0].metadata[META_KEY]["program"]["chunks"][0]["program"] == "keep_all()"
    # the truncated program keeps its complete calls and drops the cut one
    assert "cut" not in out[1].metadata[META_KEY]["program"]["chunks"][0]["program"]
    assert step.stats[AnnotateStat.GEN_FAILED].total == 1
    assert step.stats[AnnotateStat.GEN_TRUNCATED].total == 1
    assert step.stats[AnnotateStat.DOCS_FAILED].total == 1
    assert step.stats[AnnotateStat.DOCS_ANNOTATED].total == 2

    executed = list(ProgramExecutor().run(iter(out)))
    assert executed[0].text == originals[0]  # failed: unchanged
    for doc, original in zip(executed[1:], originals[1:], strict=True):
        assert doc.text == "\n".join(x for x in original.split("\n") if not x.startswith("NAV"))


def test_every_document_failing_raises():
    docs = [make_doc(i, extra="FAIL here") for i in range(3)]
    step = RefineModelAnnotator(model="m", backend=ScriptedBackend(nav_remover))
    with pytest.raises(RuntimeError, match="every request of the first batch failed"):
        run_step(step, docs)


def test_backend_exception_on_first_batch_fails_fast():
    class Broken(ScriptedBackend):
        def generate(self, requests, params):
            raise OSError("no such model folder: /nope")

    backend = Broken([])
    step = RefineModelAnnotator(model="/nope", backend=backend, batch_size=1)
    with pytest.raises(RuntimeError, match=r"first batch.*no such model folder"):
        run_step(step, [make_doc(0), make_doc(1)])
    assert backend.closed


def test_later_batch_exception_fails_the_task_before_writing_its_batch():
    """Failure contract: a backend that raises mid-run is not a document-level fault; nothing of that batch is
    forwarded (so nothing unrefined reaches the writer) and the task fails, to be rerun."""

    class FlakySecond(ScriptedBackend):
        def generate(self, requests, params):
            if self.calls == 1:
                self.calls += 1
                raise ConnectionError("server went away")
            return super().generate(requests, params)

    step = RefineModelAnnotator(model="m", backend=FlakySecond(nav_remover), batch_size=1)
    out = []
    with pytest.raises(GenerationUnavailable, match=r"server went away.*rerun"):
        out.extend(step.run(iter([make_doc(0), make_doc(1), make_doc(2)])))
    assert [d.id for d in out] == ["doc-0"]
    assert out[0].metadata[META_KEY]["program"]["chunks"][0]["status"] == "ok"
    assert step.stats[AnnotateStat.BATCH_ERROR].total == 1


def test_skipped_and_blank_chunks_get_no_request():
    long_line = "y" * 300
    doc = Document(text=f"NAV top\nreal content here\n{long_line}\n   \n\nNAV bottom", id="d")
    empty = Document(text="", id="e")
    backend = ScriptedBackend(nav_remover)
    step = RefineModelAnnotator(model="m", backend=backend, window=40)
    out = run_step(step, [doc, empty])
    chunks = out[0].metadata[META_KEY]["program"]["chunks"]
    by_status = {c["status"] for c in chunks}
    assert ChunkStatus.SKIPPED.value in by_status
    sent_bodies = [request_text(r) for r, _ in backend.requests]
    assert not any(long_line in b for b in sent_bodies)
    assert sent_bodies[0] == "Clean:\n[1] NAV top\n[2] real content here\n"  # the raw prompt, verbatim
    assert len(backend.requests) == sum(c["status"] == "ok" for c in chunks)
    assert out[1].metadata[META_KEY]["program"]["chunks"] == [
        {"start": 0, "n_lines": 1, "skipped": False, "program": "keep_all()", "status": "blank", "error": None,
         "margin": None, "overruled_program": None}
    ]
    assert step.stats[AnnotateStat.CHUNKS_SKIPPED].total == 1
    assert step.stats[AnnotateStat.DOCS_FAILED].total == 0


def test_guided_requests_carry_a_regex_bounded_by_the_chunk():
    backend = ScriptedBackend(nav_remover)
    step = RefineModelAnnotator(model="m", backend=backend, window=60, guided=True)
    run_step(step, [make_doc(0)])
    for request, _ in backend.requests:
        n = len(chunk_lines_of(request))
        assert re.fullmatch(request.guided_regex, f"remove_lines({n}, {n})")
        assert not re.fullmatch(request.guided_regex, f"remove_lines({n + 1}, {n + 1})")


def test_refinex_json_sets_window_and_unit_and_render_format_is_checked(tmp_path):
    model = tmp_path / "refiner"
    model.mkdir()
    meta = {"render_format": RENDER_FORMAT, "instruction": REFINE_INSTRUCTION, "window": 7, "unit": "words",
            "base_model": "x", "base_gguf_file": None, "adapter": False}
    (model / "refinex.json").write_text(json.dumps(meta))
    step = RefineModelAnnotator(model=str(model), backend=ScriptedBackend(nav_remover))
    assert (step.window, step.unit, step.model_name) == (7, "words", "refiner")
    assert RefineModelAnnotator(model=str(model), backend="transformers", window=50).window == 50

    meta["render_format"] = "numbered_v0"
    (model / "refinex.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="numbered_v0"):
        RefineModelAnnotator(model=str(model), backend="transformers")


def test_constructor_validation_and_pickling():
    with pytest.raises(ValueError):
        RefineModelAnnotator(model="m", backend="llamacpp")
    with pytest.raises(ValueError):
        RefineModelAnnotator(model="m", backend="transformers", max_new_tokens=0)
    with pytest.raises(ValueError):
        RefineModelAnnotator(model="m", backend="transformers", batch_size=0)
    with pytest.raises(TypeError):
        RefineModelAnnotator("m")  # keyword-only
    step = RefineModelAnnotator(model="m", backend="endpoint", backend_kwargs={"base_url": "http://127.0.0.1:9"})
    clone = pickle.loads(pickle.dumps(step))
    assert clone.backend_kwargs == {"base_url": "http://127.0.0.1:9"} and clone.params.temperature == 0.0


# ---- a real (tiny, random) model through TransformersBackend ---------------------------------------------


def _check_real_run(step, docs, originals, max_new):
    out = run_step(step, docs)
    assert step.stats[AnnotateStat.REQUESTS].total >= len(docs)
    assert step.stats[AnnotateStat.TOKENS_IN].total > 0
    assert 0 < step.stats[AnnotateStat.TOKENS_OUT].total <= max_new * step.stats[AnnotateStat.REQUESTS].total
    assert step.stats[AnnotateStat.GEN_FAILED].total == 0
    for doc in out:
        record = doc.metadata[META_KEY]["program"]
        assert {c["status"] for c in record["chunks"]} <= {"ok", "truncated", "empty"}
        read_chunk_programs(doc.metadata[META_KEY], len(doc.text.split("\n")))
    executed = list(ProgramExecutor().run(iter(out)))
    for doc in executed:
        assert is_deletion_of(originals[doc.id], doc.text)  # whatever a random model says: deletions only


def test_real_tiny_model_through_transformers(tiny_model_dir):
    docs = [make_doc(i, n_lines=6) for i in range(3)]
    originals = {d.id: d.text for d in docs}
    step = RefineModelAnnotator(
        model=tiny_model_dir, backend="transformers", backend_kwargs={"num_threads": 1}, window=200,
        max_new_tokens=12, batch_size=3,
    )
    _check_real_run(step, docs, originals, 12)


def test_real_tiny_model_guided_writes_only_programs_of_its_chunks(tiny_model_dir):
    from refinex_datatrove.program.executor import SkipReason, execute_document
    from refinex_datatrove.refine_model.grammar import program_regex

    docs = [make_doc(i, n_lines=n) for i, n in enumerate((2, 5, 9))]
    originals = {d.id: d.text for d in docs}
    step = RefineModelAnnotator(
        model=tiny_model_dir, backend="transformers", backend_kwargs={"num_threads": 1}, window=120,
        max_new_tokens=300, bound_by_lines=False, batch_size=3, guided=True, max_calls=3, max_str_chars=6,
    )
    out = run_step(step, [Document(text=d.text, id=d.id) for d in docs])
    sizes = set()
    for doc in out:
        record = doc.metadata[META_KEY]["program"]
        for chunk in record["chunks"]:
            assert chunk["status"] == "ok", chunk  # complete: the grammar bounds the program's length
            assert re.fullmatch(program_regex(chunk["n_lines"], max_calls=3, max_str_chars=6), chunk["program"])
            sizes.add(chunk["n_lines"])
        result = execute_document(doc.text, read_chunk_programs(doc.metadata[META_KEY]))
        for reason in (SkipReason.INVALID_CALL, SkipReason.INVERTED_RANGE, SkipReason.LINE_OUT_OF_RANGE):
            assert result.skipped.get(reason, 0) == 0, result.skipped
    assert len(sizes) >= 3  # chunks of different line counts, hence different grammars, in one batch
    assert step.stats[AnnotateStat.GEN_FAILED].total == 0
    for doc in ProgramExecutor().run(iter(out)):
        assert is_deletion_of(originals[doc.id], doc.text)


def test_real_tiny_lora_adapter_from_refinex_json(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    meta = {"render_format": RENDER_FORMAT, "instruction": REFINE_INSTRUCTION, "window": 150, "unit": "chars",
            "base_model": tiny_model_dir, "base_gguf_file": None, "adapter": True}
    (adapter / "refinex.json").write_text(json.dumps(meta))
    docs = [make_doc(7, n_lines=5)]
    step = RefineModelAnnotator(model=str(adapter), backend="transformers", max_new_tokens=8)
    assert step.window == 150
    _check_real_run(step, docs, {d.id: d.text for d in docs}, 8)
    assert docs[0].metadata[META_KEY]["program"]["model"] == "adapter"


# ---- InferenceRunner route ------------------------------------------------------------------------------------


def _nav_program(prompt: str) -> str | Generation:
    from refinex_datatrove.llm.base import Request

    return nav_remover(Request(prompt=prompt), None)


def test_rollout_with_a_fake_generate_stores_the_same_record_as_the_step():
    import asyncio

    from refinex_datatrove.refine_model.requests import chunk_max_tokens

    from datatrove.pipeline.inference.types import InferenceError, InferenceResult

    from refinex_datatrove.steps.annotate import make_annotate_rollout

    payloads = []

    async def generate(payload):
        payloads.append(payload)
        prompt = payload["prompt"]
        if "FAIL" in prompt:
            raise InferenceError(None, "Got BadRequestError: prompt too long", payload=payload)
        reply = _nav_program(prompt)
        if isinstance(reply, Generation):
            return InferenceResult(text=reply.text, finish_reason=reply.finish_reason, usage={"prompt_tokens": 5})
        return InferenceResult(text=reply, finish_reason="stop", usage={"prompt_tokens": 11, "completion_tokens": 4})

    rollout = make_annotate_rollout(window=90, max_tokens=64, guided=True, model_name="served-refiner")
    rollout = pickle.loads(pickle.dumps(rollout))  # InferenceRunner ships it to worker processes
    doc = make_doc(0, n_lines=10, extra="this chunk will FAIL")
    twin = Document(text=doc.text, id=doc.id)
    summary = asyncio.run(rollout(doc, generate))

    record = doc.metadata[META_KEY]["program"]
    assert record["model"] == "served-refiner" and record["source"] == "model"
    assert summary["requests"] == len(payloads) == sum(c["status"] != "skipped" for c in record["chunks"])
    assert summary["failed"] == 1 == sum(c["status"] == "failed" for c in record["chunks"])
    assert summary["prompt_tokens"] == 11 * (summary["requests"] - 1)
    for p in payloads:
        n_lines = len(chunk_lines_of(Request(prompt=p["prompt"])))
        assert p["max_tokens"] == chunk_max_tokens(n_lines, 64) <= 64  # bounded by the chunk's line count
        assert p["temperature"] == 0.0 and "messages" not in p
        assert p["structured_outputs"]["regex"].startswith("(keep_all")

    # the inline step with the same window writes the same programs
    backend = ScriptedBackend(nav_remover)
    step = RefineModelAnnotator(model="m", backend=backend, window=90)
    (inline,) = run_step(step, [twin])
    # both transports send the model the very same raw prompts
    assert sorted(p["prompt"] for p in payloads) == sorted(r.prompt for r, _ in backend.requests)
    def key(chunks):
        return [(c["start"], c["n_lines"], c["program"], c["status"]) for c in chunks]

    assert key(inline.metadata[META_KEY]["program"]["chunks"]) == key(record["chunks"])


def test_rollout_lets_server_errors_fail_the_task():
    import asyncio

    from datatrove.pipeline.inference.types import ServerError

    from refinex_datatrove.steps.annotate import make_annotate_rollout

    async def generate(payload):
        raise ServerError("vllm died")

    with pytest.raises(ServerError):
        asyncio.run(make_annotate_rollout()(make_doc(0), generate))


def test_inference_runner_against_a_local_endpoint_then_execute(tmp_path):
    pytest.importorskip("aiofiles")
    pytest.importorskip("aiosqlite")
    from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from refinex_datatrove.steps.annotate import make_annotate_rollout
    from tests.fake_openai_server import FakeOpenAIServer

    def script(body):
        assert "messages" not in body
        reply = _nav_program(body["prompt"])
        return reply if isinstance(reply, str) else reply.text

    docs = [make_doc(i, n_lines=8 + i) for i in range(5)]
    originals = {d.id: d.text for d in docs}
    with FakeOpenAIServer(script=script, model="refiner") as server:
        runner = InferenceRunner(
            rollout_fn=make_annotate_rollout(window=100, max_tokens=32, model_name="refiner"),
            config=InferenceConfig(
                server_type="endpoint", model_name_or_path="refiner", endpoint_url=server.url,
                max_concurrent_generations=4, metric_interval=3600, use_chat=False,
            ),
            output_writer=JsonlWriter(
                str(tmp_path / "annotated"), output_filename="${rank}_chunk_${chunk_index}.jsonl", compression=None
            ),
            checkpoints_local_dir=str(tmp_path / "ckpt"),
            records_per_chunk=2,
        )
        runner.run(iter(docs), rank=0, world_size=1)
        sent = server.completion_requests
        assert sent and all(r.body["model"] == "refiner" for r in sent)
        assert {r.path for r in sent} == {"/v1/completions"}  # raw prompts: the completions endpoint, no template
        assert all(isinstance(r.body["prompt"], str) and "messages" not in r.body for r in sent)
    files = sorted(p.name for p in (tmp_path / "annotated").iterdir())
    assert files == ["00000_chunk_0.jsonl", "00000_chunk_1.jsonl", "00000_chunk_2.jsonl"]  # 5 docs, 2 per chunk

    stage2 = list(ProgramExecutor().run(JsonlReader(str(tmp_path / "annotated")).run()))
    assert sorted(d.id for d in stage2) == sorted(originals)
    for doc in stage2:
        assert doc.metadata[META_KEY]["exec"]["status"] == "executed"
        assert doc.text == "\n".join(x for x in originals[doc.id].split("\n") if not x.startswith("NAV"))


def test_each_chunk_is_bounded_by_its_line_count_unless_turned_off():
    from refinex_datatrove.refine_model.requests import CHUNK_TOKENS_BASE, CHUNK_TOKENS_PER_LINE, chunk_max_tokens

    assert chunk_max_tokens(3, 512) == CHUNK_TOKENS_BASE + 3 * CHUNK_TOKENS_PER_LINE
    assert chunk_max_tokens(1000, 512) == 512
    docs = [make_doc(i, n_lines=5 + 9 * i) for i in range(3)]
    backend = ScriptedBackend(nav_remover)
    run_step(RefineModelAnnotator(model="m", backend=backend, window=400, max_new_tokens=100), docs)
    bounds = {(len(chunk_lines_of(r)), r.max_tokens) for r, _ in backend.requests}
    assert bounds and all(b == chunk_max_tokens(n, 100) for n, b in bounds)
    assert any(b < 100 for _, b in bounds) and all(p.max_tokens == 100 for _, p in backend.requests)
    unbounded = ScriptedBackend(nav_remover)
    step = RefineModelAnnotator(model="m", backend=unbounded, window=400, max_new_tokens=100, bound_by_lines=False)
    run_step(step, [make_doc(0)])
    assert {r.max_tokens for r, _ in unbounded.requests} == {None}


def test_progress_lines_while_annotating():
    import io
    import time

    from refinex_datatrove.steps.annotate import Progress

    progress = Progress(3600, expected_docs=10, label="task 0", stream=io.StringIO())
    progress.add(4, 9, 2000)
    line = progress.line(now=progress.start + 8.0)
    progress.stop()
    assert line == (
        "refine task 0: 4/10 docs, 9 chunks, 250 prompt tok/s, 0.50 docs/s, elapsed 8s, ETA 12s"
    )
    stream = io.StringIO()
    step = RefineModelAnnotator(
        model="m", backend=ScriptedBackend(nav_remover), progress_every=0.01, expected_docs=3, batch_size=1
    )

    def slow(data):
        for doc in data:
            time.sleep(0.05)
            yield doc

    import sys

    old, sys.stderr = sys.stderr, stream
    try:
        run_step(step, slow([make_doc(i) for i in range(3)]))
    finally:
        sys.stderr = old
    lines = stream.getvalue().splitlines()
    assert lines and all(ln.startswith("refine task 0: ") for ln in lines)
    assert any("/3 docs" in ln and "ETA" in ln for ln in lines)
    with pytest.raises(ValueError):
        RefineModelAnnotator(model="m", backend="transformers", progress_every=0)


def test_workers_split_the_cores_between_transformers_backends(tiny_model_dir, monkeypatch):
    from refinex_datatrove.llm.transformers_backend import default_num_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    step = RefineModelAnnotator(model=tiny_model_dir, backend="transformers", workers=2)
    assert step._make_backend().num_threads == default_num_threads(2)
    explicit = RefineModelAnnotator(
        model=tiny_model_dir, backend="transformers", workers=2, backend_kwargs={"num_threads": 3}
    )
    assert explicit._make_backend().num_threads == 3
    assert RefineModelAnnotator(model=tiny_model_dir, backend="transformers")._make_backend().num_threads is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own setting wins
    assert RefineModelAnnotator(model=tiny_model_dir, backend="transformers", workers=2)._make_backend().num_threads is None
