from __future__ import annotations

import json

import pytest
from datatrove.data import Document

from refinex_datatrove.metadata import write_program
from refinex_datatrove.program import Chunk, ChunkProgram, render_chunk, render_prompt
from refinex_datatrove.steps.sft_records import SFTRecordWriter


def program_doc(doc_id: str, text: str, programs: list[ChunkProgram]) -> Document:
    doc = Document(text=text, id=doc_id)
    write_program(doc, programs, "distilled", len(text.split("\n")))
    doc.metadata["refinex"]["distill"] = {"window": 123, "unit": "chars"}
    return doc


def read_records(folder) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines()]


def test_one_record_per_non_skipped_chunk_and_docs_pass_through(tmp_path):
    text = "nav\nbody one\n" + "x" * 30 + "\nbody two"
    programs = [
        ChunkProgram(Chunk(0, 2), "remove_lines(1, 1)"),
        ChunkProgram(Chunk(2, 1, skipped=True), "keep_all()"),
        ChunkProgram(Chunk(3, 1), "keep_all()"),
    ]
    docs = [program_doc("d1", text, programs), Document(text="no program here", id="d2")]
    step = SFTRecordWriter(output_folder=str(tmp_path), compression=None, fmt="prompt_completion")
    out = list(step.run(iter(docs), rank=0))
    assert out == docs
    records = read_records(tmp_path)
    assert [r["id"] for r in records] == ["d1/chunk_0", "d1/chunk_2"]
    assert records[0]["prompt"] == render_prompt(render_chunk(["nav", "body one"]))
    assert records[0]["completion"] == "remove_lines(1, 1)"
    assert records[1]["prompt"] == render_prompt(render_chunk(["body two"]))
    assert {(r["render"], r["window"], r["unit"]) for r in records} == {("numbered_v1", 123, "chars")}
    assert step.stats["records"].total == 2
    assert step.stats["no_program"].total == 1
    assert step.stats["total"].total == 2


def test_conversational_records_and_malformed_programs(tmp_path):
    good = program_doc("g", "a\nb", [ChunkProgram(Chunk(0, 2), "remove_lines(2, 2)")])
    bad = program_doc("b", "a\nb", [ChunkProgram(Chunk(0, 2), "keep_all()")])
    bad.text = "a\nb\nc"  # the program no longer matches the text
    step = SFTRecordWriter(
        output_folder=str(tmp_path), compression=None, fmt="conversational", window=7, unit="words"
    )
    list(step.run(iter([good, bad]), rank=3))
    (record,) = read_records(tmp_path)
    assert record["prompt"] == [{"role": "user", "content": render_prompt("[1] a\n[2] b")}]
    assert record["completion"] == [{"role": "assistant", "content": "remove_lines(2, 2)"}]
    assert (record["window"], record["unit"]) == (7, "words")
    assert step.stats["malformed_program_mismatch"].total == 1
    assert (tmp_path / "00003.jsonl").exists()


def test_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError):
        SFTRecordWriter()
    with pytest.raises(ValueError):
        SFTRecordWriter(output_folder=str(tmp_path), fmt="chatml")


def test_step_pickles_with_the_standard_pickle(tmp_path):
    import pickle

    step = pickle.loads(pickle.dumps(SFTRecordWriter(output_folder=str(tmp_path), compression=None)))
    list(step.run(iter([program_doc("p", "a\nb", [ChunkProgram(Chunk(0, 2), "keep_all()")])])))
    (record,) = read_records(tmp_path)
    assert record["id"] == "p/chunk_0"
    # the default format: raw prompt and completion strings
    assert (record["prompt"], record["completion"]) == ("Clean:\n[1] a\n[2] b\n", "keep_all()")
