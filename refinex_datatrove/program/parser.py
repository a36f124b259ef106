"""Parse program text into calls with :mod:`ast`; model output is data and is never evaluated.

One call per line (lines are split on ``"\\n"`` only). Blank lines and ``#`` comments are ignored. Every other
line is either exactly one call or exactly one :class:`InvalidCall` with a named reason, and the rest of the
program still parses. Hostile input costs bounded memory and linear time:

* a line longer than ``max_line_chars`` (the longest valid call for the chunk, see :func:`call_length_bound`)
  is ``line_too_long`` before :mod:`ast` sees it (``ast`` needs ~250 bytes per character of ``1+1+...``);
* a line holding a carriage return (or another character Python's tokenizer ends a line on) is a
  ``syntax_error``: Python would read it as two lines (a backslash + CR joins them), the executor as one;
* only the ASCII names are calls: Python folds identifiers with NFKC, so ``remove_\u217cines`` (a Roman
  numeral) or full-width letters would otherwise name ``remove_lines``; they are ``unknown_function``;
* a lone surrogate (not encodable as UTF-8) is a ``syntax_error`` on both the fast path and the ``ast`` path.
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
    LINE_TOO_LONG = "line_too_long"


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
_FAST_STR = re.compile(rf'remove_str\({_INT}, ?"([^"\\\x00-\x1f\x7f\ud800-\udfff]+)"\)')
_KEEP_ALL = "keep_all()"


class _Invalid(Exception):
    def __init__(self, reason: InvalidReason) -> None:
        self.reason = reason


CALL_SLACK_CHARS = 64
"""Room in :func:`call_length_bound` for the call's name, line number, quotes, commas, spaces and a comment."""

ESCAPE_CHARS = 10
"""Characters one string character may take in a valid call (``\\U0001f600``); :func:`call_length_bound`."""

# What Python's tokenizer ends a line on besides "\n" (str.splitlines() would also split on \x0b, \x1c, ...,
# which Python reads as ordinary characters)
_PY_LINE_BREAKS = "\r"


def call_length_bound(longest_line: int) -> int:
    """The longest call line a chunk whose longest line has ``longest_line`` characters can need.

    A ``remove_str`` string that is longer than its line is never found, and each of its characters takes at most
    :data:`ESCAPE_CHARS` characters written as an escape (``\\N{...}`` names aside); ``remove_lines`` and
    ``keep_all`` are shorter still. Lines longer than this are ``line_too_long``.
    """
    return CALL_SLACK_CHARS + ESCAPE_CHARS * max(0, longest_line)


def parse_program(text: str, max_line_chars: int | None = None) -> ParseResult:
    """Parse ``text`` line by line. Never raises for any ``str`` input.

    Args:
        text: the program.
        max_line_chars: lines longer than this (after stripping) are ``line_too_long`` without being parsed;
            the executor passes :func:`call_length_bound` of the chunk's longest line. ``None``: no bound.
    """
    result = ParseResult()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        if max_line_chars is not None and len(line) > max_line_chars:
            result.invalid.append(InvalidCall(lineno, raw[:MAX_SOURCE_KEPT], InvalidReason.LINE_TOO_LONG))
            continue
        op = _parse_fast(line)
        if op is None:
            try:
                op = _parse_ast(line)
            except _Invalid as e:
                result.invalid.append(InvalidCall(lineno, raw[:MAX_SOURCE_KEPT], e.reason))
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


def _parse_ast(line: str) -> Op:
    if any(c in line for c in _PY_LINE_BREAKS):  # Python would read two lines where the program has one
        raise _Invalid(InvalidReason.SYNTAX_ERROR)
    try:
        # invalid escapes like "\d" warn; the verdict must not depend on the process's warning filters
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(line, mode="exec")
    except (SyntaxError, ValueError) as e:  # ValueError: NUL bytes, int digit limit, lone surrogates
        if "digits" in str(e):
            raise _Invalid(InvalidReason.ABSURD_INTEGER) from None
        raise _Invalid(InvalidReason.SYNTAX_ERROR) from None
    except (RecursionError, MemoryError):
        raise _Invalid(InvalidReason.SYNTAX_ERROR) from None
    if not tree.body:  # unreachable for a stripped line not starting with "#" and free of line breaks
        raise _Invalid(InvalidReason.NOT_A_CALL)
    if len(tree.body) > 1:
        raise _Invalid(InvalidReason.MULTIPLE_STATEMENTS)
    stmt = tree.body[0]
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
        raise _Invalid(InvalidReason.NOT_A_CALL)
    call = stmt.value
    if not isinstance(call.func, ast.Name) or call.func.id not in FUNCTIONS:
        raise _Invalid(InvalidReason.UNKNOWN_FUNCTION)
    if line[: len(call.func.id)] != call.func.id:  # an NFKC look-alike (e.g. U+217C for "l") or "(name)(...)"
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
