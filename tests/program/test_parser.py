import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refinex_datatrove.program import (
    MAX_LINE_NUMBER,
    InvalidReason,
    KeepAll,
    RemoveLines,
    RemoveStr,
    format_program,
    parse_call,
    parse_program,
)
from refinex_datatrove.program.parser import _parse_ast, _parse_fast


def test_the_three_calls():
    res = parse_program('remove_lines(1, 3)\nremove_str(5, "*&╚ ")\nkeep_all()')
    assert res.ops == [RemoveLines(1, 3), RemoveStr(5, "*&╚ "), KeepAll()]
    assert res.invalid == []


def test_whitespace_blank_lines_comments_and_quotes():
    text = "\n  remove_lines( 2 ,4 )  \n\n# a comment\nremove_str(1, 'it\\'s')  # trailing\r\n\tkeep_all()\n"
    res = parse_program(text)
    assert res.ops == [RemoveLines(2, 4), RemoveStr(1, "it's"), KeepAll()]
    assert res.invalid == []


def test_escapes_in_strings():
    assert parse_call('remove_str(3, "a\\tb\\u2028c\\\\")') == RemoveStr(3, "a\tb\u2028c\\")
    assert parse_call("remove_str(3, '''x''')") == RemoveStr(3, "x")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("remove_lines(1, 2", InvalidReason.SYNTAX_ERROR),
        ('remove_str(1, "unbalanced)', InvalidReason.SYNTAX_ERROR),
        ("remove_lines(1, 2); keep_all()", InvalidReason.MULTIPLE_STATEMENTS),
        ("x = remove_lines(1, 2)", InvalidReason.NOT_A_CALL),
        ("1 + 2", InvalidReason.NOT_A_CALL),
        ("__import__('os').system('echo pwned')", InvalidReason.UNKNOWN_FUNCTION),
        ("os.system('ls')", InvalidReason.UNKNOWN_FUNCTION),
        ("print(1)", InvalidReason.UNKNOWN_FUNCTION),
        ("remove_lines.__class__(1, 2)", InvalidReason.UNKNOWN_FUNCTION),
        ("remove_lines(start=1, end=2)", InvalidReason.KEYWORD_ARGUMENTS),
        ("remove_lines(1)", InvalidReason.WRONG_ARITY),
        ("remove_lines(1, 2, 3)", InvalidReason.WRONG_ARITY),
        ("keep_all(1)", InvalidReason.WRONG_ARITY),
        ("remove_lines(*[1, 2])", InvalidReason.WRONG_ARITY),
        ("remove_lines(1, x)", InvalidReason.NON_LITERAL_ARGUMENT),
        ("remove_lines(1, 1 + 1)", InvalidReason.NON_LITERAL_ARGUMENT),
        ("remove_lines(1, len('ab'))", InvalidReason.NON_LITERAL_ARGUMENT),
        ('remove_str(1, f"{x}")', InvalidReason.NON_LITERAL_ARGUMENT),
        ('remove_str(1, "a" "b" + "c")', InvalidReason.NON_LITERAL_ARGUMENT),
        ("remove_lines(1.0, 2)", InvalidReason.WRONG_ARGUMENT_TYPE),
        ("remove_lines(True, 2)", InvalidReason.WRONG_ARGUMENT_TYPE),
        ("remove_lines('1', 2)", InvalidReason.WRONG_ARGUMENT_TYPE),
        ("remove_str(1, b'x')", InvalidReason.WRONG_ARGUMENT_TYPE),
        ("remove_str(1, 2)", InvalidReason.WRONG_ARGUMENT_TYPE),
        ("remove_str(1, None)", InvalidReason.WRONG_ARGUMENT_TYPE),
        ("remove_lines(-1, 2)", InvalidReason.NEGATIVE_INTEGER),
        (f"remove_lines(1, {MAX_LINE_NUMBER + 1})", InvalidReason.ABSURD_INTEGER),
        ("remove_lines(1, " + "9" * 5000 + ")", InvalidReason.ABSURD_INTEGER),
        ('remove_str(1, "")', InvalidReason.EMPTY_STRING),
        ("remove_lines(01, 2)", InvalidReason.SYNTAX_ERROR),
        ("remove_lines(1, 2)\x00", InvalidReason.SYNTAX_ERROR),
        ("remove_lines(" * 300 + ")" * 300, InvalidReason.SYNTAX_ERROR),
    ],
)
def test_invalid_calls_have_named_reasons(line, reason):
    res = parse_program(f"remove_lines(1, 1)\n{line}\nkeep_all()")
    assert res.ops == [RemoveLines(1, 1), KeepAll()]
    assert [(inv.lineno, inv.reason) for inv in res.invalid] == [(2, reason)]


def test_invalid_source_is_truncated():
    res = parse_program("bogus(" + "x" * 100_000)
    assert len(res.invalid) == 1 and len(res.invalid[0].source) <= 200


def test_parse_call_raises_value_error():
    with pytest.raises(ValueError, match="unknown_function"):
        parse_call("rm(1)")


def test_format_is_canonical():
    ops = [RemoveLines(1, 2), RemoveStr(3, 'say "hi" it\'s'), KeepAll(), RemoveStr(4, "\x00\n\\")]
    text = format_program(ops)
    assert text.count("\n") == len(ops) - 1
    assert format_program([]) == "keep_all()"
    assert parse_program(text).ops == ops
    assert format_program(parse_program(text).ops) == text


def test_canonical_text_round_trips():
    canonical = 'remove_lines(1, 3)\nremove_str(2, "H#f*%8& ▓╚ ")\nremove_lines(88, 89)'
    assert format_program(parse_program(canonical).ops) == canonical


line_numbers = st.integers(min_value=0, max_value=MAX_LINE_NUMBER)
ops_strategy = st.one_of(
    st.builds(KeepAll),
    st.builds(RemoveLines, line_numbers, line_numbers),
    st.builds(RemoveStr, line_numbers, st.text(min_size=1, max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops_strategy, max_size=12))
def test_parse_format_round_trip(ops):
    text = format_program(ops)
    assert parse_program(text).ops == (ops or [KeepAll()])
    assert format_program(parse_program(text).ops) == text


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_raises_on_any_text(text):
    res = parse_program(text)
    for op in res.ops:
        assert isinstance(op, (KeepAll, RemoveLines, RemoveStr))


@settings(max_examples=400, deadline=None)
@given(st.lists(ops_strategy, min_size=1, max_size=1), st.sampled_from(["", " ", "  "]))
def test_fast_path_agrees_with_ast(ops, space):
    line = ops[0].to_source().replace(", ", "," + space)
    fast = _parse_fast(line)
    if fast is not None:
        assert fast == _parse_ast(line)
