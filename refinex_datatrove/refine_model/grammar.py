"""The program grammar as a regex, for grammar-constrained decoding (vLLM structured outputs, an endpoint's
``guided_regex``): only calls with line numbers inside the chunk can be written.

Pure: imports nothing outside the standard library.
"""

from __future__ import annotations

DEFAULT_MAX_CALLS = 64
"""Default bound on calls per program in the guided-decoding grammar."""


def _digit_class(lo: int, hi: int) -> str:
    if lo == hi:
        return str(lo)
    if lo == 0 and hi == 9:
        return "[0-9]"
    return f"[{lo}-{hi}]"


def _any_digits(k: int) -> str:
    if k == 0:
        return ""
    return "[0-9]" if k == 1 else f"[0-9]{{{k}}}"


def _same_length_range(lo: str, hi: str) -> list[str]:
    """Alternatives matching exactly the integers lo..hi written with ``len(lo)`` digits (lo <= hi)."""
    if len(lo) == 1:
        return [_digit_class(int(lo), int(hi))]
    if lo[0] == hi[0]:
        return [lo[0] + alt for alt in _rest_group(lo[1:], hi[1:])]
    k = len(lo) - 1
    parts: list[str] = []
    first_full, last_full = int(lo[0]), int(hi[0])
    if lo[1:] != "0" * k:
        parts += [lo[0] + alt for alt in _rest_group(lo[1:], "9" * k)]
        first_full += 1
    tail: list[str] = []
    if hi[1:] != "9" * k:
        tail = [hi[0] + alt for alt in _rest_group("0" * k, hi[1:])]
        last_full -= 1
    if first_full <= last_full:
        parts.append(_digit_class(first_full, last_full) + _any_digits(k))
    return parts + tail


def _rest_group(lo: str, hi: str) -> list[str]:
    alts = _same_length_range(lo, hi)
    return alts if len(alts) == 1 else ["(" + "|".join(alts) + ")"]


def int_range_regex(lo: int, hi: int) -> str:
    """A regex (no anchors, one group) matching exactly the decimal integers ``lo..hi``, without leading zeros.

    Built from digit ranges, so it stays small: ``int_range_regex(1, 137)`` is
    ``([1-9]|[1-9][0-9]|1([0-2][0-9]|3[0-7]))``.
    """
    if lo < 0 or hi < lo:
        raise ValueError(f"need 0 <= lo <= hi, got {lo}..{hi}")
    alts: list[str] = []
    for n_digits in range(len(str(lo)), len(str(hi)) + 1):
        a = max(lo, 10 ** (n_digits - 1) if n_digits > 1 else 0)
        b = min(hi, 10**n_digits - 1)
        alts += _same_length_range(str(a), str(b))
    return "(" + "|".join(alts) + ")"


# One character of a canonical string literal (format_program's double-quoted repr style): any character but
# the quote, the backslash and line breaks, or one of Python's escapes.
_STR_CHAR = r'([^"\\\n\r]|\\["\\\'abfnrtv]|\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\U[0-9a-f]{8})'


def ordered_pair_regex(n_lines: int) -> str:
    """A regex (no anchors, one group) for ``"a, b"`` with ``1 <= a <= b <= n_lines``: one alternative per ``a``,
    each followed by :func:`int_range_regex` ``(a, n_lines)``, so an inverted range cannot be written. Its size
    grows as ``n_lines * log(n_lines)`` (about 5,300 characters for 100 lines; xgrammar compiles it in
    milliseconds)."""
    if n_lines < 1:
        raise ValueError(f"n_lines must be >= 1, got {n_lines}")
    return "(" + "|".join(f"{a}, {int_range_regex(a, n_lines)}" for a in range(1, n_lines + 1)) + ")"


def program_regex(
    n_lines: int,
    max_calls: int | None = DEFAULT_MAX_CALLS,
    *,
    ordered: bool = True,
    max_str_chars: int | None = None,
) -> str:
    """A regex for one chunk's program whose line numbers are restricted to ``1..n_lines``.

    The language is the canonical program text of :func:`~refinex_datatrove.program.format_program`:
    ``keep_all()`` alone, or 1 to ``max_calls`` calls ``remove_lines(a, b)`` / ``remove_str(n, "text")``
    separated by ``"\\n"``. With ``ordered`` (default), ``remove_lines(a, b)`` needs ``a <= b``
    (:func:`ordered_pair_regex`), so neither an out-of-range nor an inverted range can be written.
    The regex uses only character classes, groups, alternation and bounded repetition, which vLLM's
    structured-output backends (xgrammar, guidance) and Python's ``re`` all accept.

    Args:
        n_lines: lines in the chunk (>= 1).
        max_calls: most calls in one program; ``None`` for no bound.
        ordered: require ``a <= b`` in ``remove_lines(a, b)``; False: any two line numbers of the chunk (the
            executor then counts ``inverted_range``).
        max_str_chars: most characters (an escape counts as one) in one ``remove_str`` string; ``None`` for no
            bound. With ``max_calls`` it bounds the program's length, hence the tokens a guided model can write.

    Returns:
        The regex (match it with ``re.fullmatch``).
    """
    if n_lines < 1:
        raise ValueError(f"n_lines must be >= 1, got {n_lines}")
    if max_calls is not None and max_calls < 1:
        raise ValueError(f"max_calls must be >= 1 or None, got {max_calls}")
    if max_str_chars is not None and max_str_chars < 1:
        raise ValueError(f"max_str_chars must be >= 1 or None, got {max_str_chars}")
    num = int_range_regex(1, n_lines)
    pair = ordered_pair_regex(n_lines) if ordered else f"{num}, {num}"
    body = _STR_CHAR + ("+" if max_str_chars is None else f"{{1,{max_str_chars}}}")
    call = rf'(remove_lines\({pair}\)|remove_str\({num}, "{body}"\))'
    more = "*" if max_calls is None else ("" if max_calls == 1 else f"{{0,{max_calls - 1}}}")
    calls = call if max_calls == 1 else rf"{call}(\n{call}){more}"
    return rf"(keep_all\(\)|{calls})"


__all__ = ["DEFAULT_MAX_CALLS", "int_range_regex", "ordered_pair_regex", "program_regex"]
