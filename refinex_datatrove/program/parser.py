"""Parse program text into calls with :mod:`ast`; model output is data and is never evaluated.

One call per line. Blank lines and ``#`` comments are ignored. A line that is anything other than one of
the three calls with literal arguments of the right types becomes an :class:`InvalidCall` with a named
reason, and the rest of the program still parses.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field
from enum import StrEnum

from refinex_datatrove.program.ops import FUNCTIONS, KeepAll, Op, RemoveLines, RemoveStr


MAX_LINE_NUMBER = 10_000_000
"""Line numbers above this are rejected as ``absurd_integer`` (no chunk has that many lines)."""

MAX_SOURCE_KEPT = 200
"""Characters of an invalid line kept in :class:`InvalidCall` (a hostile line can be megabytes long)."""


class InvalidReason(StrEnum):
    SYNTAX_ERROR = "syntax_error"
    MULTIPLE_STATEMENTS = "multiple_statements"
    NOT_A_CALL = "not_a_call"
    UNKNOWN_FUNCTION = "unknown_function"
    KEYWORD_ARGUMENTS = "keyword_arguments"
    WRONG_ARITY = "wrong_arity"
    NON_LITERAL_ARGUMENT = "non_literal_argument"
    WRONG_ARGUMENT_TYPE = "wrong_argument_type"
    NEGATIVE_INTEGER = "negative_integer"
    ABSURD_INTEGER = "absurd_integer"
    EMPTY_STRING = "empty_string"


@dataclass(frozen=True, slots=True)
class InvalidCall:
    lineno: int
    """1-based line of the program text."""
    source: str
    """The offending line, cut to :data:`MAX_SOURCE_KEPT` characters."""
    reason: InvalidReason


@dataclass(slots=True)
class ParseResult:
    ops: list[Op] = field(default_factory=list)
    invalid: list[InvalidCall] = field(default_factory=list)


# Fast path for canonical lines. It accepts a strict subset of what the ast path accepts, with the same
# meaning (property-tested); anything else goes through ast.
_INT = r"(0|[1-9][0-9]{0,8})"
_FAST_LINES = re.compile(rf"remove_lines\({_INT}, ?{_INT}\)")
_FAST_STR = re.compile(rf'remove_str\({_INT}, ?"([^"\\\x00-\x1f\x7f]+)"\)')
_KEEP_ALL = "keep_all()"


class _Invalid(Exception):
    def __init__(self, reason: InvalidReason) -> None:
        self.reason = reason


def parse_program(text: str) -> ParseResult:
    """Parse ``text`` line by line. Never raises for any ``str`` input."""
    result = ParseResult()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        op = _parse_fast(line)
        if op is None:
            try:
                op = _parse_ast(line)
            except _Invalid as e:
                result.invalid.append(InvalidCall(lineno, raw[:MAX_SOURCE_KEPT], e.reason))
                continue
            if op is None:  # only a comment
                continue
        result.ops.append(op)
    return result


def parse_call(line: str) -> Op:
    """Parse one call; raises ``ValueError`` with the reason for anything else (for tests and tools)."""
    res = parse_program(line)
    if res.invalid or len(res.ops) != 1:
        reason = res.invalid[0].reason if res.invalid else "not exactly one call"
        raise ValueError(f"invalid call {line[:80]!r}: {reason}")
    return res.ops[0]


def _parse_fast(line: str) -> Op | None:
    if line == _KEEP_ALL:
        return KeepAll()
    m = _FAST_LINES.fullmatch(line)
    if m:
        start, end = int(m.group(1)), int(m.group(2))
        if start <= MAX_LINE_NUMBER and end <= MAX_LINE_NUMBER:
            return RemoveLines(start, end)
        return None
    m = _FAST_STR.fullmatch(line)
    if m and int(m.group(1)) <= MAX_LINE_NUMBER:
        return RemoveStr(int(m.group(1)), m.group(2))
    return None


def _parse_ast(line: str) -> Op | None:
    try:
        # invalid escapes like "\d" warn; the verdict must not depend on the process's warning filters
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(line, mode="exec")
    except (SyntaxError, ValueError) as e:  # ValueError: NUL bytes, int digit limit
        if "digits" in str(e):
            raise _Invalid(InvalidReason.ABSURD_INTEGER) from None
        raise _Invalid(InvalidReason.SYNTAX_ERROR) from None
    except (RecursionError, MemoryError):
        raise _Invalid(InvalidReason.SYNTAX_ERROR) from None
    if not tree.body:
        return None
    if len(tree.body) > 1:
        raise _Invalid(InvalidReason.MULTIPLE_STATEMENTS)
    stmt = tree.body[0]
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
        raise _Invalid(InvalidReason.NOT_A_CALL)
    call = stmt.value
    if not isinstance(call.func, ast.Name) or call.func.id not in FUNCTIONS:
        raise _Invalid(InvalidReason.UNKNOWN_FUNCTION)
    if call.keywords:
        raise _Invalid(InvalidReason.KEYWORD_ARGUMENTS)
    name, args = call.func.id, call.args
    if name == "keep_all":
        if args:
            raise _Invalid(InvalidReason.WRONG_ARITY)
        return KeepAll()
    if len(args) != 2:
        raise _Invalid(InvalidReason.WRONG_ARITY)
    first = _line_number(args[0])
    if name == "remove_lines":
        return RemoveLines(first, _line_number(args[1]))
    value = _literal(args[1])
    if not isinstance(value, str):
        raise _Invalid(InvalidReason.WRONG_ARGUMENT_TYPE)
    if not value:
        raise _Invalid(InvalidReason.EMPTY_STRING)
    return RemoveStr(first, value)


def _literal(node: ast.expr) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        raise _Invalid(InvalidReason.NEGATIVE_INTEGER)
    raise _Invalid(InvalidReason.NON_LITERAL_ARGUMENT)


def _line_number(node: ast.expr) -> int:
    value = _literal(node)
    if type(value) is not int:
        raise _Invalid(InvalidReason.WRONG_ARGUMENT_TYPE)
    if value > MAX_LINE_NUMBER:
        raise _Invalid(InvalidReason.ABSURD_INTEGER)
    return value
