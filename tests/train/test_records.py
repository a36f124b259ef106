from __future__ import annotations

import pytest

from refinex_datatrove.program import REFINE_INSTRUCTION, Chunk, ChunkProgram, chunk_lines, render_chunk
from refinex_datatrove.train.records import sft_record_chunk_indices, sft_records


TEXT = "Home | Shop\nFirst paragraph {with braces}.\n" + "L" * 40 + "\nSecond paragraph."


def test_conversational_records_use_the_core_renderer():
    programs = [ChunkProgram(Chunk(0, 2), "remove_lines(1, 1)"), ChunkProgram(Chunk(2, 2), "keep_all()")]
    records = sft_records(TEXT, programs, fmt="conversational")
    assert records[0] == {
        "prompt": [
            {
                "role": "user",
                "content": f"{REFINE_INSTRUCTION}\n[1] Home | Shop\n[2] First paragraph {{with braces}}.\n",
            }
        ],
        "completion": [{"role": "assistant", "content": "remove_lines(1, 1)"}],
    }
    # numbering restarts at 1 in every chunk
    assert records[1]["prompt"][0]["content"] == f"{REFINE_INSTRUCTION}\n[1] {'L' * 40}\n[2] Second paragraph.\n"


def test_prompt_completion_records_are_plain_strings():
    programs = [ChunkProgram(Chunk(0, 4), 'remove_str(2, " {with braces}")')]
    (record,) = sft_records(TEXT, programs, fmt="prompt_completion")
    # the raw prompt, verbatim: instruction, numbered lines, and a final line break after which the program follows
    assert record["prompt"] == (
        "Clean:\n[1] Home | Shop\n[2] First paragraph {with braces}.\n"
        f"[3] {'L' * 40}\n[4] Second paragraph.\n"
    )
    assert record["completion"] == 'remove_str(2, " {with braces}")'
    rendered = render_chunk(TEXT.split("\n"))
    assert record["prompt"] + record["completion"] == f"{REFINE_INSTRUCTION}\n{rendered}\n{record['completion']}"


def test_default_format_is_prompt_completion():
    programs = [ChunkProgram(Chunk(0, 2), "remove_lines(1, 1)"), ChunkProgram(Chunk(2, 2), "keep_all()")]
    assert sft_records(TEXT, programs) == sft_records(TEXT, programs, fmt="prompt_completion")
    assert all(isinstance(r["prompt"], str) and isinstance(r["completion"], str) for r in sft_records(TEXT, programs))


def test_skipped_chunks_produce_no_record():
    chunks = chunk_lines(TEXT.split("\n"), 35)
    assert [c.skipped for c in chunks].count(True) == 1
    programs = [ChunkProgram(c, "keep_all()") for c in chunks]
    records = sft_records(TEXT, programs, fmt="prompt_completion")
    assert len(records) == len(chunks) - 1
    assert all("L" * 40 not in r["prompt"] for r in records)
    assert sft_record_chunk_indices(programs) == [k for k, c in enumerate(chunks) if not c.skipped]


def test_bad_arguments():
    with pytest.raises(ValueError, match="record format"):
        sft_records(TEXT, [], fmt="chatml")
    with pytest.raises(ValueError, match="does not fit"):
        sft_records("one line", [ChunkProgram(Chunk(0, 3), "keep_all()")])
