"""Small helpers shared by the LLM transports (no heavy imports)."""

from __future__ import annotations

from collections.abc import Sequence

from refinex_datatrove.llm.base import Generation


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest occurrence of any stop string (the stop string itself is dropped).

    Args:
        text: generated text.
        stop: stop strings; empty strings are ignored.

    Returns:
        ``(text_before_first_stop, True)`` when a stop string occurs, else ``(text, False)``.
    """
    cut = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and (cut == -1 or i < cut):
            cut = i
    if cut == -1:
        return text, False
    return text[:cut], True


def error_generation(exc: BaseException | str, **extra: object) -> Generation:
    """A :class:`Generation` that reports a failed request."""
    message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return Generation(text="", finish_reason="error", error=message, extra=dict(extra))
