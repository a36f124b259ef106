from __future__ import annotations

import json

import pytest
from datatrove.data import Document
from datatrove.pipeline.writers.jsonl import JsonlWriter

from refinex_datatrove.distill.to_program import DistillConfig, DistillResult
from refinex_datatrove.metadata import read_chunk_programs
from refinex_datatrove.program import RENDER_FORMAT, Chunk, ChunkProgram, execute_document, parse_program
from refinex_datatrove.steps.distill import ProgramDistiller


NAV = "Home | News | Sport | Weather | Contact us"
BODY = ["The river flooded the lower town on Tuesday.", "Volunteers filled sandbags through the night."]
FOOTER = "Copyright 2024 Example Media. All rights reserved."


def rewrite_doc(doc_id: str, text: str, refined: str | None, status: str = "ok") -> Document:
    rewrite = {"text": refined, "status": status, "reason": "r"}
    return Document(text=text, id=doc_id, metadata={"refinex": {"rewrite": rewrite}})


def run(step, docs):
    out = list(step.run(iter(docs), rank=0, world_size=1))
    return out, {k: v.total for k, v in step.stats.stats.items()}


def test_rewrite_mode_emits_programs_that_reproduce_the_rewrite():
    text = "\n".join([NAV, *BODY, FOOTER])
    refined = "\n".join(BODY)
    out, stats = run(ProgramDistiller(), [rewrite_doc("a", text, refined)])
    (doc,) = out
    assert doc.text == text  # the original stays; the program is the product
    meta = doc.metadata["refinex"]
    program = meta["program"]
    assert program["render"] == RENDER_FORMAT and program["source"] == "distilled"
    assert [c["program"] for c in program["chunks"]] == ["remove_lines(1, 1)\nremove_lines(4, 4)"]
    assert execute_document(text, read_chunk_programs(meta, len(text.split("\n")))).text == refined
    assert meta["distill"]["status"] == "ok" and meta["distill"]["reason"] is None
    assert meta["distill"]["deleted_chars"] == len(text) - len(refined)
    assert meta["distill"]["ops"] == {"remove_lines": 2, "remove_str": 0, "keep_all": 0}
    assert stats["total"] == stats["forwarded"] == 1
    assert stats["ops_remove_lines"] == 2 and stats["ops_remove_str"] == 0
    assert stats["roundtrip_ok"] == 1 and stats["matches_refined"] == 1


def test_partial_line_deletion_becomes_remove_str():
    text = f"{BODY[0]} Click here to subscribe!\n{BODY[1]}"
    refined = f"{BODY[0]}\n{BODY[1]}"
    (doc,), stats = run(ProgramDistiller(), [rewrite_doc("s", text, refined)])
    assert doc.metadata["refinex"]["program"]["chunks"][0]["program"] == 'remove_str(1, " Click here to subscribe!")'
    assert stats["ops_remove_str"] == 1


def test_unchanged_document_is_a_keep_all_example():
    text = "\n".join(BODY)
    (doc,), stats = run(ProgramDistiller(), [rewrite_doc("k", text, text)])
    assert [c["program"] for c in doc.metadata["refinex"]["program"]["chunks"]] == ["keep_all()"]
    assert stats["programs_keep_all"] == 1 and stats["docs_keep_all"] == 1 and stats["programs"] == 1


def test_small_window_gives_one_program_per_chunk_with_local_numbers():
    lines = []
    for i in range(12):
        lines += [f"Menu entry {i} | Login", f"Paragraph {i} has real content in it."]
    text = "\n".join(lines)
    refined = "\n".join(line for line in lines if not line.startswith("Menu"))
    (doc,), stats = run(ProgramDistiller(window=200), [rewrite_doc("w", text, refined)])
    chunks = doc.metadata["refinex"]["program"]["chunks"]
    assert len(chunks) > 1
    for c in chunks:  # line numbers are local to each chunk
        local = lines[c["start"] : c["start"] + c["n_lines"]]
        expected = [n for n, line in enumerate(local, start=1) if line.startswith("Menu")]
        ops = parse_program(c["program"]).ops
        assert [op.start for op in ops] == expected and all(op.start == op.end for op in ops)
    meta = doc.metadata["refinex"]
    assert execute_document(text, read_chunk_programs(meta, len(lines))).text == refined
    assert stats["programs"] == len(chunks)
    assert meta["distill"]["window"] == 200 and meta["distill"]["unit"] == "chars"


