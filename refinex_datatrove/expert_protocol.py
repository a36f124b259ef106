"""Pure parts of the expert end-to-end refinement (paper §5): windows, requests, output parsing, reassembly.

The expert (a large instruct model) receives one window of a document wrapped in ``[doc]...[/doc]`` and answers
with two fields::

    modification_reason: [doc]why lines were removed or kept[/doc]
    refined_text: [doc]the window with the noise deleted[/doc]

Nothing here imports datatrove or a model library; :class:`refinex_datatrove.steps.expert.ExpertRefiner` is the
thin pipeline step around these functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from refinex_datatrove.llm.base import Generation, Request
from refinex_datatrove.program import Chunk, Unit, chunk_lines, split_lines
from refinex_datatrove.prompts import Prompt

DEFAULT_WINDOW = 48_000
"""Default expert window in characters: about 12k tokens, the paper's expert window."""

DOC_OPEN, DOC_CLOSE = "[doc]", "[/doc]"


class ExpertStatus(StrEnum):
    """Outcome of one expert call, or of a whole document (its worst window)."""

    OK = "ok"
    TRUNCATED = "truncated"  # the generation hit max_tokens before the refined text was closed
    UNPARSEABLE = "unparseable"  # no refined_text field could be found
    FAILED = "failed"  # the transport reported an error for the request
    EMPTY_INPUT = "empty_input"  # the document is empty or whitespace only; nothing was sent


# Severity used to pick the status of a multi-window document: the worst window wins.
_SEVERITY = {
    ExpertStatus.OK: 0,
    ExpertStatus.UNPARSEABLE: 1,
    ExpertStatus.TRUNCATED: 2,
    ExpertStatus.FAILED: 3,
    ExpertStatus.EMPTY_INPUT: -1,
}


_FINISH_RANK = {"length": 1, "error": 2}


@dataclass(frozen=True, slots=True)
class ExpertParse:
    """What was read from one expert answer.

    Attributes:
        reason: the ``modification_reason`` text, ``None`` if the field is absent.
        refined_text: the ``refined_text`` content (``""`` when the expert deleted everything); ``None`` unless
            ``status`` is ``ok``.
        status: see :class:`ExpertStatus`.
    """

    reason: str | None
    refined_text: str | None
    status: ExpertStatus


@dataclass(frozen=True, slots=True)
class ExpertResult:
    """The expert's refinement of a whole document (all windows reassembled).

    Attributes:
        text: the refined document, ``None`` unless ``status`` is ``ok``.
        reason: the windows' reasons joined by blank lines (``None`` when no window gave one).
        status: the worst window status.
        finish_reason: ``"error"`` or ``"length"`` if any window had it, else the first window's reason;
            ``None`` when nothing was sent.
        prompt_tokens: summed over windows.
        completion_tokens: summed over windows.
        n_windows: windows sent to the expert.
        n_skipped_windows: over-long single lines that were not sent and are kept verbatim.
        error: the first transport error message, if any.
    """

    text: str | None
    reason: str | None
    status: ExpertStatus
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    n_windows: int
    n_skipped_windows: int = 0
    error: str | None = None


def build_expert_requests(
    text: str, prompt: Prompt, window: int = DEFAULT_WINDOW, unit: Unit = "chars"
) -> list[tuple[Chunk, Request]]:
    """Split ``text`` into line-aligned windows and build one chat request per window.

    Windows come from the core :func:`~refinex_datatrove.program.chunk_lines` (no overlap, so the refined windows
    can be joined back). A single line longer than ``window`` becomes a ``skipped`` chunk and gets no request;
    :func:`assemble_expert_result` keeps it verbatim. An empty or whitespace-only document gets no request.

    Args:
        text: the document.
        prompt: a prompt with one variable, ``DOCUMENT``.
        window: the window budget, in ``unit``.
        unit: ``"chars"``, ``"words"`` or a callable counting one line.

    Returns:
        ``(chunk, request)`` pairs in document order.
    """
    if not text.strip():
        return []
    lines = split_lines(text)
    return [
        (chunk, Request(messages=prompt.render(DOCUMENT="\n".join(lines[chunk.start : chunk.end]))))
        for chunk in chunk_lines(lines, window, unit)
        if not chunk.skipped
    ]


