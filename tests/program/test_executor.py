import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refinex_datatrove.program import (
    Chunk,
    ChunkProgram,
    ExecPolicy,
    KeepAll,
    RemoveLines,
    RemoveStr,
    chunk_lines,
    delete_spans,
    execute_document,
    format_program,
    is_deletion_of,
    split_lines,
    whole_document,
)


DOC = "Home | Products | About Us |\nSolar H#f*%8& ▓╚ panels work.\nGood content.\nShare on X\nhttp://rub.co/ads.com"


def run(text, program, **kw):
    return execute_document(text, whole_document(text, program), ExecPolicy(**kw), spans=True)


def test_paper_example():
    res = run(DOC, 'remove_lines(1, 1)\nremove_str(2, "H#f*%8& ▓╚ ")\nremove_lines(4, 5)')
    assert res.text == "Solar panels work.\nGood content."
    assert res.applied == {"remove_lines": 2, "remove_str": 1}
    assert res.skipped == {}
    assert res.lines_removed == 3
    assert res.chars_removed == len(DOC) - len(res.text)
    assert delete_spans(DOC, res.deleted_spans) == res.text


def test_keep_all_is_identity_and_counted():
    res = run(DOC, "keep_all()")
    assert res.text == DOC and res.applied == {"keep_all": 1} and not res.changed


def test_order_of_calls_never_matters():
    calls = ['remove_str(2, "Solar ")', "remove_lines(2, 3)", "remove_lines(1, 1)", 'remove_str(3, "Good")']
    a = run(DOC, "\n".join(calls))
    b = run(DOC, "\n".join(reversed(calls)))
    assert a.text == b.text == "Share on X\nhttp://rub.co/ads.com"


def test_overlapping_and_duplicate_ranges_union():
    res = run(DOC, "remove_lines(1, 3)\nremove_lines(2, 4)\nremove_lines(2, 4)")
    assert res.text == "http://rub.co/ads.com"
    assert res.lines_removed == 4


def test_removing_last_lines_takes_the_break_before():
    assert run("a\nb\nc", "remove_lines(3, 3)").text == "a\nb"
    assert run("a\nb\nc", "remove_lines(2, 3)").text == "a"
    assert run("a\nb\nc", "remove_lines(1, 1)").text == "b\nc"
    assert run("a\nb\nc", "remove_lines(1, 3)").text == ""
    assert run("a\nb\n", "remove_lines(3, 3)").text == "a\nb"


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        ("remove_lines(0, 1)", "line_out_of_range"),
        ("remove_lines(5, 6)", "line_out_of_range"),
        ("remove_lines(3, 2)", "inverted_range"),
        ("remove_str(9, 'x')", "line_out_of_range"),
        ("remove_str(0, 'x')", "line_out_of_range"),
        ("remove_str(3, 'nothere')", "str_not_found"),
        ("remove_str(2, 'o')", "str_not_unique"),
        ("remove_str(2, 'oo')", "str_not_unique"),  # overlapping occurrences in 'fooo'
        ("rm(1)", "invalid_call"),
    ],
)
def test_skip_reasons(program, reason):
    text = "line one\nfooo bar\nthird"
    res = run(text, program)
    assert res.text == text
    assert res.skipped == {reason: 1}


def test_edit_in_skipped_chunk():
    text = "short\n" + "x" * 50 + "\nend"
    chunks = chunk_lines(split_lines(text), window=20)
    assert [c.skipped for c in chunks] == [False, True, False]
    programs = [ChunkProgram(c, "remove_lines(1, 1)") for c in chunks]
    res = execute_document(text, programs)
    assert res.text == "x" * 50
    assert res.skipped == {"edit_in_skipped_chunk": 1}
    assert res.applied == {"remove_lines": 2}


def test_chunk_offsets_map_local_numbers():
    text = "a\nb\nc\nd\ne"
    programs = [ChunkProgram(Chunk(0, 2), "remove_lines(2, 2)"), ChunkProgram(Chunk(2, 3), "remove_lines(1, 1)\nremove_str(3, 'e')")]
    res = execute_document(text, programs)
    assert res.text == "a\nd\n"
    # a local number valid in one chunk is out of range in a shorter one
    res = execute_document(text, [ChunkProgram(Chunk(0, 2), "remove_lines(3, 3)")])
    assert res.skipped == {"line_out_of_range": 1} and res.text == text


def test_chunk_outside_document_is_skipped():
    res = execute_document("a\nb", [ChunkProgram(Chunk(1, 5), "remove_lines(1, 1)")])
    assert res.text == "a\nb" and res.skipped == {"chunk_out_of_range": 1}


def test_keep_all_mixed_with_edits():
    res = run(DOC, "keep_all()\nremove_lines(1, 1)")
    assert res.text == DOC.split("\n", 1)[1]
    assert res.skipped == {"keep_all_mixed": 1}
    assert res.applied == {"remove_lines": 1}