def test_rejections_are_named_counted_and_excluded(tmp_path):
    text = "\n".join([NAV, *BODY])
    docs = [
        rewrite_doc("ok", text, "\n".join(BODY)),
        rewrite_doc("insert", text, "\n".join(BODY) + "\nA sentence the expert made up entirely."),
        rewrite_doc("tiny", "\n".join(BODY) + " ok", "\n".join(BODY)),
        rewrite_doc("trunc", text, None, status="truncated"),
        rewrite_doc("failed", text, None, status="failed"),
        Document(text=text, id="none"),
    ]
    step = ProgramDistiller(exclusion_writer=JsonlWriter(str(tmp_path), compression=None))
    out, stats = run(step, docs)
    assert [d.id for d in out] == ["ok"]
    excluded = [json.loads(line) for f in sorted(tmp_path.glob("*.jsonl")) for line in f.read_text().splitlines()]
    reasons = {d["id"]: d["metadata"]["refinex"]["distill"]["reason"] for d in excluded}
    assert reasons == {
        "insert": "insertion_too_long",
        "tiny": "too_few_deleted_chars",
        "trunc": "rewrite_truncated",
        "failed": "rewrite_failed",
        "none": "no_rewrite",
    }
    assert all(d["metadata"]["refinex"]["distill"]["status"] == "rejected" for d in excluded)
    detail = {d["id"]: d["metadata"]["refinex"]["distill"]["detail"] for d in excluded}
    assert "made up" in detail["insert"]  # the offending insertion is quoted
    for reason in reasons.values():
        assert stats[f"rejected_{reason}"] == 1
    assert stats["total"] == len(docs) == len(out) + len(excluded)
    assert stats["forwarded"] + stats["dropped"] == stats["total"]


def test_field_mode_reads_a_metadata_field():
    text = "\n".join([NAV, *BODY, FOOTER])
    docs = [
        Document(text=text, id="f", metadata={"gold_projected": "\n".join(BODY)}),
        Document(text=text, id="nested", metadata={"gold": {"projected": BODY[0]}}),
        Document(text=text, id="missing", metadata={}),
        Document(text=text, id="wrong_type", metadata={"gold_projected": ["not", "text"]}),
    ]
    out, stats = run(ProgramDistiller(source="field", field="gold_projected"), docs[:1] + docs[2:])
    assert [d.id for d in out] == ["f"]
    assert stats["rejected_missing_field"] == 2
    (nested,), _ = run(ProgramDistiller(source="field", field="gold.projected"), [docs[1]])
    assert "remove_lines(1, 1)" in nested.metadata["refinex"]["program"]["chunks"][0]["program"]


def test_config_is_passed_to_the_distiller():
    text = "\n".join(BODY) + " ok"
    (doc,), _ = run(
        ProgramDistiller(config=DistillConfig(min_deleted_chars=1)), [rewrite_doc("t", text, "\n".join(BODY))]
    )
    assert doc.metadata["refinex"]["program"]["chunks"][0]["program"] == 'remove_str(2, " ok")'


def test_distiller_exception_is_a_named_rejection(monkeypatch):
    def boom(*args, **kwargs):
        raise RecursionError("deep")

    monkeypatch.setattr("refinex_datatrove.steps.distill.distill_document", boom)
    out, stats = run(ProgramDistiller(), [rewrite_doc("x", "a\nb", "a")])
    assert out == [] and stats["rejected_distill_error"] == 1


def test_programs_that_do_not_roundtrip_are_rejected(monkeypatch):
    def wrong(original, refined, window, unit, config):
        # claims to delete line 1 but the program deletes line 2
        return DistillResult(
            chunk_programs=[ChunkProgram(Chunk(0, 2), "remove_lines(2, 2)")],
            op_counts={"remove_lines": 1},
            deleted_spans=[(0, 2)],
            deleted_chars=2,
        )

    monkeypatch.setattr("refinex_datatrove.steps.distill.distill_document", wrong)
    out, stats = run(ProgramDistiller(), [rewrite_doc("x", "a\nb", "b")])
    assert out == [] and stats["rejected_roundtrip_mismatch"] == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"source": "field"}, {"source": "other"}, {"field": "gold_projected"}, {"window": 0}],
)
def test_invalid_configuration_fails_eagerly(kwargs):
    with pytest.raises(ValueError):
        ProgramDistiller(**kwargs)


def test_step_pickles_with_its_exclusion_writer(tmp_path):
    import pickle

    step = ProgramDistiller(exclusion_writer=JsonlWriter(str(tmp_path), compression=None))
    clone = pickle.loads(pickle.dumps(step))
    out, stats = run(clone, [rewrite_doc("x", "a\nb", None, status="failed")])
    assert out == [] and stats["rejected_rewrite_failed"] == 1
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
