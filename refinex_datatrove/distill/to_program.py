"""Distil an (original, expert rewrite) pair into a deletion-only RefineX program (paper §6).

Steps, each with a named rejection reason (:class:`RejectReason`):

1. align the texts at character level (:func:`refinex_datatrove.distill.align.align`);
2. reject over-editing: an insertion or replacement span of ``rewrite_span_limit`` characters or more
   (insertion: ``j2 - j1``; replacement: ``max(i2 - i1, j2 - j1)``); and an expert that wrote new text: the
   rewrite's characters that are not carried over from the original in order, with matched islands of at most
   ``insertion_island_chars`` characters between them counted as part of the insertion (the alignment matches
   stray letters of deleted text inside an invented clause, cutting it into short spans), reaching
   ``rewrite_span_limit`` characters in one run (``inserted_text``);
3. keep only the pure deletions; insertions and replacements are discarded (the original characters of a
   replacement are *kept*);
4. map the deletions onto lines (paper Algorithm 1, with tolerance for line-break and whitespace residue):

   * lines joined by deleted line breaks form a group; inside a group the lines that keep real content stay,
     the others are removed whole. A line whose text is wholly deleted is removed with its line break even if
     the expert left the break (or an empty line) behind; with ``whitespace_residue_deleted`` a line whose only
     kept characters are whitespace counts as wholly deleted too. A group left with no content keeps one of
     its original empty lines, if it has one, so blank lines the expert kept stay;
   * a deleted line break between two lines that both keep content (a line join, which the program language
     cannot express) is dropped from the deletions;
   * a partial-line deletion becomes ``remove_str(line, "text")`` clipped to its line; a whitespace-only one
     is dropped when ``drop_whitespace_str`` (it would almost never be unique on its line), and one whose
     text is not unique on its line rejects the pair (``str_not_unique``);

5. filter on the deleted characters that the program deletes: 0 gives a ``keep_all()`` example (or is
   rejected), 1 to ``min_deleted_chars - 1`` is rejected;
6. write one program per chunk (the annotator's chunking, line numbers local to the chunk) and verify it:
   executing the programs must give exactly the original minus the kept deletions, otherwise the pair is
   rejected (``roundtrip_mismatch``) and nothing is emitted.

Pure Python: no datatrove, torch or transformers imports.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from refinex_datatrove.distill.align import (
    DEFAULT_MAX_BLOCK_CHARS,
    Span,
    align,
    deletion_spans,
    rewrite_span_length,
    span_overlap,
    spans_length,
)
from refinex_datatrove.program import (
    Chunk,
    ChunkProgram,
    Op,
    RemoveLines,
    RemoveStr,
    Unit,
    chunk_lines,
    delete_spans,
    execute_document,
    format_program,
    merge_spans,
    split_lines,
)


class RejectReason(StrEnum):
    """Why a pair yields no training example."""

    INSERTION_TOO_LONG = "insertion_too_long"
    REPLACEMENT_TOO_LONG = "replacement_too_long"
    INSERTED_TEXT = "inserted_text"
    NO_DELETIONS = "no_deletions"
    TOO_FEW_DELETED_CHARS = "too_few_deleted_chars"
    EDIT_IN_SKIPPED_CHUNK = "edit_in_skipped_chunk"
    STR_NOT_UNIQUE = "str_not_unique"
    ROUNDTRIP_MISMATCH = "roundtrip_mismatch"


@dataclass(frozen=True, slots=True)
class DistillConfig:
    """Distillation filters and tolerances (defaults follow the paper, §6.2).

    Attributes:
        rewrite_span_limit: reject the pair when an insertion or replacement span has at least this many
            characters; ``None`` disables the filter.
        min_deleted_chars: reject pairs whose program deletes 1 to ``min_deleted_chars - 1`` characters.
        zero_deletions_keep_all: a pair with no deletion becomes a ``keep_all()`` example; ``False`` rejects
            it (``no_deletions``).
        whitespace_residue_deleted: a line whose deletions leave only whitespace counts as wholly deleted.
        drop_whitespace_str: whitespace-only partial-line deletions are dropped instead of becoming
            ``remove_str(n, " ")`` calls.
        insertion_island_chars: original characters matched between two inserted spans of the rewrite that still
            count as part of one insertion (``inserted_text``); ``0`` joins only touching spans.
        max_block_chars: alignment change blocks larger than this use rapidfuzz Levenshtein, not difflib.
        verify: execute the programs and compare with the deletion-only projection (recommended).
    """

    rewrite_span_limit: int | None = 20
    min_deleted_chars: int = 10
    zero_deletions_keep_all: bool = True
    whitespace_residue_deleted: bool = True
    drop_whitespace_str: bool = True
    insertion_island_chars: int = 4
    max_block_chars: int = DEFAULT_MAX_BLOCK_CHARS
    verify: bool = True

    def __post_init__(self) -> None:
        if self.rewrite_span_limit is not None and self.rewrite_span_limit < 1:
            raise ValueError(f"rewrite_span_limit must be >= 1 or None, got {self.rewrite_span_limit}")
        if self.min_deleted_chars < 0:
            raise ValueError(f"min_deleted_chars must be >= 0, got {self.min_deleted_chars}")
        if self.insertion_island_chars < 0:
            raise ValueError(f"insertion_island_chars must be >= 0, got {self.insertion_island_chars}")
        if self.max_block_chars < 0:
            raise ValueError(f"max_block_chars must be >= 0, got {self.max_block_chars}")


@dataclass(slots=True)
class DistillResult:
    """Outcome of distilling one pair.

    Attributes:
        rejection: why the pair was rejected, or ``None`` for an emitted example.
        detail: a human-readable explanation of the rejection (empty when accepted).
        chunk_programs: one :class:`ChunkProgram` per chunk, covering the document in order (empty when
            rejected). A chunk with nothing to delete, and every ``skipped`` chunk, has ``keep_all()``.
        op_counts: calls by kind over all chunks: ``remove_lines``, ``remove_str``, ``keep_all`` (the last
            counts non-skipped chunks whose program is ``keep_all()``).
        deleted_spans: merged ``[start, end)`` offsets in the original of what the programs delete.
        deleted_chars: characters the programs delete (``len`` of ``deleted_spans``).
        lines_removed: document lines deleted whole.
        aligned_deleted_chars: characters deleted by pure ``delete`` opcodes of the alignment.
        residue_chars: characters deleted by the programs but not by the alignment (line breaks and
            whitespace left behind by the expert, absorbed by the tolerance rules).
        dropped_chars: aligned deletions the programs do not make (whitespace-only partial deletions, line
            joins).
        inserted_chars: characters on the rewrite side of all insertions and replacements.
        max_rewrite_span: the longest insertion or replacement span (see :class:`DistillConfig`).
        max_inserted_run: the longest run of inserted text in the rewrite, islands included
            (:func:`inserted_runs`).
        n_chunks: number of chunks (including skipped ones).
    """

    rejection: RejectReason | None = None
    detail: str = ""
    chunk_programs: list[ChunkProgram] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)
    deleted_spans: list[Span] = field(default_factory=list)
    deleted_chars: int = 0
    lines_removed: int = 0
    aligned_deleted_chars: int = 0
    residue_chars: int = 0
    dropped_chars: int = 0
    inserted_chars: int = 0
    max_rewrite_span: int = 0
    max_inserted_run: int = 0
    n_chunks: int = 0

    @property
    def ok(self) -> bool:
        """True when the pair yields an example."""
        return self.rejection is None


@dataclass(slots=True)
class _LinePlan:
    """Which lines go whole and which partial deletions stay, in document line indices."""

    removed: bytearray
    str_spans: dict[int, list[Span]]  # line index -> [x, y) offsets inside the line


def distill_program(original: str, refined: str, config: DistillConfig | None = None) -> DistillResult:
    """Distil the pair into one program over the whole document (one chunk, line numbers from 1)."""
    lines = split_lines(original)
    return _distill(original, refined, lines, [Chunk(0, len(lines))], config or DistillConfig())


def distill_document(
    original: str,
    refined: str,
    window: int,
    unit: Unit = "chars",
    config: DistillConfig | None = None,
) -> DistillResult:
    """Distil the pair into per-chunk programs, chunked exactly as the annotator chunks the original.

    Args:
        original: the raw document.
        refined: the expert's rewrite of it.
        window: chunk size, see :func:`refinex_datatrove.program.chunk_lines`.
        unit: ``"chars"``, ``"words"`` or a callable counting a line's units.
        config: filters and tolerances.
    """
    lines = split_lines(original)
    return _distill(original, refined, lines, chunk_lines(lines, window, unit), config or DistillConfig())


def format_chunk_programs(chunk_programs: Sequence[ChunkProgram]) -> str:
    """Program text for display: one chunk gives its program; several chunks give each program preceded by a
    ``# chunk lines a-b`` comment (1-based document lines, inclusive; ``(skipped)`` for a skipped chunk).

    The result parses back with :func:`refinex_datatrove.program.parse_program` (comments are ignored).
    """
    if len(chunk_programs) == 1:
        return chunk_programs[0].program
    parts = []
    for cp in chunk_programs:
        flag = " (skipped)" if cp.chunk.skipped else ""
        parts.append(f"# chunk lines {cp.chunk.start + 1}-{cp.chunk.end}{flag}\n{cp.program}")
    return "\n".join(parts)


def inserted_runs(original: str, opcodes: Sequence[tuple[str, int, int, int, int]], island_chars: int) -> list[Span]:
    """``[j1, j2)`` ranges of the rewrite holding text the expert wrote rather than carried over, each with at
    least one new character; see :func:`_runs` for what counts as new."""
    return [(a, b) for a, b, _n in _runs(original, opcodes, island_chars)]


def _runs(
    original: str, opcodes: Sequence[tuple[str, int, int, int, int]], island_chars: int
) -> list[tuple[int, int, int]]:
    """Runs of new text in the rewrite: ``(j1, j2, new characters)``.

    A rewrite character is carried over when it lies in a matched (``equal``) island of more than ``island_chars``
    characters, or in an island that is a whole line of the original (a short line kept); such an island ends the
    run. New text is the rewrite side of insertions and replacements and the tiny islands (an aligner matches
    stray letters of deleted text inside an invented clause, cutting it into short spans, or even spells the
    whole clause from them). Whitespace-only tiny islands (a kept space or line break) count only between new
    text, not at either end of a run. Two runs separated by one carried island (not a whole line) shorter than
    either run are one run: a word matched inside an invented sentence does not split it.
    """
    runs: list[tuple[int, int, int]] = []
    gaps: list[tuple[int, bool]] = []  # before runs[k]: (carried islands since runs[k - 1], one of them a line)
    open_run = False
    pending = 0  # whitespace islands since the run's last new character
    islands, line_kept = 0, False
    for tag, i1, i2, j1, j2 in opcodes:
        if j2 <= j1:  # a deletion: no rewrite characters
            continue
        if tag == "equal":
            starts_line = i1 == 0 or original[i1 - 1] == "\n"
            ends_line = i2 == len(original) or original[i2 - 1] == "\n" or original[i2] == "\n"
            if j2 - j1 > island_chars or (starts_line and ends_line):
                open_run, pending = False, 0
                islands += 1
                line_kept = line_kept or (starts_line and ends_line)
                continue
            if original[i1:i2].isspace():
                pending += j2 - j1
                continue
        if open_run:
            start, _end, count = runs[-1]
            runs[-1] = (start, j2, count + pending + j2 - j1)
        else:
            runs.append((j1, j2, j2 - j1))
            gaps.append((islands, line_kept))
            open_run = True
        pending, islands, line_kept = 0, 0, False
    merged: list[tuple[int, int, int]] = []
    for (start, end, count), (n_islands, kept_line) in zip(runs, gaps, strict=True):
        if merged and n_islands == 1 and not kept_line:
            p_start, p_end, p_count = merged[-1]
            gap = start - p_end  # the island plus whitespace around it
            if gap < min(p_count, count):
                merged[-1] = (p_start, end, p_count + gap + count)
                continue
        merged.append((start, end, count))
    return merged


def _distill(
    original: str, refined: str, lines: list[str], chunks: list[Chunk], config: DistillConfig
) -> DistillResult:
    opcodes = align(original, refined, max_block_chars=config.max_block_chars)
    result = DistillResult(n_chunks=len(chunks))

    # Over-editing filter.
    offender = None
    for op in opcodes:
        if op[0] not in ("insert", "replace"):
            continue
        length = rewrite_span_length(op)
        result.inserted_chars += op[4] - op[3]
        result.max_rewrite_span = max(result.max_rewrite_span, length)
        if offender is None and config.rewrite_span_limit is not None and length >= config.rewrite_span_limit:
            offender = op
    if offender is not None:
        tag, i1, _i2, j1, j2 = offender
        result.rejection = RejectReason.INSERTION_TOO_LONG if tag == "insert" else RejectReason.REPLACEMENT_TOO_LONG
        result.detail = (
            f"{tag} of {rewrite_span_length(offender)} characters at original offset {i1} "
            f"(limit {config.rewrite_span_limit}): {refined[j1:j2][:60]!r}"
        )
        return result
    longest = max(_runs(original, opcodes, config.insertion_island_chars), key=lambda r: r[2], default=(0, 0, 0))
    result.max_inserted_run = longest[2]
    if config.rewrite_span_limit is not None and result.max_inserted_run >= config.rewrite_span_limit:
        result.rejection = RejectReason.INSERTED_TEXT
        result.detail = (
            f"the rewrite adds {result.max_inserted_run} characters of new text at rewrite offset {longest[0]} "
            f"(limit {config.rewrite_span_limit}; matched islands of at most {config.insertion_island_chars} "
            f"characters count as inserted): {refined[longest[0] : longest[1]][:60]!r}"
        )
        return result

    aligned = deletion_spans(opcodes)
    result.aligned_deleted_chars = spans_length(aligned)
    plan = _plan_lines(lines, aligned, config)
    spans = _program_spans(lines, plan)
    result.deleted_spans = spans
    result.deleted_chars = spans_length(spans)
    common = span_overlap(spans, aligned)
    result.residue_chars = result.deleted_chars - common
    result.dropped_chars = result.aligned_deleted_chars - common
    result.lines_removed = plan.removed.count(1)

    if result.deleted_chars == 0:
        if not config.zero_deletions_keep_all:
            result.rejection = RejectReason.NO_DELETIONS
            result.detail = "the rewrite deletes nothing"
            return result
    elif result.deleted_chars < config.min_deleted_chars:
        result.rejection = RejectReason.TOO_FEW_DELETED_CHARS
        result.detail = f"{result.deleted_chars} deleted characters (minimum {config.min_deleted_chars})"
        return result

    for chunk in chunks:
        if not chunk.skipped:
            continue
        for idx in range(chunk.start, chunk.end):
            if plan.removed[idx] or idx in plan.str_spans:
                result.rejection = RejectReason.EDIT_IN_SKIPPED_CHUNK
                result.detail = f"line {idx + 1} is longer than the window (never edited) but has deletions"
                return result

    for idx, intervals in sorted(plan.str_spans.items()):
        line = lines[idx]
        for x, y in intervals:
            text = line[x:y]
            if line.find(text) != x or line.find(text, x + 1) >= 0:
                result.rejection = RejectReason.STR_NOT_UNIQUE
                result.detail = f"{text[:60]!r} occurs more than once on line {idx + 1}"
                return result

    programs, counts = _write_programs(lines, chunks, plan)
    if config.verify:
        error = roundtrip_error(original, programs, spans)
        if error is not None:
            result.rejection = RejectReason.ROUNDTRIP_MISMATCH
            result.detail = error
            return result
    result.chunk_programs = programs
    result.op_counts = counts
    return result


def roundtrip_error(original: str, programs: Sequence[ChunkProgram], deleted_spans: Sequence[Span]) -> str | None:
    """The round trip through the core executor: executing ``programs`` on ``original`` must apply every call and
    give exactly ``original`` minus ``deleted_spans``. Returns why not, or ``None``."""
    executed = execute_document(original, programs)
    expected = delete_spans(original, deleted_spans)
    if executed.skipped:
        return f"executing the programs skipped calls: {executed.skipped}"
    if executed.text != expected:
        return (
            f"executing the programs gives {len(executed.text)} characters, the deletion-only projection "
            f"{len(expected)}"
        )
    return None


def _plan_lines(lines: list[str], spans: list[Span], config: DistillConfig) -> _LinePlan:
    """Apply Algorithm 1's line mapping, with the tolerance rules, to the aligned deletion spans."""
    n = len(lines)
    starts = [0] * n
    pos = 0
    for k, line in enumerate(lines):
        starts[k] = pos
        pos += len(line) + 1

    # Deleted intervals inside each line's text (line-relative), and deleted line breaks (break k follows
    # line k).
    inside: dict[int, list[Span]] = {}
    break_deleted = bytearray(n)
    for x, y in spans:
        k = bisect_right(starts, x) - 1
        while k < n and starts[k] < y:
            s, e = starts[k], starts[k] + len(lines[k])
            lo, hi = max(x, s), min(y, e)
            if hi > lo:
                inside.setdefault(k, []).append((lo - s, hi - s))
            if k < n - 1 and x <= e < y:
                break_deleted[k] = 1
            k += 1

    # Lines whose text is wholly deleted (up to whitespace residue, if configured) lose their content; other
    # touched lines keep their partial deletions, less the whitespace-only ones if configured.
    str_spans: dict[int, list[Span]] = {}
    content = bytearray(1 if line else 0 for line in lines)  # 1 when the line keeps real content
    for k, intervals in inside.items():
        line = lines[k]
        kept_text = _without(line, intervals)
        solid = [(x, y) for x, y in intervals if line[x:y].strip()]
        if not kept_text or (config.whitespace_residue_deleted and solid and not kept_text.strip()):
            content[k] = 0
            continue
        use = solid if config.drop_whitespace_str else intervals
        if use:
            str_spans[k] = use

    removed = bytearray(n)
    k = 0
    while k < n:
        g_end = k
        while g_end < n - 1 and break_deleted[g_end]:
            g_end += 1
        group = range(k, g_end + 1)
        if any(content[i] for i in group):
            for i in group:
                if not content[i]:
                    removed[i] = 1
        else:
            # No content left (only wholly deleted and empty lines): the projection has one empty line here.
            # Keep an original empty line if there is one, remove the rest.
            blank = next((i for i in group if not lines[i]), None)
            for i in group:
                if i != blank:
                    removed[i] = 1
        k = g_end + 1
    return _LinePlan(removed=removed, str_spans=str_spans)