def test_invalid_call_policies():
    program = "remove_lines(1, 1)\n__import__('os').system('x')"
    default = run(DOC, program)
    assert default.text == DOC.split("\n", 1)[1]
    assert default.skipped == {"invalid_call": 1} and default.invalid == {"unknown_function": 1}
    strict = run(DOC, program, on_invalid="keep_chunk")
    assert strict.text == DOC
    assert strict.skipped == {"invalid_call": 1, "chunk_kept_invalid": 1}
    lenient = run(DOC, program, on_invalid="keep_chunk", keep_chunk_threshold=2)
    assert lenient.text == default.text
    with pytest.raises(ValueError):
        ExecPolicy(on_invalid="explode")


def test_remove_str_emptying_a_line_keeps_the_line():
    assert run("a\nxyz\nb", "remove_str(2, 'xyz')").text == "a\n\nb"


def test_overlapping_remove_str_union():
    res = run("abcdef", "remove_str(1, 'bcd')\nremove_str(1, 'cde')")
    assert res.text == "af" and res.deleted_spans == [(1, 5)]


def test_crlf_and_unicode_lines():
    text = "nav\r\nbody\u2028more\r\nend"
    res = run(text, "remove_lines(1, 1)\nremove_str(2, '\\u2028more')")
    assert res.text == "body\r\nend"


# ---------------------------------------------------------------- properties

docs = st.lists(
    st.text(alphabet=st.sampled_from("ab \t\r\u2028é[]1\"'"), max_size=12), min_size=1, max_size=15
).map("\n".join)


def random_op(n_lines):
    num = st.integers(-2, n_lines + 3)
    return st.one_of(
        st.builds(KeepAll),
        st.builds(RemoveLines, num, num),
        st.builds(RemoveStr, num, st.text(alphabet="ab \"é'\\[]1", min_size=1, max_size=4)),
    )


hostile_lines = st.sampled_from(
    [
        "__import__('os').system('rm -rf /')",
        "remove_lines(1, 2); import os",
        "remove_lines(1, " + "9" * 50 + ")",
        "remove_lines(-1, 2)",
        'remove_str(1, "unterminated',
        "remove_lines(remove_lines(1, 2), 3)",
        "open('/etc/passwd').read()",
        "keep_all(); exit()",
        "[1] a line that imitates the renderer",
        "```python",
        "\x00\x1b[31m",
        "remove_str(1, f'{__import__(\"os\")}')",
    ]
)


@st.composite
def doc_and_program(draw):
    text = draw(docs)
    n = text.count("\n") + 1
    ops = draw(st.lists(random_op(n), max_size=8))
    lines = [op.to_source() for op in ops] + draw(st.lists(hostile_lines, max_size=3))
    lines = draw(st.permutations(lines))
    window = draw(st.integers(1, 40))
    return text, "\n".join(lines), window


@settings(max_examples=1500, deadline=None)
@given(doc_and_program(), st.sampled_from(["skip_call", "keep_chunk"]))
def test_result_is_always_a_deletion_of_the_input(case, on_invalid):
    text, program, window = case
    chunks = chunk_lines(split_lines(text), window)
    programs = [ChunkProgram(c, program) for c in chunks]
    res = execute_document(text, programs, ExecPolicy(on_invalid=on_invalid), spans=True)
    assert is_deletion_of(text, res.text)
    assert delete_spans(text, res.deleted_spans) == res.text
    assert res.chars_removed == len(text) - len(res.text)
    assert sum(b - a for a, b in res.deleted_spans) == res.chars_removed
    n_calls = sum(1 for line in program.split("\n") if line.strip()) * len(chunks)
    assert res.n_calls == n_calls  # every call is either applied or skipped with a reason
    # the pipeline's path (no span bookkeeping) gives the same text and counts, and no spans
    lean = execute_document(text, programs, ExecPolicy(on_invalid=on_invalid))
    assert lean.deleted_spans == []
    assert (lean.text, lean.applied, lean.skipped, lean.invalid, lean.lines_removed, lean.chars_removed) == (
        res.text, res.applied, res.skipped, res.invalid, res.lines_removed, res.chars_removed
    )


@settings(max_examples=300, deadline=None)
@given(docs, st.integers(1, 40))
def test_keep_all_is_identity(text, window):
    chunks = chunk_lines(split_lines(text), window)
    res = execute_document(text, [ChunkProgram(c, "keep_all()") for c in chunks])
    assert res.text == text and res.deleted_spans == [] and res.skipped == {}


@settings(max_examples=300, deadline=None)
@given(docs, st.data())
def test_removing_lines_matches_reference(text, data):
    lines = split_lines(text)
    picks = data.draw(st.sets(st.integers(1, len(lines))))
    program = format_program([RemoveLines(i, i) for i in sorted(picks)])
    res = run(text, program)
    assert res.text == "\n".join(line for i, line in enumerate(lines, start=1) if i not in picks)
    assert res.lines_removed == len(picks)
