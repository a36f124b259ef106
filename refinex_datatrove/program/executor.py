"""Deterministic, deletion-only execution of per-chunk programs on a document.

Semantics (README "Execution semantics" documents the same):

* Every line number refers to the chunk's numbering before any edit; local line ``n`` of a chunk is
  document line ``chunk.start + n - 1``. The order of calls never matters: all ``remove_str`` edits are
  located on the original lines, then whole lines are dropped. Overlapping ranges and duplicate calls union.
* Removing a line removes it and its line break: the result is the kept lines joined by ``"\\n"``.
* ``remove_str(n, s)`` deletes ``s`` only when it occurs exactly once on original line ``n``. A line
  emptied by ``remove_str`` stays as an empty line.
* ``keep_all()`` alone leaves its chunk unchanged. Mixed with edits, the edits apply and the ``keep_all()``
  is counted as skipped (``keep_all_mixed``).
* Invalid calls (see :class:`~refinex_datatrove.program.parser.InvalidReason`) are counted as
  ``invalid_call``. With ``ExecPolicy(on_invalid="skip_call")`` (the default) the chunk's valid calls still
  apply; with ``on_invalid="keep_chunk"`` a chunk with at least ``keep_chunk_threshold`` invalid calls is
  left unchanged and its valid calls are counted as ``chunk_kept_invalid``.
* A chunk marked ``skipped`` (one over-long line) is never edited (``edit_in_skipped_chunk``).

The output is always the input with some characters deleted, never anything else.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from itertools import accumulate, compress
from typing import Literal

from refinex_datatrove.program.chunking import Chunk
from refinex_datatrove.program.ops import KeepAll, RemoveLines, RemoveStr
from refinex_datatrove.program.parser import CALL_SLACK_CHARS, InvalidReason, call_length_bound, parse_program


class SkipReason(StrEnum):
    INVALID_CALL = "invalid_call"
    LINE_OUT_OF_RANGE = "line_out_of_range"
    INVERTED_RANGE = "inverted_range"
    STR_NOT_FOUND = "str_not_found"
    STR_NOT_UNIQUE = "str_not_unique"
    EDIT_IN_SKIPPED_CHUNK = "edit_in_skipped_chunk"
    KEEP_ALL_MIXED = "keep_all_mixed"
    CHUNK_KEPT_INVALID = "chunk_kept_invalid"
    CHUNK_OUT_OF_RANGE = "chunk_out_of_range"


@dataclass(frozen=True, slots=True)
class ExecPolicy:
    """What a program with invalid calls does to its chunk.

    Attributes:
        on_invalid: ``"skip_call"`` (default): skip only the invalid calls. ``"keep_chunk"``: leave the chunk
            unchanged when it has at least ``keep_chunk_threshold`` invalid calls (ProX used 2).
        keep_chunk_threshold: see ``on_invalid``.
    """

    on_invalid: Literal["skip_call", "keep_chunk"] = "skip_call"
    keep_chunk_threshold: int = 1

    def __post_init__(self) -> None:
        if self.on_invalid not in ("skip_call", "keep_chunk"):
            raise ValueError(f"on_invalid must be 'skip_call' or 'keep_chunk', got {self.on_invalid!r}")
        if self.keep_chunk_threshold < 1:
            raise ValueError("keep_chunk_threshold must be >= 1")


@dataclass(frozen=True, slots=True)
class ChunkProgram:
    """The program written for one chunk of a document."""

    chunk: Chunk
    program: str


@dataclass(slots=True)
class ExecResult:
    """Outcome of :func:`execute_document`.

    Attributes:
        text: the refined text.
        applied: applied calls by kind (``remove_lines``, ``remove_str``, ``keep_all``).
        skipped: calls not applied, by :class:`SkipReason`.
        invalid: invalid calls by :class:`InvalidReason` (their total is ``skipped["invalid_call"]``).
        lines_removed: document lines deleted whole.
        chars_removed: ``len(original) - len(text)``.
        deleted_spans: merged ``[start, end)`` character offsets into the original; deleting them gives ``text``.
            Filled only when :func:`execute_document` is called with ``spans=True`` (the report needs them, the
            pipeline does not); empty otherwise.
    """

    text: str
    applied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    lines_removed: int = 0
    chars_removed: int = 0
    deleted_spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_calls(self) -> int:
        return sum(self.applied.values()) + sum(self.skipped.values())

    @property
    def n_invalid(self) -> int:
        return self.skipped.get(SkipReason.INVALID_CALL, 0)

    @property
    def changed(self) -> bool:
        return self.chars_removed > 0


def whole_document(text: str, program: str) -> list[ChunkProgram]:
    """One chunk over the whole document (the numbering of ``refinex render FILE`` without ``--window``)."""
    return [ChunkProgram(Chunk(0, text.count("\n") + 1), program)]


def execute_document(
    text: str, programs: Sequence[ChunkProgram], policy: ExecPolicy | None = None, *, spans: bool = False
) -> ExecResult:
    """Apply the chunk programs to ``text``; see the module docstring for the semantics. Never raises on
    any program text.

    Args:
        text: the document.
        programs: one program per chunk.
        policy: what chunks with invalid calls do (default :class:`ExecPolicy`).
        spans: also compute :attr:`ExecResult.deleted_spans` (character offsets of every deletion, for the
            report); off by default, since the bookkeeping costs more than the execution itself.
    """
    policy = policy or _DEFAULT_POLICY
    keep_chunk = policy.on_invalid == "keep_chunk"
    n_doc = text.count("\n") + 1
    lines: list[str] | None = None  # split only when a remove_str needs a line's text, or something is removed
    removed: bytearray | None = None
    str_edits: dict[int, list[tuple[int, int]]] = {}
    applied: dict[str, int] = {}
    skipped: dict[str, int] = {}
    invalid: dict[str, int] = {}

    for cp in programs:
        chunk = cp.chunk
        program = cp.program
        bound = None  # the chunk's call length bound matters only for program lines longer than the smallest one
        if len(program) > CALL_SLACK_CHARS and max(map(len, program.split("\n"))) > CALL_SLACK_CHARS:
            if lines is None:
                lines = text.split("\n")
            bound = max_call_chars(lines, chunk)
        if len(program) <= _CACHED_PROGRAM_CHARS:
            parsed = _parse_short(program, bound)
        else:
            parsed = parse_program(program, bound)
        ops, bad = parsed.ops, parsed.invalid
        if bad:
            skipped[_INVALID_CALL] = skipped.get(_INVALID_CALL, 0) + len(bad)
            for inv in bad:
                reason = inv.reason.value
                invalid[reason] = invalid.get(reason, 0) + 1
        if not ops:
            continue
        n_keep = sum(1 for op in ops if type(op) is KeepAll)
        n_edits = len(ops) - n_keep
        n, start = chunk.n_lines, chunk.start
        if start < 0 or n < 1 or start + n > n_doc:
            skipped[_CHUNK_OUT_OF_RANGE] = skipped.get(_CHUNK_OUT_OF_RANGE, 0) + len(ops)
            continue
        if keep_chunk and len(bad) >= policy.keep_chunk_threshold:
            skipped[_CHUNK_KEPT_INVALID] = skipped.get(_CHUNK_KEPT_INVALID, 0) + len(ops)
            continue
        if chunk.skipped:
            if n_edits:
                skipped[_EDIT_IN_SKIPPED] = skipped.get(_EDIT_IN_SKIPPED, 0) + n_edits
            if n_keep:
                applied["keep_all"] = applied.get("keep_all", 0) + n_keep
            continue
        if n_keep:
            if not n_edits:
                applied["keep_all"] = applied.get("keep_all", 0) + n_keep
                continue
            skipped[_KEEP_ALL_MIXED] = skipped.get(_KEEP_ALL_MIXED, 0) + n_keep
        base = start - 1
        for op in ops:
            kind = type(op)
            if kind is RemoveLines:
                if op.start > op.end:
                    skipped[_INVERTED_RANGE] = skipped.get(_INVERTED_RANGE, 0) + 1
                elif op.start < 1 or op.end > n:
                    skipped[_LINE_OUT_OF_RANGE] = skipped.get(_LINE_OUT_OF_RANGE, 0) + 1
                else:
                    if removed is None:
                        removed = bytearray(n_doc)
                    removed[base + op.start : base + op.end + 1] = b"\x01" * (op.end - op.start + 1)
                    applied["remove_lines"] = applied.get("remove_lines", 0) + 1
            elif kind is RemoveStr:
                if op.line < 1 or op.line > n:
                    skipped[_LINE_OUT_OF_RANGE] = skipped.get(_LINE_OUT_OF_RANGE, 0) + 1
                    continue
                if lines is None:
                    lines = text.split("\n")
                idx = base + op.line
                line = lines[idx]
                pos = line.find(op.text)
                if pos < 0:
                    skipped[_STR_NOT_FOUND] = skipped.get(_STR_NOT_FOUND, 0) + 1
                elif line.find(op.text, pos + 1) >= 0:
                    skipped[_STR_NOT_UNIQUE] = skipped.get(_STR_NOT_UNIQUE, 0) + 1
                else:
                    str_edits.setdefault(idx, []).append((pos, pos + len(op.text)))
                    applied["remove_str"] = applied.get("remove_str", 0) + 1

    result = ExecResult(text=text, applied=applied, skipped=skipped, invalid=invalid)
    if not str_edits and (removed is None or 1 not in removed):
        return result
    if lines is None:
        lines = text.split("\n")
    if removed is None:
        removed = bytearray(n_doc)

    if not spans:
        new_lines = lines
        if str_edits:
            new_lines = list(lines)
            for idx, intervals in str_edits.items():
                if not removed[idx]:
                    line = lines[idx]
                    new_lines[idx] = "".join(line[a:b] for a, b in _complement(merge_spans(intervals), len(line)))
        n_removed = removed.count(1)
        result.text = "\n".join(compress(new_lines, removed.translate(_FLIP))) if n_removed else "\n".join(new_lines)
        result.lines_removed = n_removed
        result.chars_removed = len(text) - len(result.text)
        return result

    starts = [0, *accumulate(len(line) + 1 for line in lines)]
    deleted: list[tuple[int, int]] = []
    new_lines = lines
    if str_edits:
        new_lines = list(lines)
        for idx, intervals in str_edits.items():
            if removed[idx]:
                continue
            merged = merge_spans(intervals)
            line = lines[idx]
            new_lines[idx] = "".join(line[a:b] for a, b in _complement(merged, len(line)))
            deleted.extend((starts[idx] + a, starts[idx] + b) for a, b in merged)
    last_kept = removed.rfind(b"\x00")
    n_removed = 0
    idx = removed.find(b"\x01")
    while idx >= 0:
        n_removed += 1
        line_start, line_end = starts[idx], starts[idx] + len(lines[idx])
        if idx < last_kept:
            deleted.append((line_start, line_end + 1))  # the line and the break after it
        else:
            deleted.append((max(line_start - 1, 0), line_end))  # the break before it, if any
        idx = removed.find(b"\x01", idx + 1)
    keep_mask = removed.translate(_FLIP)
    result.text = "\n".join(compress(new_lines, keep_mask))
    result.lines_removed = n_removed
    result.chars_removed = len(text) - len(result.text)
    result.deleted_spans = merge_spans(deleted)
    return result


_FLIP = bytes([1, 0]) + bytes(254)
_CACHED_PROGRAM_CHARS = 200
# short programs repeat across documents (keep_all(), remove_lines(1, 3), ...): parsed once; read-only here
_parse_short = lru_cache(maxsize=4096)(parse_program)
_DEFAULT_POLICY = ExecPolicy()
_INVALID_CALL = SkipReason.INVALID_CALL.value
_LINE_OUT_OF_RANGE = SkipReason.LINE_OUT_OF_RANGE.value
_INVERTED_RANGE = SkipReason.INVERTED_RANGE.value
_STR_NOT_FOUND = SkipReason.STR_NOT_FOUND.value
_STR_NOT_UNIQUE = SkipReason.STR_NOT_UNIQUE.value
_EDIT_IN_SKIPPED = SkipReason.EDIT_IN_SKIPPED_CHUNK.value
_KEEP_ALL_MIXED = SkipReason.KEEP_ALL_MIXED.value
_CHUNK_KEPT_INVALID = SkipReason.CHUNK_KEPT_INVALID.value
_CHUNK_OUT_OF_RANGE = SkipReason.CHUNK_OUT_OF_RANGE.value


def max_call_chars(lines: Sequence[str], chunk: Chunk) -> int:
    """The longest call line valid for ``chunk`` (longer lines are ``line_too_long`` before ``ast`` sees them).

    A skipped chunk is never edited, so only ``keep_all()``-sized lines are worth parsing there."""
    if chunk.skipped or chunk.start < 0 or chunk.n_lines < 1 or chunk.end > len(lines):
        return call_length_bound(0)
    return call_length_bound(max(map(len, lines[chunk.start : chunk.end])))


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or touching ``[start, end)`` spans; empty spans are dropped."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _complement(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    out, prev = [], 0
    for a, b in spans:
        out.append((prev, a))
        prev = b
    out.append((prev, length))
    return out


def delete_spans(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with the given (merged or not) ``[start, end)`` spans deleted: the deletion-only projection.

    Raises:
        ValueError: a span outside the text.
    """
    merged = merge_spans(spans)
    if merged and (merged[0][0] < 0 or merged[-1][1] > len(text)):
        bad = merged[0] if merged[0][0] < 0 else merged[-1]
        raise ValueError(f"span {bad} outside text of {len(text)} characters")
    return "".join(text[a:b] for a, b in _complement(merged, len(text)))


def is_deletion_of(original: str, refined: str) -> bool:
    """True when ``refined`` is a subsequence of ``original`` (obtainable by deleting characters only)."""
    it = iter(original)
    return all(ch in it for ch in refined)


def line_of_offset(starts: Sequence[int], offset: int) -> int:
    """0-based line holding character ``offset``, given the line start offsets."""
    return bisect_left(starts, offset + 1) - 1


__all__ = [
    "ChunkProgram",
    "ExecPolicy",
    "ExecResult",
    "InvalidReason",
    "SkipReason",
    "delete_spans",
    "execute_document",
    "is_deletion_of",
    "max_call_chars",
    "merge_spans",
    "whole_document",
]
