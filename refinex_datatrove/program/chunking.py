"""Greedy packing of whole lines into windows (paper Algorithm 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Union

Unit = Union[Literal["chars", "words"], Callable[[str], int]]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of consecutive document lines.

    Attributes:
        start: 0-based index of the chunk's first line in the document.
        n_lines: number of lines; local line ``n`` (1-based) is document line ``start + n - 1``.
        skipped: a single line longer than the window; it is never edited.
    """

    start: int
    n_lines: int
    skipped: bool = False

    @property
    def end(self) -> int:
        """0-based index one past the chunk's last line."""
        return self.start + self.n_lines


def _chars(line: str) -> int:
    return len(line) + 1  # the line break


def _words(line: str) -> int:
    return len(line.split())


def unit_counter(unit: Unit) -> Callable[[str], int]:
    """The per-line cost function for ``unit``: characters (with the line break), words, or a callable."""
    if callable(unit):
        return unit
    if unit == "chars":
        return _chars
    if unit == "words":
        return _words
    raise ValueError(f"unknown chunking unit {unit!r}: use 'chars', 'words' or a callable(str) -> int")


def chunk_lines(lines: Sequence[str], window: int, unit: Unit = "chars") -> list[Chunk]:
    """Pack whole lines greedily into chunks of at most ``window`` units.

    A line that alone exceeds ``window`` becomes its own chunk with ``skipped=True``. A line's cost is
    ``count(line)``; a chunk's cost is the sum over its lines (for a tokenizer this is a close
    approximation of the joined text's count). An empty document (``[""]``) is one chunk of one line.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    count = unit_counter(unit)
    chunks: list[Chunk] = []
    start, used = 0, 0
    for i, line in enumerate(lines):
        cost = count(line)
        if cost > window:
            if i > start:
                chunks.append(Chunk(start, i - start))
            chunks.append(Chunk(i, 1, skipped=True))
            start, used = i + 1, 0
            continue
        if used + cost > window and i > start:
            chunks.append(Chunk(start, i - start))
            start, used = i, 0
        used += cost
    if start < len(lines):
        chunks.append(Chunk(start, len(lines) - start))
    return chunks
