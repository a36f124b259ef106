"""Hostile programs: the fast version of ``benchmarks/fuzz_programs.py`` (the 100,000-program run).

Random and adversarial programs (code injection, dunders, lambdas, huge and negative integers, control and
unicode characters, NUL bytes, unbalanced and triple quotes, deep nesting, megabyte strings, thousands of
calls, backslash continuations, ``\\r`` line endings) go through ``parse_program`` and ``execute_document``.
"""

from __future__ import annotations

import warnings

import pytest

from benchmarks import fuzz_programs as fz
from refinex_datatrove.program import (
    Chunk,
    ChunkProgram,
    InvalidReason,
    SkipReason,
    execute_document,
    parse_program,
    whole_document,
)


@pytest.fixture(scope="module")
def report() -> fz.FuzzReport:
    return fz.run_fuzz(3_000, seed=20250703)


def test_no_crash_no_code_no_failed_invariant(report):
    assert report.programs >= 3_000
    assert not report.crashes, report.summary()
    assert report.failures == [], report.summary()
    assert report.forbidden_events == {}, report.event_examples
    assert report.sentinel_calls == 0
    assert not report.marker_created


def test_the_fuzzer_reaches_every_reason(report):
    # the fuzzer is only as good as what it reaches: every invalid reason and every skip reason shows up
    assert set(report.invalid) == {r.value for r in InvalidReason}, report.invalid
    assert set(report.skipped) == {r.value for r in SkipReason}, report.skipped
    assert set(report.applied) == {"remove_lines", "remove_str", "keep_all"}
    assert set(report.families) == set(fz.FAMILIES)
    assert report.events["compile"] > 0  # the ast path ran under the armed tripwire


def test_tripwire_sees_code_execution():
    """Positive control: the audit hook and the sentinel do notice code that runs while armed."""
    fz.Tripwire.install()
    fz.Tripwire.reset()
    fz.Tripwire.armed = True
    try:
        exec("1")  # noqa: S102 - deliberately, to prove the tripwire fires
        getattr(__import__("builtins"), fz.SENTINEL_NAME)()
    finally:
        fz.Tripwire.armed = False
    assert fz.Tripwire.forbidden().get("exec") == 1
    assert fz.Tripwire.sentinel_calls == 1
    fz.Tripwire.reset()


def test_harness_catches_a_broken_executor(monkeypatch):
    """Positive control: an executor that ignores ``remove_str`` or adds text is reported."""

    def drops_remove_str(text, programs, policy=None, **kw):
        stripped = [
            ChunkProgram(cp.chunk, "\n".join(x for x in cp.program.split("\n") if "remove_str" not in x))
            for cp in programs
        ]
        return execute_document(text, stripped, policy, **kw)

    monkeypatch.setattr(fz, "execute_document", drops_remove_str)
    assert fz.run_fuzz(300, seed=5).failures

    def appends(text, programs, policy=None, **kw):
        res = execute_document(text, programs, policy, **kw)
        res.text += "!"
        return res

    monkeypatch.setattr(fz, "execute_document", appends)
    assert any("subsequence" in f for f in fz.run_fuzz(100, seed=5).failures)


@pytest.mark.parametrize(
    "program",
    [
        "__import__('os').system('touch /tmp/x')",
        f"remove_lines({fz.SENTINEL_NAME}(), 2)",
        "remove_str(1, f'{__import__(\"os\")}')",
        "keep_all(); __import__('os')",
        "(lambda: 1)()",
        "remove_lines(" + "(" * 100_000 + "1, 2",
        "remove_lines(1" + "0" * 10_000 + ", 2)",
        'remove_str(1, "' + "a" * 1_000_000,
        "remove_lines(1,\x00 2)",
    ],
)
def test_each_hostile_call_is_one_invalid_call(program):
    res = execute_document("a\nb\nc", whole_document("a\nb\nc", program))
    assert res.text == "a\nb\nc"
    assert res.n_calls == 1 and res.n_invalid == 1


def test_crlf_program_parses_like_lf():
    lf = "remove_lines(1, 1)\nremove_str(2, \"b\")\nkeep_all()"
    crlf = lf.replace("\n", "\r\n")
    assert parse_program(crlf).ops == parse_program(lf).ops
    # a lone \r is not a program line break: the two calls on one line are one invalid call
    cr = parse_program(lf.replace("\n", "\r"))
    assert cr.ops == [] and [i.reason for i in cr.invalid] == [InvalidReason.SYNTAX_ERROR]