def _without(line: str, intervals: list[Span]) -> str:
    parts, prev = [], 0
    for x, y in intervals:
        parts.append(line[prev:x])
        prev = y
    parts.append(line[prev:])
    return "".join(parts)


def _program_spans(lines: list[str], plan: _LinePlan) -> list[Span]:
    """Character spans of the original that the planned program deletes (the executor's semantics)."""
    spans: list[Span] = []
    pos = 0
    starts = []
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    last_kept = plan.removed.rfind(0)
    idx = plan.removed.find(1)
    while idx >= 0:
        s, e = starts[idx], starts[idx] + len(lines[idx])
        spans.append((s, e + 1) if idx < last_kept else (max(s - 1, 0), e))
        idx = plan.removed.find(1, idx + 1)
    for idx, intervals in plan.str_spans.items():
        spans.extend((starts[idx] + x, starts[idx] + y) for x, y in intervals)
    return merge_spans(spans)


def _write_programs(
    lines: list[str], chunks: list[Chunk], plan: _LinePlan
) -> tuple[list[ChunkProgram], dict[str, int]]:
    counts = {"remove_lines": 0, "remove_str": 0, "keep_all": 0}
    programs: list[ChunkProgram] = []
    for chunk in chunks:
        ops: list[Op] = []
        if not chunk.skipped:
            idx = chunk.start
            while idx < chunk.end:
                if plan.removed[idx]:
                    run_end = idx
                    while run_end + 1 < chunk.end and plan.removed[run_end + 1]:
                        run_end += 1
                    ops.append(RemoveLines(idx - chunk.start + 1, run_end - chunk.start + 1))
                    idx = run_end + 1
                    continue
                for x, y in plan.str_spans.get(idx, ()):
                    ops.append(RemoveStr(idx - chunk.start + 1, lines[idx][x:y]))
                idx += 1
            if not ops:
                counts["keep_all"] += 1
            for op in ops:
                counts["remove_lines" if isinstance(op, RemoveLines) else "remove_str"] += 1
        programs.append(ChunkProgram(chunk, format_program(ops)))
    return programs, counts
