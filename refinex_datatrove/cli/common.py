"""What every ``refinex`` subcommand shares: exit codes, argparse integer types, byte-exact stdout."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from refinex_datatrove.files import InputError, read_text_file

EXIT_OK = 0
EXIT_USAGE = 2
"""Unreadable input or an invalid argument (argparse's own status for usage errors)."""


def write_stdout(text: str) -> None:
    """Write ``text`` as UTF-8 bytes, exactly (no newline translation, whatever the locale)."""
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
        return
    stream.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()


def format_counts(counts: dict[str, int]) -> str:
    """``a=1, b=2`` over the non-zero counts, sorted; ``none`` when there are none."""
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v) or "none"


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {n}")
        return n

    parse.__name__ = f"{what.replace('-', '_')}_int"
    return parse


positive_int = _int_at_least(1, "positive")
"""argparse ``type=`` for integers >= 1 (shared by every subcommand)."""
non_negative_int = _int_at_least(0, "non-negative")
"""argparse ``type=`` for integers >= 0."""


__all__ = [
    "EXIT_OK",
    "EXIT_USAGE",
    "InputError",
    "format_counts",
    "non_negative_int",
    "positive_int",
    "read_text_file",
    "write_stdout",
]
