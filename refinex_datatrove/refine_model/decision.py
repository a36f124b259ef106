"""The conservative decision rule: accept the refine model's program for a chunk, or overrule it to ``keep_all()``.

A refiner that deletes content is worse than none. The default refine model's worst failure is a program that
deletes (almost) a whole chunk of article prose (``remove_lines(1, N)``). This module decides, per chunk, from the
model's own likelihoods, whether such a *drastic* program is trusted:

* a program is **drastic** when its ``remove_lines`` calls delete at least ``DecisionRule.min_share`` of the
  chunk's non-blank lines (:func:`deleted_share`);
* a drastic program is accepted only when it beats ``keep_all()`` by ``DecisionRule.margin`` nats
  (:func:`margin`): ``score(program) - logp(first token of keep_all())`` at the first decoding step, where the
  score is the log-probability of the program's first token (``score="first"``) or of the whole program
  (``score="program"``). ``keep_all()`` is one token sequence whose first token decides it (the rest is
  near-certain), so its first-step log-probability stands for the whole alternative;
* otherwise the program is replaced by ``keep_all()`` (the chunk keeps its text). Programs that are not drastic
  are always accepted;
* and a document is never emptied by the model (``DecisionRule.keep_documents``): when the programs kept would
  delete every non-blank line of a document, its drastic programs are overruled too
  (:func:`empties_document`, ``Verdict.EMPTIES_DOCUMENT``), likelihoods or not. A document that is all noise is
  then left to the quality filter, which drops it under a stat of its own.

The likelihoods come from the backend (``GenerationParams(logprobs=k)``: ``Generation.extra["token_logprobs"]``
and ``extra["first_top_logprobs"]``), on every backend: transformers scores, vLLM and endpoint ``logprobs``.
When ``keep_all()``'s first token is not among the ``k`` most likely first tokens, the least likely of them bounds
its log-probability from above and stands for it (the margin is then a lower bound: conservative). A generation
without likelihoods (a server that returns none) cannot be judged: :func:`decide` accepts it and says so
(``reason="unscored"``), the annotator counts it.

Everything here is pure (no model, no datatrove), so tests pin the rule on crafted inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from refinex_datatrove.llm.base import FIRST_TOP_LOGPROBS, TOKEN_LOGPROBS, Generation
from refinex_datatrove.program import parse_program
from refinex_datatrove.program.ops import RemoveLines

KEEP_ALL = "keep_all()"
"""The program that keeps a chunk as it is (what an overruled chunk stores)."""

DEFAULT_MIN_SHARE = 0.5
"""A program deleting at least this share of its chunk's non-blank lines is drastic (chosen on WCXB dev)."""

DEFAULT_MARGIN = 3.0
"""Nats by which a drastic program must beat ``keep_all()``. Chosen on all 121 eligible WCXB dev documents
(``benchmarks/eval_decision_rule.py``): the smallest margin (so the highest deletion F1) that meets the content
targets there: no document lost, <= 0.5 % of chunks deleted whole while the gold keeps half of them, >= 97 % of the
gold content characters kept."""

DEFAULT_SCORE: Literal["first", "program"] = "program"
"""Which likelihood a drastic program is scored by: the whole program's separated good drastic deletions from bad
ones a little better on WCXB dev (AUC 0.63 against 0.59 for the first token) and met the targets at a higher F1."""

Score = Literal["first", "program"]
SCORES: tuple[str, ...] = ("first", "program")


class Verdict(StrEnum):
    """Why :func:`decide` accepted or overruled a program."""

    NOT_DRASTIC = "not_drastic"  # deletes less than min_share of the chunk: accepted
    CONFIDENT = "confident"  # drastic, beats keep_all() by the margin: accepted
    UNSCORED = "unscored"  # drastic, but the generation carries no likelihoods: accepted, counted
    OVERRULED = "overruled"  # drastic, does not beat keep_all() by the margin: replaced by keep_all()
    OFF = "off"  # the rule is off (margin None): accepted
    EMPTIES_DOCUMENT = "empties_document"  # kept alone, the programs would empty the document: replaced by keep_all()


@dataclass(frozen=True, slots=True)
class Likelihood:
    """What the rule reads from one generation.

    Attributes:
        first: log-probability of the program's first token.
        program: log-probability of the whole program (sum over its tokens).
        keep_all: log-probability of ``keep_all()``'s first token at the first step (an upper bound when it was not
            among the returned top tokens).
    """

    first: float
    program: float
    keep_all: float


