"""SFT records for the refine model: one (rendered chunk -> program) pair per chunk.

The prompt is :func:`refinex_datatrove.refine_model.requests.chunk_prompt`, the very function the annotator
uses at inference time, so training and inference inputs are identical byte for byte. No datatrove import here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from refinex_datatrove.program import ChunkProgram, split_lines
from refinex_datatrove.refine_model.requests import chunk_prompt

RecordFormat = Literal["conversational", "prompt_completion"]
RECORD_FORMATS: tuple[str, ...] = ("conversational", "prompt_completion")


def sft_records(
    doc_text: str, chunk_programs: Sequence[ChunkProgram], fmt: RecordFormat = "prompt_completion"
) -> list[dict[str, Any]]:
    """One SFT record per non-skipped chunk of a document, in document order.

    Args:
        doc_text: the original document the programs were written for.
        chunk_programs: the per-chunk programs (``metadata["refinex"]["program"]["chunks"]``).
        fmt: ``"prompt_completion"`` (default) gives plain strings, the raw prompt the annotator sends
            (:data:`~refinex_datatrove.program.PROMPT_STYLE`); ``"conversational"`` gives ``{"prompt": [{"role":
            "user", ...}], "completion": [{"role": "assistant", ...}]}`` (TRL applies the chat template; a model
            trained on it does not match the annotator's raw prompts).

    Returns:
        The records; skipped chunks (one over-long line, never edited) produce none.

    Raises:
        ValueError: unknown ``fmt``, or a chunk that does not fit in ``doc_text``.
    """
    if fmt not in RECORD_FORMATS:
        raise ValueError(f"unknown record format {fmt!r}; use one of {RECORD_FORMATS}")
    lines = split_lines(doc_text)
    records: list[dict[str, Any]] = []
    for cp in chunk_programs:
        chunk = cp.chunk
        if chunk.start < 0 or chunk.n_lines < 1 or chunk.end > len(lines):
            raise ValueError(f"chunk {chunk} does not fit in a document of {len(lines)} lines")
        if chunk.skipped:
            continue
        prompt = chunk_prompt(lines, chunk)
        if fmt == "conversational":
            records.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "completion": [{"role": "assistant", "content": cp.program}],
                }
            )
        else:
            records.append({"prompt": prompt, "completion": cp.program})
    return records


def sft_record_chunk_indices(chunk_programs: Sequence[ChunkProgram]) -> list[int]:
    """Index (in ``chunk_programs``) of the chunk behind each record of :func:`sft_records`, for record ids."""
    return [k for k, cp in enumerate(chunk_programs) if not cp.chunk.skipped]


__all__ = ["RECORD_FORMATS", "RecordFormat", "sft_record_chunk_indices", "sft_records"]
