"""QualityFilter: drop documents that refinement emptied, shrank too much, or left too short."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from refinex_datatrove.metadata import (
    ExecStatus,
    MalformedProgramMetadata,
    QualityRecord,
    get_refinex,
    quality_record,
)


class DropReason(StrEnum):
    """``filter_reason`` of dropped documents; datatrove counts them as ``dropped_<reason>``."""

    EMPTY = "refinex_empty"
    REMOVED_FRAC = "refinex_removed_frac"
    MIN_WORDS = "refinex_min_words"
    MIN_CHARS = "refinex_min_chars"


class QualityStat(StrEnum):
    MALFORMED_METADATA = "malformed_metadata"
    """``metadata["refinex"]`` or its ``exec`` record is unreadable: the document is judged on its text only."""


def _whitespace_words(text: str) -> int:
    return len(text.split())


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class QualityFilter(BaseFilter):
    """ProX's document rules after execution, as explicit parameters.

    Reads ``doc.text`` and ``doc.metadata["refinex"]["exec"]`` (``chars_before``/``chars_after``) or, failing
    that, ``doc.metadata["refinex"]["original_text"]``. Writes ``doc.metadata["refinex"]["quality"]`` =
    ``{"words", "chars", "removed_frac"}`` before deciding, so thresholds can be re-tuned offline.

    Rules, checked in this order (the first that fails names the drop reason):

    1. ``refinex_empty``: the text is empty or whitespace (``drop_empty``).
    2. ``refinex_removed_frac``: execution removed ``>= max_removed_frac`` of the characters. Documents that
       were never executed (no program, malformed) have ``removed_frac = None`` and skip this rule.
    3. ``refinex_min_words``: fewer than ``min_words`` words (ProX: ``<= 10`` words dropped, so 11).
    4. ``refinex_min_chars``: fewer than ``min_chars`` characters.

    ProX measured the removed share in whitespace words; here it is characters, which the executor records
    exactly.

    Args:
        min_words: minimum number of words to keep a document; ``None`` disables the rule.
        min_chars: minimum number of characters; ``None`` or 0 disables the rule.
        max_removed_frac: drop when the removed fraction of characters is at least this; ``None`` disables.
        drop_empty: drop empty or whitespace-only documents.
        count_words: word counter (default: whitespace ``split``); must be picklable (a module-level function).
        exclusion_writer: datatrove writer for dropped documents (they get ``metadata["filter_reason"]``).
    """

    name = "🧽 RefineX quality"

    def __init__(
        self,
        *,
        min_words: int | None = 11,
        min_chars: int | None = None,
        max_removed_frac: float | None = 0.95,
        drop_empty: bool = True,
        count_words: Callable[[str], int] | None = None,
        exclusion_writer: DiskWriter | None = None,
    ) -> None:
        super().__init__(exclusion_writer=exclusion_writer)
        for name, value in (("min_words", min_words), ("min_chars", min_chars)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an int >= 0 or None, got {value!r}")
        if max_removed_frac is not None and not 0.0 < max_removed_frac <= 1.0:
            raise ValueError(f"max_removed_frac must be in (0, 1] or None, got {max_removed_frac!r}")
        self.min_words = min_words
        self.min_chars = min_chars
        self.max_removed_frac = max_removed_frac
        self.drop_empty = drop_empty
        self.count_words = count_words or _whitespace_words

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        quality = self.measure(doc)
        if self.drop_empty and not doc.text.strip():
            return False, DropReason.EMPTY.value
        frac = quality["removed_frac"]
        if self.max_removed_frac is not None and frac is not None and frac >= self.max_removed_frac:
            return False, DropReason.REMOVED_FRAC.value
        if self.min_words is not None and quality["words"] < self.min_words:
            return False, DropReason.MIN_WORDS.value
        if self.min_chars and quality["chars"] < self.min_chars:
            return False, DropReason.MIN_CHARS.value
        return True

    def measure(self, doc: Document) -> QualityRecord:
        """Compute the measured values and store them in ``metadata["refinex"]["quality"]`` (when possible)."""
        text = doc.text
        words, chars = self.count_words(text), len(text)
        try:
            meta = get_refinex(doc)
        except MalformedProgramMetadata:
            self.stat_update(QualityStat.MALFORMED_METADATA)
            return quality_record(words=words, chars=chars, removed_frac=None)
        quality = quality_record(words=words, chars=chars, removed_frac=self._removed_frac(meta, chars))
        meta["quality"] = quality
        return quality

    def _removed_frac(self, meta: dict[str, Any], n_chars: int) -> float | None:
        record = meta.get("exec")
        if isinstance(record, dict) and record.get("status") == ExecStatus.EXECUTED:
            before, after = record.get("chars_before"), record.get("chars_after")
            if _is_count(before) and _is_count(after) and after <= before:
                return (before - after) / before if before else 0.0
            self.stat_update(QualityStat.MALFORMED_METADATA)
            return None
        original = meta.get("original_text")
        if isinstance(original, str) and original:
            return max(0, len(original) - n_chars) / len(original)
        return None


__all__ = ["DropReason", "QualityFilter", "QualityStat"]