def test_parse_does_not_depend_on_the_warning_filters():
    """``ast.parse`` warns about invalid escapes; under ``-W error`` (or a filter that makes warnings errors) the
    same model output must parse the same way."""
    program = 'remove_str(1, "\\d")'
    default = parse_program(program)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strict = parse_program(program)
    assert strict == default


def test_many_calls_in_one_chunk_are_all_counted():
    n = 5_000
    program = "\n".join(f"remove_lines({i % 3 + 1}, {i % 3 + 1})" for i in range(n))
    res = execute_document("a\nb\nc\nd", [ChunkProgram(Chunk(0, 4), program)])
    assert res.applied == {"remove_lines": n} and res.text == "d"


# ---- bounded cost, one verdict per line (issue: length bombs, NFKC look-alikes, line continuations) -------------


def test_a_length_bomb_is_rejected_before_ast_at_bounded_memory():
    """``remove_lines(1, 1+1+...)`` costs ``ast`` ~250 bytes per character; a line longer than any valid call
    for its chunk is ``line_too_long`` without being parsed, so peak memory stays near the program's size."""
    import tracemalloc

    text = "first line\nsecond line\nthird line"
    program = "remove_lines(1, " + "1+" * 250_000 + "1)"  # 500 kB
    tracemalloc.start()
    try:
        res = execute_document(text, whole_document(text, program))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.text == text and res.invalid == {"line_too_long": 1}
    assert peak < 4 * len(program)


def test_the_call_length_bound_admits_every_escaped_valid_call():
    line = "a\U0001f600b"
    program = 'remove_str(1, "\\U0001f600")\n   remove_str(1, "\\x61")   # comment'
    res = execute_document(line + "\nx", whole_document(line + "\nx", program))
    assert res.text == "b\nx"
    assert res.invalid == {} and res.applied == {"remove_str": 2}


@pytest.mark.parametrize(
    "name",
    [
        "remove_\u217cines",  # SMALL ROMAN NUMERAL FIFTY, NFKC "l"
        "\uff52\uff45\uff4d\uff4f\uff56\uff45_lines",  # full-width "remove"
        "remove_line\uff53",
        "\U0001d42b\U0001d41e\U0001d426\U0001d428\U0001d42f\U0001d41e_lines",  # mathematical bold
    ],
)
def test_nfkc_look_alike_names_are_unknown_functions(name):
    text = "a\nb\nc"
    res = execute_document(text, whole_document(text, f"{name}(1, 2)"))
    assert res.text == text
    assert res.invalid == {"unknown_function": 1}
    assert parse_program("keep_\u2170ll()".replace("\u2170", "\uff41")).invalid[0].reason == InvalidReason.UNKNOWN_FUNCTION


@pytest.mark.parametrize(
    "line",
    [
        "\\\r# x",  # backslash, CR, comment: Python reads an empty line plus a comment
        "\\\rremove_lines(1, 2)",  # backslash + CR joins the call onto this line
        "remove_lines(1, 2)\\\r",
        "remove_lines(1, \\\r2)",
        "keep_all()\r# x",
        "remove_lines(1,\r 2)",
    ],
)
def test_every_non_blank_non_comment_line_is_counted_exactly_once(line):
    text = "a\nb\nc"
    program = f"remove_lines(3, 3)\n{line}\n# a comment\n\nkeep_all()"
    parsed = parse_program(program)
    counted = [ln for ln in program.split("\n") if ln.strip() and not ln.strip().startswith("#")]
    assert len(parsed.ops) + len(parsed.invalid) == len(counted) == 3
    assert [inv.lineno for inv in parsed.invalid] == [2]
    assert parsed.invalid[0].reason == InvalidReason.SYNTAX_ERROR
    res = execute_document(text, whole_document(text, program))
    assert res.text == "a\nb"  # only remove_lines(3, 3) applied


def test_fast_path_and_full_parser_agree_on_a_lone_surrogate():
    double = 'remove_str(1, "a\ud800")'  # the fast path's shape
    single = "remove_str(1, 'a\ud800')"  # only the ast path
    spaced = 'remove_str( 1, "a\ud800" )'
    verdicts = {line: [i.reason for i in parse_program(line).invalid] for line in (double, single, spaced)}
    assert set(map(tuple, verdicts.values())) == {(InvalidReason.SYNTAX_ERROR,)}, verdicts
    # the escaped form is ASCII and valid on both paths
    assert parse_program('remove_str(1, "a\\ud800")').ops == parse_program("remove_str(1, 'a\\ud800')").ops
