"""Lines, and the one renderer used for both training data and inference.

Document lines are ``text.split("\\n")``: ``\\r``, form feeds, ``\\u2028`` and the like stay inside their
line, and ``"\\n".join(lines)`` gives the text back byte for byte. A trailing newline yields a last, empty
line, which is numbered like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

RENDER_FORMAT = "numbered_v1"
"""Recorded with every program and trained model; change it (``_v2``) whenever the rendering changes."""

REFINE_INSTRUCTION = "Clean:"
"""The refine model's instruction. Prefill dominates the cost of refinement, so the whole wrapper (this line,
its break and the break that ends the prompt) is 4 SmolLM2 tokens per chunk; no chat template is used."""

PROMPT_STYLE = "raw"
"""Refine-model prompts are raw text (``Request(prompt=...)``, SFT ``prompt``/``completion`` strings), not chat
messages: a chat template with its default system prompt costs ~30 tokens per chunk."""


def split_lines(text: str) -> list[str]:
    """The document's lines; ``"\\n".join(split_lines(t)) == t`` for every string."""
    return text.split("\n")


def render_chunk(lines: Sequence[str]) -> str:
    """Number ``lines`` as ``[n] <line>``, n starting at 1, one per output line."""
    return "\n".join([f"[{n}] {line}" for n, line in enumerate(lines, start=1)])


def render_prompt(rendered_chunk: str) -> str:
    """The refine model's whole prompt for one rendered chunk; the program follows it directly."""
    return f"{REFINE_INSTRUCTION}\n{rendered_chunk}\n"
