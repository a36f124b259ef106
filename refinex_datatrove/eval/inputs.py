"""Reading refined output and gold pairs for scoring (``refinex eval``, ``refinex report``, the refine report).

The refined output is read line by line (:func:`refinex_datatrove.files.iter_records`) rather than with
datatrove's ``JsonlReader``, which skips documents with an empty text: an emptied document would otherwise be
scored as dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from refinex_datatrove.files import iter_record_objects, iter_records


@dataclass(slots=True)
class RefinedInput:
    """The refined output read from disk, with counts of what could not be used."""

    texts: dict[str, str] = field(default_factory=dict)
    records: int = 0
    malformed_lines: int = 0
    missing_id: int = 0
    missing_text: int = 0
    duplicate_ids: int = 0
    text_field_absent: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "text_field_absent": self.text_field_absent,
            "malformed_lines": self.malformed_lines,
            "missing_id": self.missing_id,
            "missing_text": self.missing_text,
            "duplicate_ids": self.duplicate_ids,
        }


def read_refined(path: str, *, text_key: str = "text", id_key: str = "id") -> RefinedInput:
    """Read id -> refined text from a JSONL(.gz) file or a datatrove output folder.

    Malformed lines, records without a string id, with a non-string text, and repeated ids (the first one wins)
    are counted, not fatal. A record with an empty text is an emptied document, not a dropped one; so is a record
    without the text field at all, which is how datatrove's ``JsonlWriter`` writes an empty text (it omits empty
    fields), counted as ``text_field_absent``.
    """
    out = RefinedInput()
    for _, _, rec in iter_records(path):
        out.records += 1
        if not isinstance(rec, dict):
            out.malformed_lines += 1
            continue
        doc_id = rec.get(id_key)
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            out.missing_id += 1
            continue
        if text_key not in rec:
            out.text_field_absent += 1
        text = rec.get(text_key, "")
        if not isinstance(text, str):
            out.missing_text += 1
            continue
        if doc_id in out.texts:
            out.duplicate_ids += 1
            continue
        out.texts[doc_id] = text
    return out


def read_gold_records(path: str) -> Iterator[dict[str, Any]]:
    """Gold records from a JSONL(.gz) file or folder; a malformed line is an error (gold must be clean)."""
    for _, _, rec in iter_record_objects(path):
        yield rec


__all__ = ["RefinedInput", "read_gold_records", "read_refined"]
