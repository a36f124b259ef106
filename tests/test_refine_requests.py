"""Pure parts of annotation: chunk plan, requests, the program regex, generation cleaning and assembly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refinex_datatrove.refine_model.requests import (
    KEEP_ALL,
    ChunkStatus,
    assemble_annotations,
    build_requests,
    chunk_prompt,
    clean_generation,
    drop_cut_call,
    plan_chunks,
)
from refinex_datatrove.llm.base import Generation
from refinex_datatrove.refine_model.grammar import int_range_regex, ordered_pair_regex, program_regex
from refinex_datatrove.program import (
    Chunk,
    KeepAll,
    RemoveLines,
    RemoveStr,
    chunk_lines,
    format_program,
    parse_program,
)


# ---- int_range_regex / program_regex ----------------------------------------------------------------------


@pytest.mark.parametrize("lo,hi", [(1, 1), (1, 9), (1, 10), (1, 19), (1, 99), (1, 100), (1, 137), (1, 1000), (3, 3),
                                   (7, 12), (0, 0), (1, 2019), (95, 105), (1, 4321)])
def test_int_range_regex_matches_exactly_the_range(lo, hi):
    pattern = re.compile(int_range_regex(lo, hi))
    for i in range(0, hi + 150):
        assert (pattern.fullmatch(str(i)) is not None) == (lo <= i <= hi), i
    # never a leading zero
    for i in range(max(lo, 1), min(hi, 60) + 1):
        assert pattern.fullmatch(f"0{i}") is None


def test_int_range_regex_stays_small_for_big_ranges():
    assert len(int_range_regex(1, 98_765)) < 200
    assert len(program_regex(99_999, ordered=False)) < 1_000
    # the ordered pairs grow as n log n: 1,200 lines (a 1,200-character window of empty lines) stays compilable
    assert len(program_regex(1_200)) < 200_000
    # digit ranges, not an enumeration: size grows with the digit count, not the value
    assert len(int_range_regex(1, 9_999_999)) < len(int_range_regex(1, 137)) * 3


def test_int_range_regex_rejects_bad_bounds():
    with pytest.raises(ValueError):
        int_range_regex(5, 4)
    with pytest.raises(ValueError):
        int_range_regex(-1, 4)


def _matches(program: str, n_lines: int, max_calls: int | None = 64) -> bool:
    return re.fullmatch(program_regex(n_lines, max_calls=max_calls), program) is not None


@pytest.mark.parametrize(
    "program,n_lines",
    [
        ("keep_all()", 1),
        ("remove_lines(1, 1)", 1),
        ("remove_lines(1, 12)\nremove_str(13, \"Share this\")", 13),
        ('remove_str(2, "He said \\"no\\"")', 2),
        ('remove_str(2, "back\\\\slash \\t tab \\x07 bell")', 2),
        ('remove_str(7, "Ünïcode ▓╚ 日本")', 7),
        ("remove_lines(137, 137)", 137),
    ],
)
def test_program_regex_accepts_valid_programs(program, n_lines):
    assert _matches(program, n_lines)
    assert not parse_program(program).invalid  # the grammar's language parses


@pytest.mark.parametrize(
    "program,n_lines",
    [
        ("remove_lines(0, 1)", 5),  # line numbers are 1-based
        ("remove_lines(1, 6)", 5),  # past the chunk
        ('remove_str(6, "x")', 5),
        ("remove_lines(138, 138)", 137),
        ("remove_lines(01, 2)", 5),  # leading zero
        ('remove_str(1, "")', 5),  # empty string
        ("keep_all()\nremove_lines(1, 2)", 5),  # keep_all only alone
        ("remove_lines(1,2)", 5),  # canonical spacing only
        ("remove_lines(1, 2)\n", 5),  # no trailing newline
        ("", 5),
        ("delete_everything()", 5),
        ('remove_str(1, "a\nb")', 5),  # raw line break inside a string
        ('remove_str(1, "bad \\q escape")', 5),
        ("remove_lines(1, 2); import os", 5),
    ],
)
def test_program_regex_rejects_invalid_or_out_of_range(program, n_lines):
    assert not _matches(program, n_lines)


@pytest.mark.parametrize("n_lines", [1, 2, 9, 10, 11, 23, 100, 137])
def test_ordered_pairs_are_exactly_the_non_inverted_ranges_of_the_chunk(n_lines):
    pattern = re.compile(ordered_pair_regex(n_lines))
    top = min(n_lines, 40) + 2
    for a in [*range(0, top), n_lines, n_lines + 1]:
        for b in [*range(0, top), n_lines, n_lines + 1]:
            expected = 1 <= a <= b <= n_lines
            assert (pattern.fullmatch(f"{a}, {b}") is not None) == expected, (a, b)


def test_program_regex_rejects_inverted_ranges_unless_unordered():
    assert not _matches("remove_lines(3, 2)", 5)
    assert not _matches("remove_lines(1, 1)\nremove_lines(12, 9)", 13)
    assert re.fullmatch(program_regex(5, ordered=False), "remove_lines(3, 2)")
    assert _matches("remove_lines(2, 2)\nremove_lines(9, 12)", 13)


def test_program_regex_bounds_string_length():
    regex = program_regex(3, max_str_chars=4)
    assert re.fullmatch(regex, 'remove_str(1, "abcd")')
    assert re.fullmatch(regex, 'remove_str(1, "\\"\\t\\x07d")')  # an escape counts as one character
    assert not re.fullmatch(regex, 'remove_str(1, "abcde")')
    assert re.fullmatch(program_regex(3), 'remove_str(1, "' + "a" * 500 + '")')
    with pytest.raises(ValueError):
        program_regex(3, max_str_chars=0)


def test_program_regex_bounds_calls():
    two = "remove_lines(1, 1)\nremove_lines(2, 2)"
    assert _matches(two, 3, max_calls=2)
    assert not _matches(two + "\nremove_lines(3, 3)", 3, max_calls=2)
    assert not _matches(two, 3, max_calls=1)
    assert _matches("\n".join(["remove_lines(1, 1)"] * 500), 3, max_calls=None)
    with pytest.raises(ValueError):
        program_regex(0)
    with pytest.raises(ValueError):
        program_regex(3, max_calls=0)


_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20
)


@st.composite
def _programs(draw):
    n = draw(st.integers(1, 400))
    line = st.integers(1, n)
    op = st.one_of(
        st.tuples(line, line).map(lambda t: RemoveLines(min(t), max(t))),
        st.builds(RemoveStr, line, _texts),
    )
    ops = draw(st.lists(op, min_size=0, max_size=8))
    return n, ops


@settings(max_examples=150, deadline=None)
@given(_programs())
def test_program_regex_accepts_every_canonical_program_in_range(case):
    n, ops = case
    text = format_program(ops)
    assert _matches(text, n), text
    if ops:
        # the same program is out of range for a chunk one line shorter than its largest number
        top = max(op.end if isinstance(op, RemoveLines) else op.line for op in ops)
        if top > 1:
            assert not _matches(text, top - 1)
    assert format_program([KeepAll()]) == KEEP_ALL


# ---- plan / requests ----------------------------------------------------------------------------------------

DOC = "Home | News | Contact\nThe river rose two metres overnight.\n\n   \nShare on Facebook\n" + "x" * 80


def test_plan_chunks_is_the_core_chunker():
    assert plan_chunks(DOC, 60, "chars") == chunk_lines(DOC.split("\n"), 60, "chars")
    chunks = plan_chunks(DOC, 60)
    assert chunks[-1].skipped and chunks[-1].start == 5
    assert sum(c.n_lines for c in chunks) == len(DOC.split("\n"))


def test_build_requests_renders_with_the_core_renderer():
    from refinex_datatrove.program import render_chunk, render_prompt

    lines = DOC.split("\n")
    chunks = [Chunk(0, 2), Chunk(2, 2), Chunk(4, 1), Chunk(5, 1, skipped=True)]
    requests = build_requests(DOC, chunks)
    # the blank chunk (lines 3-4) and the skipped chunk get no request
    assert len(requests) == 2
    assert requests[0].messages is None
    assert requests[0].prompt == render_prompt(render_chunk(lines[0:2]))
    assert requests[1].prompt.endswith("\n[1] Share on Facebook\n")
    assert "[1] Home | News | Contact\n[2] The river rose" in requests[0].prompt
    assert all(r.guided_regex is None for r in requests)
    assert chunk_prompt(lines, chunks[0]) == requests[0].prompt


def test_build_requests_guided_regex_fits_each_chunk():
    chunks = [Chunk(0, 2), Chunk(4, 1)]
    r0, r1 = build_requests(DOC, chunks, guided=True)
    assert re.fullmatch(r0.guided_regex, "remove_lines(2, 2)")
    assert not re.fullmatch(r0.guided_regex, "remove_lines(3, 3)")
    assert re.fullmatch(r1.guided_regex, 'remove_str(1, "Share on ")')
    assert not re.fullmatch(r1.guided_regex, "remove_lines(1, 2)")


# ---- cleaning and assembly ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("  remove_lines(1, 2)\n", "remove_lines(1, 2)"),
        ("```python\nremove_lines(1, 2)\nremove_str(3, \"x\")\n```", 'remove_lines(1, 2)\nremove_str(3, "x")'),
        ("```\nkeep_all()\n```\n", "keep_all()"),
        ("remove_str(1, \"```\")", "remove_str(1, \"```\")"),
        ("Sure! remove_lines(1, 2)", "Sure! remove_lines(1, 2)"),  # not our job: the parser flags it
        ("", ""),
    ],
)
def test_clean_generation_strips_fences_and_whitespace_only(raw, clean):
    assert clean_generation(raw) == clean


def test_drop_cut_call_removes_only_an_unparseable_tail():
    assert drop_cut_call('remove_lines(1, 2)\nremove_str(3, "Sha') == "remove_lines(1, 2)"
    assert drop_cut_call("remove_lines(1, 2)\nremove_lines(4, 5)") == "remove_lines(1, 2)\nremove_lines(4, 5)"
    assert drop_cut_call("remove_li") == ""


def test_assemble_annotations_statuses_and_programs():
    chunks = [Chunk(0, 2), Chunk(2, 2), Chunk(4, 1), Chunk(5, 1, skipped=True)]
    gens = [
        Generation("```\nremove_lines(1, 1)\n```", "stop", prompt_tokens=30, completion_tokens=9),
        Generation("", "error", error="boom"),
    ]
    out = assemble_annotations(DOC, chunks, gens)
    assert [a.status for a in out] == [ChunkStatus.OK, ChunkStatus.BLANK, ChunkStatus.FAILED, ChunkStatus.SKIPPED]
    assert [a.program for a in out] == ["remove_lines(1, 1)", KEEP_ALL, KEEP_ALL, KEEP_ALL]
    assert out[0].prompt_tokens == 30 and out[0].completion_tokens == 9
    assert out[2].error == "boom"
    assert [a.chunk for a in out] == chunks
    with pytest.raises(ValueError, match="2 requested"):
        assemble_annotations(DOC, chunks, gens[:1])


def test_assemble_annotations_truncated_and_empty():
    chunks = [Chunk(0, 2), Chunk(4, 1)]
    gens = [Generation('remove_lines(1, 1)\nremove_str(2, "The ri', "length"), Generation("  \n", "stop")]
    a, b = assemble_annotations(DOC, chunks, gens)
    assert (a.status, a.program) == (ChunkStatus.TRUNCATED, "remove_lines(1, 1)")
    assert (b.status, b.program) == (ChunkStatus.EMPTY, KEEP_ALL)


def test_annotate_module_is_pure():
    import subprocess
    import sys

    code = (
        "import sys, refinex_datatrove.refine_model.requests\n"
        "bad = [m for m in ('datatrove', 'torch', 'transformers', 'vllm', 'httpx') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
