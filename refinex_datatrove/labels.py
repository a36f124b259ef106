"""Programs from per-line keep labels (e.g. WCXB's ``keep``): delete every run of lines labelled 0.

Pure: no datatrove, torch, transformers or vllm.
"""

from __future__ import annotations

from collections.abc import Sequence

from refinex_datatrove.program import (
    Chunk,
    ChunkProgram,
    Op,
    RemoveLines,
    Unit,
    chunk_lines,
    format_program,
    split_lines,
)


def _removal_ops(keep: Sequence[int]) -> list[Op]:
    """``remove_lines`` calls (1-based, inclusive) for each maximal run of zeros in ``keep``."""
    ops: list[Op] = []
    run_start: int | None = None
    for i, k in enumerate(keep, start=1):
        if not k and run_start is None:
            run_start = i
        elif k and run_start is not None:
            ops.append(RemoveLines(run_start, i - 1))
            run_start = None
    if run_start is not None:
        ops.append(RemoveLines(run_start, len(keep)))
    return ops


def programs_from_keep_labels(
    text: str, keep: Sequence[int | bool], window: int | None = None, unit: Unit = "chars"
) -> list[ChunkProgram]:
    """One program per chunk that removes exactly the lines labelled 0.

    Args:
        text: the document; its lines are ``text.split("\\n")``.
        keep: one label per line, 1/True = keep, 0/False = delete.
        window: chunk the document with :func:`~refinex_datatrove.program.chunk_lines` (``None``: one chunk over
            the whole document).
        unit: chunking unit (``"chars"``, ``"words"`` or a callable), only used with ``window``.

    Returns:
        Chunk programs in document order. A chunk with nothing to delete gets ``keep_all()``; so does a
        skipped chunk (one line longer than the window), which is never edited: its label is not honoured.

    Raises:
        ValueError: ``keep`` has the wrong length or holds anything but 0/1/bools.
    """
    lines = split_lines(text)
    if len(keep) != len(lines):
        raise ValueError(f"{len(keep)} keep labels for {len(lines)} lines")
    labels: list[int] = []
    for i, k in enumerate(keep):
        if k not in (0, 1) or not isinstance(k, int):  # bool is an int
            raise ValueError(f"keep[{i}] = {k!r}: labels must be 0/1 or bools")
        labels.append(int(k))
    chunks = [Chunk(0, len(lines))] if window is None else chunk_lines(lines, window, unit)
    out: list[ChunkProgram] = []
    for chunk in chunks:
        ops = [] if chunk.skipped else _removal_ops(labels[chunk.start : chunk.end])
        out.append(ChunkProgram(chunk, format_program(ops)))
    return out


__all__ = ["programs_from_keep_labels"]
