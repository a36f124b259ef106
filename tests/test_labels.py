from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refinex_datatrove.labels import programs_from_keep_labels
from refinex_datatrove.program import Chunk, ChunkProgram, execute_document

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "wcxb-dev" / "sample.jsonl"


def _kept(lines: list[str], keep: list[int]) -> str:
    return "\n".join(line for line, k in zip(lines, keep, strict=True) if k)


@pytest.mark.parametrize(
    ("keep", "program"),
    [
        ([1, 1, 1], "keep_all()"),
        ([0, 0, 0], "remove_lines(1, 3)"),
        ([0, 1, 1], "remove_lines(1, 1)"),
        ([1, 1, 0], "remove_lines(3, 3)"),
        ([1, 0, 0, 1, 0], "remove_lines(2, 3)\nremove_lines(5, 5)"),
        ([True, False, True], "remove_lines(2, 2)"),
    ],
)
def test_whole_document_program(keep, program):
    text = "\n".join(f"line {i}" for i in range(len(keep)))
    assert programs_from_keep_labels(text, keep) == [ChunkProgram(Chunk(0, len(keep)), program)]


def test_chunked_programs_are_local_to_their_chunk():
    text = "aaaa\nbbbb\ncccc\ndddd"  # 5 chars per line with the break
    programs = programs_from_keep_labels(text, [1, 0, 0, 1], window=10, unit="chars")
    assert programs == [
        ChunkProgram(Chunk(0, 2), "remove_lines(2, 2)"),
        ChunkProgram(Chunk(2, 2), "remove_lines(1, 1)"),
    ]


def test_skipped_chunk_keeps_its_line():
    text = "short\n" + "x" * 50 + "\nend"
    programs = programs_from_keep_labels(text, [1, 0, 0], window=20)
    assert programs[1] == ChunkProgram(Chunk(1, 1, skipped=True), "keep_all()")
    assert execute_document(text, programs).text == "short\n" + "x" * 50


@pytest.mark.parametrize(("keep", "error"), [([1, 1], "2 keep labels for 3 lines"), ([1, 2, 1], "keep\\[1\\]")])
def test_bad_labels(keep, error):
    with pytest.raises(ValueError, match=error):
        programs_from_keep_labels("a\nb\nc", keep)


_line = st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(_line, st.booleans()), min_size=1, max_size=30),
    window=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    unit=st.sampled_from(["chars", "words"]),
)
def test_execution_keeps_exactly_the_labelled_lines(data, window, unit):
    lines = [line for line, _ in data]
    keep = [int(k) for _, k in data]
    text = "\n".join(lines)
    programs = programs_from_keep_labels(text, keep, window=window, unit=unit)
    # lines in skipped chunks (longer than the window) are never deleted
    protected = {cp.chunk.start for cp in programs if cp.chunk.skipped}
    expected = _kept(lines, [1 if i in protected else k for i, k in enumerate(keep)])
    result = execute_document(text, programs)
    assert result.text == expected
    assert result.skipped == {}


@pytest.mark.skipif(not SAMPLE.exists(), reason="WCXB dev sample not available")
@pytest.mark.parametrize("window", [None, 2000])
def test_wcxb_programs_reproduce_gold_projected(window):
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(records) == 40
    for rec in records:
        programs = programs_from_keep_labels(rec["noisy"], rec["keep"], window=window)
        if any(cp.chunk.skipped for cp in programs):
            continue
        assert execute_document(rec["noisy"], programs).text == rec["gold_projected"], rec["id"]