_REFINED_LABEL = re.compile(
    r"(?:^|(?<=\[/doc\]))[ \t]*[*#>_`]*[ \t]*refined[_ ]text[ \t]*[*_`]*[ \t]*:[ \t]*[*_`]*[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_REASON_LABEL = re.compile(r"modification[_ ]reason[ \t]*[*_`]*[ \t]*:[ \t]*[*_`]*", re.IGNORECASE)
_OPEN_AT_START = re.compile(r"\s*\[doc\]", re.IGNORECASE)


def _trim_layout_newlines(body: str) -> str:
    """Drop one line break right after ``[doc]`` and one right before ``[/doc]``: layout, not content."""
    if body.startswith("\r\n"):
        body = body[2:]
    elif body.startswith("\n"):
        body = body[1:]
    if body.endswith("\n"):
        body = body[:-1]
    return body


def _parse_reason(head: str) -> str | None:
    match = _REASON_LABEL.search(head)
    if match is None:
        return None
    reason = head[match.end() :].strip()
    if reason.lower().startswith(DOC_OPEN):
        reason = reason[len(DOC_OPEN) :]
    end = reason.lower().rfind(DOC_CLOSE)
    if end >= 0:
        reason = reason[:end]
    return reason.strip()


def parse_expert_output(text: str, finish_reason: str | None = "stop") -> ExpertParse:
    """Read ``modification_reason`` and ``refined_text`` from one expert answer.

    Rules, chosen to survive real model output:

    * The ``refined_text`` label is found at the start of a line or right after a ``[/doc]`` (markdown bold or
      heading marks around it are tolerated); the first such label is used, so the document's own text cannot
      shadow it.
    * The refined text runs from the ``[doc]`` after the label to the **last** ``[/doc]`` of the answer, so
      ``[doc]``/``[/doc]`` inside the document survive and chatter after the closing tag is ignored.
    * A missing opening tag is tolerated when the closing tag is present; a missing closing tag is tolerated
      when the generation stopped normally (e.g. a stop string ate it), but is ``truncated`` when
      ``finish_reason == "length"``. Without either tag the answer is ``unparseable``.
    * One line break right after ``[doc]`` and one right before ``[/doc]`` are layout and are dropped.
    * ``[doc][/doc]`` is a valid answer: the expert deleted everything (``refined_text == ""``).

    Args:
        text: the generated text.
        finish_reason: the transport's finish reason (``"stop"``, ``"length"``, ``"error"``).

    Returns:
        The parse; ``refined_text`` is set only when ``status`` is ``ok``.
    """
    if finish_reason == "error":
        return ExpertParse(None, None, ExpertStatus.FAILED)
    label = _REFINED_LABEL.search(text)
    truncated = finish_reason == "length"
    if label is None:
        reason = _parse_reason(text)
        return ExpertParse(reason, None, ExpertStatus.TRUNCATED if truncated else ExpertStatus.UNPARSEABLE)
    reason = _parse_reason(text[: label.start()])
    rest = text[label.end() :]
    opener = _OPEN_AT_START.match(rest)
    if opener is not None:
        rest = rest[opener.end() :]
    close = rest.lower().rfind(DOC_CLOSE)
    if close >= 0:
        if truncated and rest[close + len(DOC_CLOSE) :].strip():
            # the closing tag may belong to the document itself, with the real answer cut off later
            return ExpertParse(reason, None, ExpertStatus.TRUNCATED)
        return ExpertParse(reason, _trim_layout_newlines(rest[:close]), ExpertStatus.OK)
    if truncated:
        return ExpertParse(reason, None, ExpertStatus.TRUNCATED)
    if opener is None:
        return ExpertParse(reason, None, ExpertStatus.UNPARSEABLE)
    return ExpertParse(reason, _trim_layout_newlines(rest.rstrip(" \t")), ExpertStatus.OK)


def assemble_expert_result(text: str, windows: Sequence[tuple[Chunk, Generation]]) -> ExpertResult:
    """Parse each window's generation and join the refined windows back into one document.

    Lines of ``text`` covered by no window (the skipped over-long lines) are kept verbatim. Pieces are joined
    with ``"\\n"``; a piece the expert emptied completely is left out instead of leaving a blank line, so the
    result stays a deletion of ``text`` whenever every window's answer is one.

    Args:
        text: the original document.
        windows: ``(chunk, generation)`` pairs as built by :func:`build_expert_requests`, in document order.

    Returns:
        The document-level result; ``text`` is ``None`` unless every window parsed ``ok``.
    """
    if not text.strip():
        return ExpertResult(None, None, ExpertStatus.EMPTY_INPUT, None, 0, 0, 0)
    lines = split_lines(text)
    status = ExpertStatus.OK
    pieces: list[str] = []
    reasons: list[str] = []
    finish: str | None = None
    error: str | None = None
    prompt_tokens = completion_tokens = n_skipped = 0
    covered = 0
    for chunk, generation in windows:
        if chunk.start > covered:
            gap = lines[covered : chunk.start]
            n_skipped += len(gap)
            pieces.append("\n".join(gap))
        covered = chunk.end
        prompt_tokens += generation.prompt_tokens
        completion_tokens += generation.completion_tokens
        if finish is None or _FINISH_RANK.get(generation.finish_reason, 0) > _FINISH_RANK.get(finish, 0):
            finish = generation.finish_reason
        if generation.finish_reason == "error" and error is None:
            error = generation.error or "unknown transport error"
        parsed = parse_expert_output(generation.text, generation.finish_reason)
        if parsed.reason:
            reasons.append(parsed.reason)
        if _SEVERITY[parsed.status] > _SEVERITY[status]:
            status = parsed.status
        if parsed.refined_text:
            pieces.append(parsed.refined_text)
    if covered < len(lines):
        n_skipped += len(lines) - covered
        pieces.append("\n".join(lines[covered:]))
    return ExpertResult(
        text="\n".join(p for p in pieces if p) if status == ExpertStatus.OK else None,
        reason="\n\n".join(reasons) if reasons else None,
        status=status,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        n_windows=len(windows),
        n_skipped_windows=n_skipped,
        error=error,
    )


__all__ = [
    "DEFAULT_WINDOW",
    "ExpertParse",
    "ExpertResult",
    "ExpertStatus",
    "assemble_expert_result",
    "build_expert_requests",
    "parse_expert_output",
]
