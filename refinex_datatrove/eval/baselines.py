"""Baseline refiners scored next to ours: keep everything, C4's line rules, and the gold projection.

Every baseline is deletion-only and line-based: a line is kept verbatim or deleted with its line break, so the
output is always a subsequence of the input. Pure Python (no datatrove import).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Mirrors datatrove.pipeline.filters.c4_filters (C4QualityFilter, split_paragraph=True), copied so that this
# module stays importable without datatrove; a test checks the constants against datatrove's.
C4_CITATION_REGEX = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
C4_ELLIPSIS = "..."
C4_POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@dataclass(frozen=True, slots=True)
class C4LineRules:
    """C4's line rules (Raffel et al. 2020, as in datatrove's ``C4QualityFilter`` line loop) as a line filter.

    A line is judged after ``strip()`` and (with ``remove_citations``) removal of wiki citation marks, exactly as
    the C4 filter does, but the kept line is emitted verbatim (citations included): the baseline only deletes.
    The filter's document-level drops become line drops here: a line with "lorem ipsum" or a curly bracket is
    deleted, the document stays; ``min_num_sentences`` is not applied.

    Attributes:
        remove_citations: strip ``[1]``, ``[edit]``, ``[citation needed]`` before the punctuation test.
        filter_no_terminal_punct: delete lines not ending in ``. ? ! " '`` (or ending in ``...``).
        min_words_per_line: delete lines with fewer whitespace words (``-1`` disables).
        max_word_length: delete lines with a longer word (``-1`` disables).
        filter_lorem_ipsum: delete lines containing "lorem ipsum" (case-insensitive).
        filter_javascript: delete lines containing "javascript" (case-insensitive).
        filter_curly_bracket: delete lines containing ``{``.
        filter_policy: delete lines containing a cookie / terms-of-use / privacy-policy phrase.
    """

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True

    def reason(self, line: str) -> str | None:
        """Why C4 deletes ``line`` (``"no_terminal_punc"``, ``"too_few_words"``, ...), or ``None`` to keep it.

        The checks run in the C4 filter's order, so the reason is the one that filter would count.
        """
        line = line.strip()
        words = line.split()
        if self.max_word_length != -1 and any(len(word) > self.max_word_length for word in words):
            return "too_long_word"
        if self.remove_citations:
            line = C4_CITATION_REGEX.sub("", line)
        if self.filter_no_terminal_punct and (not line.endswith(C4_END_PUNCTUATION) or line.endswith(C4_ELLIPSIS)):
            return "no_terminal_punc"
        if len(words) < self.min_words_per_line:
            return "too_few_words"
        lower = line.lower()
        if self.filter_lorem_ipsum and "lorem ipsum" in lower:
            return "lorem_ipsum"
        if self.filter_javascript and "javascript" in lower:
            return "javascript"
        if self.filter_curly_bracket and "{" in line:
            return "curly_bracket"
        if self.filter_policy and any(p in lower for p in C4_POLICY_SUBSTRINGS):
            return "policy"
        return None

    def keep_mask(self, text: str) -> list[bool]:
        """One flag per line of ``text.split("\\n")``: True when C4 keeps the line."""
        return [self.reason(line) is None for line in text.split("\n")]

    def __call__(self, text: str) -> str:
        """``text`` with the lines C4 deletes removed (kept lines verbatim, joined by ``"\\n"``)."""
        return apply_keep_mask(text, self.keep_mask(text))


def apply_keep_mask(text: str, keep: Sequence[bool | int]) -> str:
    """The lines of ``text.split("\\n")`` whose flag is true, joined by ``"\\n"``.

    Raises:
        ValueError: ``keep`` does not have one flag per line.
    """
    lines = text.split("\n")
    if len(keep) != len(lines):
        raise ValueError(f"keep has {len(keep)} flags for {len(lines)} lines")
    return "\n".join(line for line, k in zip(lines, keep, strict=True) if k)


def keep_all(text: str) -> str:
    """The do-nothing refiner."""
    return text


c4_lines = C4LineRules()
"""C4's line rules with the C4 defaults."""


__all__ = [
    "C4_CITATION_REGEX",
    "C4_ELLIPSIS",
    "C4_END_PUNCTUATION",
    "C4_POLICY_SUBSTRINGS",
    "C4LineRules",
    "apply_keep_mask",
    "c4_lines",
    "keep_all",
]
