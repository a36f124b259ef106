"""Lines, and the one renderer used for both training data and inference.

Document lines are ``text.split("\\n")``: ``\\r``, form feeds, ``\\u2028`` and the like stay inside their
line, and ``"\\n".join(lines)`` gives the text back byte for byte. A trailing newline yields a last, empty
line, which is numbered like any other.
"""

from __future__ import annotations

from collections.abc import Sequence


RENDER_FORMAT = "numbered_v1"
"""Recorded with every program and trained model; change it (``_v2``) whenever the rendering changes."""

REFINE_INSTRUCTION = (
    "Delete noise (navigation, ads, boilerplate, junk) from the numbered lines. "
    "Answer with remove_lines(a, b), remove_str(n, \"text\") or keep_all(), one per line."
)
"""The refine model's instruction, kept short: prefill dominates the cost of refinement."""


def split_lines(text: str) -> list[str]:
    """The document's lines; ``"\\n".join(split_lines(t)) == t`` for every string."""
    return text.split("\n")


def render_chunk(lines: Sequence[str]) -> str:
    """Number ``lines`` as ``[n] <line>``, n starting at 1, one per output line."""
    return "\n".join([f"[{n}] {line}" for n, line in enumerate(lines, start=1)])


def render_prompt(rendered_chunk: str) -> str:
    """The refine model's user message for one rendered chunk."""
    return f"{REFINE_INSTRUCTION}\n{rendered_chunk}"