@dataclass(frozen=True, slots=True)
class DecisionRule:
    """The conservative decision rule's parameters.

    Attributes:
        margin: nats a drastic program must beat ``keep_all()`` by (may be negative: a looser rule); ``None``
            turns the rule off (every program accepted).
        min_share: share of a chunk's non-blank lines from which a program is drastic (0 < min_share <= 1).
        score: ``"first"`` (the program's first token against ``keep_all()``'s) or ``"program"`` (the whole
            program's log-probability against ``keep_all()``'s first token).
        keep_documents: overrule the drastic programs of a document they would empty (see the module docstring).
    """

    margin: float | None = DEFAULT_MARGIN
    min_share: float = DEFAULT_MIN_SHARE
    score: Score = DEFAULT_SCORE
    keep_documents: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.keep_documents, bool):
            raise ValueError(f"keep_documents must be a bool, got {self.keep_documents!r}")
        if not 0 < self.min_share <= 1:
            raise ValueError(f"min_share must be in (0, 1], got {self.min_share}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.margin is not None and not math.isfinite(self.margin):
            raise ValueError(f"margin must be a finite number or None, got {self.margin}")

    @property
    def active(self) -> bool:
        return self.margin is not None


RULE_OFF = DecisionRule(margin=None)
"""Accept every program (the model alone)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`.

    Attributes:
        program: the program to store (``keep_all()`` when overruled).
        verdict: see :class:`Verdict`.
        share: share of the chunk's non-blank lines the model's program deletes.
        margin: ``score - keep_all`` in nats (``None`` without likelihoods).
    """

    program: str
    verdict: Verdict
    share: float
    margin: float | None

    @property
    def overruled(self) -> bool:
        return self.verdict in (Verdict.OVERRULED, Verdict.EMPTIES_DOCUMENT)


def keep_all_first_logprob(first_top: Mapping[str, float], keep: str = KEEP_ALL) -> float | None:
    """``keep``'s first-token log-probability from the top first tokens (``{token text: logprob}``).

    The first token of ``keep`` is a non-empty prefix of it (leading whitespace aside); the largest such entry is
    taken. When none is among them, the smallest returned value bounds it from above and is returned. ``None``
    when ``first_top`` is empty.
    """
    values = [float(v) for v in first_top.values() if isinstance(v, int | float) and math.isfinite(v)]
    if not values:
        return None
    matches = [
        float(v)
        for t, v in first_top.items()
        if isinstance(t, str) and t.strip() and keep.startswith(t.lstrip()) and math.isfinite(v)
    ]
    return max(matches) if matches else min(values)


def likelihood_from_extra(extra: Mapping[str, Any]) -> Likelihood | None:
    """The :class:`Likelihood` of a generation's ``extra`` (``token_logprobs``, ``first_top_logprobs``); ``None``
    when either is missing or empty."""
    tokens = extra.get(TOKEN_LOGPROBS)
    top = extra.get(FIRST_TOP_LOGPROBS)
    if not isinstance(tokens, Sequence) or not tokens or not isinstance(top, Mapping):
        return None
    try:
        values = [float(v) for v in tokens]
    except (TypeError, ValueError):
        return None
    keep = keep_all_first_logprob(top)
    if keep is None or not all(math.isfinite(v) for v in values):
        return None
    return Likelihood(first=values[0], program=math.fsum(values), keep_all=keep)


def likelihood_of(gen: Generation) -> Likelihood | None:
    """:func:`likelihood_from_extra` of ``gen.extra``."""
    return likelihood_from_extra(gen.extra)


def deleted_share(program: str, lines: Sequence[str]) -> float:
    """Share of the chunk's non-blank lines that ``program``'s ``remove_lines`` calls delete (ranges clipped to
    the chunk, inverted ones ignored, as the executor skips them); ``lines`` are the chunk's lines. A chunk
    without non-blank lines gives 0."""
    content = {i for i, line in enumerate(lines, 1) if line.strip()}
    if not content:
        return 0.0
    deleted: set[int] = set()
    for op in parse_program(program).ops:
        if isinstance(op, RemoveLines) and op.start <= op.end:
            deleted.update(range(max(op.start, 1), min(op.end, len(lines)) + 1))
    return len(deleted & content) / len(content)


def margin(likelihood: Likelihood, score: Score = DEFAULT_SCORE) -> float:
    """``score(program) - logp(keep_all()'s first token)`` in nats (see the module docstring)."""
    mine = likelihood.first if score == "first" else likelihood.program
    return mine - likelihood.keep_all


def decide(
    program: str, lines: Sequence[str], likelihood: Likelihood | None, rule: DecisionRule = DecisionRule()
) -> Decision:
    """Accept ``program`` for a chunk of ``lines`` or overrule it to ``keep_all()`` (see the module docstring).

    Args:
        program: the model's program (cleaned), numbering local to the chunk.
        lines: the chunk's lines.
        likelihood: from :func:`likelihood_of`; ``None`` when the backend returned none.
        rule: the parameters; :data:`RULE_OFF` accepts everything.

    Returns:
        The :class:`Decision`.
    """
    share = deleted_share(program, lines)
    m = margin(likelihood, rule.score) if likelihood is not None else None
    if rule.margin is None:
        return Decision(program, Verdict.OFF, share, m)
    if share < rule.min_share:
        return Decision(program, Verdict.NOT_DRASTIC, share, m)
    if m is None:
        return Decision(program, Verdict.UNSCORED, share, None)
    if m >= rule.margin:
        return Decision(program, Verdict.CONFIDENT, share, m)
    return Decision(KEEP_ALL, Verdict.OVERRULED, share, m)


def empties_document(chunks: Sequence[tuple[str, Sequence[str]]]) -> bool:
    """Whether programs delete every non-blank line of a document: ``chunks`` holds every chunk as ``(program,
    its lines)`` (a chunk that is never edited, e.g. skipped, as ``("keep_all()", lines)``). A document without
    non-blank lines is not emptied by anyone."""
    content = [(p, lines) for p, lines in chunks if any(line.strip() for line in lines)]
    return bool(content) and all(deleted_share(p, lines) == 1 for p, lines in content)


__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MIN_SHARE",
    "DEFAULT_SCORE",
    "KEEP_ALL",
    "RULE_OFF",
    "SCORES",
    "Decision",
    "DecisionRule",
    "Likelihood",
    "Verdict",
    "decide",
    "deleted_share",
    "empties_document",
    "keep_all_first_logprob",
    "likelihood_from_extra",
    "likelihood_of",
    "margin",
]
