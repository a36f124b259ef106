"""Pure parts of refine-model annotation: chunk plan, requests, output cleaning (the grammar: :mod:`.grammar`).

The refine model sees one chunk at a time, rendered by the core :func:`~refinex_datatrove.program.render_chunk`
and wrapped by :func:`~refinex_datatrove.program.render_prompt` into one raw prompt (no chat template): the very
functions that build the SFT data, so training and inference inputs are identical byte for byte. It answers
with a program (one call per line); :func:`clean_generation` strips code fences and whitespace, and nothing
more: parsing belongs to the core parser, which runs later in the executor.

Both transports share these functions: :class:`~refinex_datatrove.steps.annotate.RefineModelAnnotator` (inline,
batched through an :class:`~refinex_datatrove.llm.base.LLMBackend`) and the rollout of
:func:`~refinex_datatrove.steps.annotate.make_annotate_rollout` (datatrove's ``InferenceRunner``).

Nothing here imports datatrove or a model library.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from refinex_datatrove.llm.base import Generation, Request
from refinex_datatrove.program import Chunk, Unit, chunk_lines, parse_program, render_chunk, render_prompt, split_lines
from refinex_datatrove.refine_model.card import DEFAULT_UNIT, DEFAULT_WINDOW
from refinex_datatrove.refine_model.decision import (
    KEEP_ALL,
    DecisionRule,
    Verdict,
    decide,
    empties_document,
    likelihood_of,
)
from refinex_datatrove.refine_model.grammar import DEFAULT_MAX_CALLS, program_regex

DEFAULT_MAX_NEW_TOKENS = 512
"""Default bound on a program's length in tokens (a long program is a sign of a confused model)."""

CHUNK_TOKENS_BASE = 24
CHUNK_TOKENS_PER_LINE = 8
"""A chunk's program is bounded by ``CHUNK_TOKENS_BASE + CHUNK_TOKENS_PER_LINE * lines`` tokens (and by the
global ``max_new_tokens``): on the 15,391 label-derived programs of the WCXB pairs in 1,200-character chunks, the
longest needs ``6 * lines + 16`` SmolLM2 tokens. A model that keeps writing past that is looping, and on the
CPU a long row keeps its whole batch decoding."""


class ChunkStatus(StrEnum):
    """What happened to one chunk during annotation (stored per chunk in metadata)."""

    OK = "ok"  # a complete generation
    TRUNCATED = "truncated"  # hit max_tokens; an unparseable last line was dropped
    EMPTY = "empty"  # the model answered nothing (after cleaning); stored as keep_all()
    FAILED = "failed"  # the transport reported an error; stored as keep_all(), the chunk keeps its text
    SKIPPED = "skipped"  # one line longer than the window; never sent, never edited
    BLANK = "blank"  # only whitespace; nothing to refine, never sent
    OVERRULED = "overruled"  # the decision rule replaced a drastic program by keep_all() (refine_model/decision.py)


SENT = frozenset({ChunkStatus.OK, ChunkStatus.TRUNCATED, ChunkStatus.EMPTY, ChunkStatus.FAILED, ChunkStatus.OVERRULED})
"""Statuses of chunks that got a request."""


@dataclass(frozen=True, slots=True)
class ChunkAnnotation:
    """The program stored for one chunk.

    Attributes:
        chunk: the chunk (0-based first document line, line count, skipped flag).
        program: program text (``keep_all()`` for chunks that were not sent or whose generation failed).
        status: see :class:`ChunkStatus`.
        finish_reason: the backend's finish reason (``None`` when nothing was sent).
        prompt_tokens: prompt tokens the backend reported.
        completion_tokens: generated tokens the backend reported.
        error: the transport's error message for a failed chunk.
        verdict: the decision rule's :class:`~refinex_datatrove.refine_model.decision.Verdict` (``None``: not
            judged: no rule, or no program to judge).
        margin: the rule's margin over ``keep_all()`` in nats (``None`` without likelihoods).
        overruled_program: status ``overruled``: the model's program the rule replaced by ``keep_all()``.
    """

    chunk: Chunk
    program: str
    status: ChunkStatus
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    verdict: Verdict | None = None
    margin: float | None = None
    overruled_program: str | None = None


def plan_chunks(text: str, window: int = DEFAULT_WINDOW, unit: Unit = DEFAULT_UNIT) -> list[Chunk]:
    """The chunks of ``text`` (greedy whole-line packing, paper Algorithm 3, via the core ``chunk_lines``).

    Args:
        text: the document.
        window: chunk budget in ``unit``.
        unit: ``"chars"``, ``"words"`` or a callable counting one line.

    Returns:
        Chunks covering every line of ``text`` in order; a line longer than ``window`` is its own skipped chunk.
    """
    return chunk_lines(split_lines(text), window, unit)


def needs_request(lines: Sequence[str], chunk: Chunk) -> bool:
    """Whether ``chunk`` is sent to the model: not skipped, and holding some non-whitespace text."""
    return not chunk.skipped and any(line.strip() for line in lines[chunk.start : chunk.end])


def chunk_prompt(lines: Sequence[str], chunk: Chunk) -> str:
    """The raw prompt for one chunk: ``render_prompt(render_chunk(chunk lines))`` (no chat template)."""
    return render_prompt(render_chunk(lines[chunk.start : chunk.end]))


def chunk_max_tokens(n_lines: int, max_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> int:
    """The token bound of one chunk's program: ``CHUNK_TOKENS_BASE + CHUNK_TOKENS_PER_LINE * n_lines``, at most
    ``max_tokens``."""
    return max(1, min(max_tokens, CHUNK_TOKENS_BASE + CHUNK_TOKENS_PER_LINE * n_lines))


def build_requests(
    text: str,
    chunks: Sequence[Chunk],
    *,
    guided: bool = False,
    max_calls: int | None = DEFAULT_MAX_CALLS,
    max_tokens: int | None = None,
    max_str_chars: int | None = None,
) -> list[Request]:
    """One raw-prompt request per chunk that :func:`needs_request`, in chunk order.

    Args:
        text: the document the chunks were planned on.
        chunks: from :func:`plan_chunks`.
        guided: attach :func:`program_regex` for the chunk's line count to each request (grammar-constrained
            decoding on backends that support it).
        max_calls: the grammar's bound on calls per program (``None``: unbounded).
        max_str_chars: the grammar's bound on a ``remove_str`` string's characters (``None``: unbounded).
        max_tokens: when set, each request carries :func:`chunk_max_tokens` of its chunk (at most
            ``max_tokens``) as its own ``Request.max_tokens``.

    Returns:
        The requests; pair them back with ``[c for c in chunks if needs_request(lines, c)]``.
    """
    lines = split_lines(text)
    return [
        Request(
            prompt=chunk_prompt(lines, chunk),
            guided_regex=program_regex(chunk.n_lines, max_calls=max_calls, max_str_chars=max_str_chars)
            if guided
            else None,
            max_tokens=chunk_max_tokens(chunk.n_lines, max_tokens) if max_tokens is not None else None,
        )
        for chunk in chunks
        if needs_request(lines, chunk)
    ]


_FENCE_OPEN = re.compile(r"\A```[A-Za-z0-9_+-]*[ \t]*\n?")
_FENCE_CLOSE = re.compile(r"\n?```\Z")


def clean_generation(text: str) -> str:
    """Strip surrounding whitespace and one enclosing Markdown code fence; nothing else.

    ``"```python\\nremove_lines(1, 2)\\n```"`` becomes ``"remove_lines(1, 2)"``. The calls themselves are left
    as generated: the core parser decides what is valid.
    """
    out = text.strip()
    if out.startswith("```"):
        out = _FENCE_OPEN.sub("", out, count=1)
        out = _FENCE_CLOSE.sub("", out, count=1)
        out = out.strip()
    return out


def drop_cut_call(program: str) -> str:
    """For a truncated generation: drop the last line when it does not parse (a call cut off mid-way)."""
    lines = program.split("\n")
    if lines and parse_program(lines[-1]).invalid:
        lines.pop()
    return "\n".join(lines).strip()


def annotation_from_generation(
    chunk: Chunk, gen: Generation, lines: Sequence[str] | None = None, rule: DecisionRule | None = None
) -> ChunkAnnotation:
    """Turn one generation into the chunk's stored program and status.

    A failed request stores ``keep_all()`` (the chunk keeps its text); an empty answer stores ``keep_all()``
    with status ``empty``; a truncated answer keeps its complete calls. With ``rule`` (and the document's
    ``lines``), the program is judged by :func:`~refinex_datatrove.refine_model.decision.decide`: an overruled one
    is stored as ``keep_all()`` with status ``overruled``, the model's program kept in ``overruled_program``.
    """
    common = {
        "finish_reason": gen.finish_reason,
        "prompt_tokens": gen.prompt_tokens or 0,
        "completion_tokens": gen.completion_tokens or 0,
    }
    if not gen.ok:
        return ChunkAnnotation(chunk, KEEP_ALL, ChunkStatus.FAILED, error=gen.error or "unknown error", **common)
    program = clean_generation(gen.text)
    status = ChunkStatus.OK
    if gen.finish_reason == "length":
        program = drop_cut_call(program)
        status = ChunkStatus.TRUNCATED
    if not program:
        return ChunkAnnotation(chunk, KEEP_ALL, ChunkStatus.EMPTY if status == ChunkStatus.OK else status, **common)
    if rule is None or lines is None:
        return ChunkAnnotation(chunk, program, status, **common)
    decision = decide(program, lines[chunk.start : chunk.end], likelihood_of(gen), rule)
    if decision.overruled:
        return ChunkAnnotation(
            chunk,
            decision.program,
            ChunkStatus.OVERRULED,
            verdict=decision.verdict,
            margin=decision.margin,
            overruled_program=program,
            **common,
        )
    return ChunkAnnotation(chunk, program, status, verdict=decision.verdict, margin=decision.margin, **common)


def assemble_annotations(
    text: str, chunks: Sequence[Chunk], generations: Sequence[Generation], rule: DecisionRule | None = None
) -> list[ChunkAnnotation]:
    """Pair generations (one per requested chunk, as from :func:`build_requests`) back with all chunks.

    Args:
        text: the document.
        chunks: every chunk of the document.
        generations: one per chunk that :func:`needs_request`, in order.
        rule: the conservative decision rule each program is judged by (:func:`annotation_from_generation`);
            ``None``: every program is stored as generated.

    Returns:
        One :class:`ChunkAnnotation` per chunk, in order.

    Raises:
        ValueError: the number of generations does not match the requested chunks.
    """
    lines = split_lines(text)
    wanted = sum(needs_request(lines, c) for c in chunks)
    if len(generations) != wanted:
        raise ValueError(f"{len(generations)} generations for {wanted} requested chunks")
    it = iter(generations)
    out: list[ChunkAnnotation] = []
    for chunk in chunks:
        if chunk.skipped:
            out.append(ChunkAnnotation(chunk, KEEP_ALL, ChunkStatus.SKIPPED))
        elif not needs_request(lines, chunk):
            out.append(ChunkAnnotation(chunk, KEEP_ALL, ChunkStatus.BLANK))
        else:
            out.append(annotation_from_generation(chunk, next(it), lines, rule))
    if rule is not None and rule.active and rule.keep_documents:
        out = keep_document(out, lines)
    return out


def keep_document(annotations: list[ChunkAnnotation], lines: Sequence[str]) -> list[ChunkAnnotation]:
    """The decision rule's document guard: when the stored programs would delete every non-blank line of the
    document (:func:`~refinex_datatrove.refine_model.decision.empties_document`), every chunk whose program
    deletes all of its non-blank lines is overruled to ``keep_all()`` (status ``overruled``, verdict
    ``empties_document``, the model's program kept). Otherwise ``annotations`` are returned as they are."""
    chunks = [(a.program, lines[a.chunk.start : a.chunk.end]) for a in annotations]
    if not empties_document(chunks):
        return annotations
    out = []
    for a, (program, mine) in zip(annotations, chunks, strict=True):
        if a.status in (ChunkStatus.OK, ChunkStatus.TRUNCATED) and empties_document([(program, mine)]):
            a = replace(
                a,
                program=KEEP_ALL,
                status=ChunkStatus.OVERRULED,
                verdict=Verdict.EMPTIES_DOCUMENT,
                overruled_program=program,
            )
        out.append(a)
    return out


__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "KEEP_ALL",
    "SENT",
    "ChunkAnnotation",
    "ChunkStatus",
    "annotation_from_generation",
    "assemble_annotations",
    "build_requests",
    "chunk_prompt",
    "clean_generation",
    "drop_cut_call",
    "keep_document",
    "needs_request",
    "plan_chunks",
]
