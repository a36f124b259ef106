"""FailedGenerationFilter: documents whose program could not be generated go to their own output, unexecuted."""

from __future__ import annotations

from typing import Any

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from refinex_datatrove.metadata import META_KEY, ExecStatus


def generation_failed(meta: dict[str, Any]) -> bool:
    """Whether ``metadata["refinex"]``'s program has a chunk whose generation failed (status ``failed``)."""
    program = meta.get("program")
    chunks = program.get("chunks") if isinstance(program, dict) else None
    return isinstance(chunks, list) and any(isinstance(c, dict) and c.get("status") == "failed" for c in chunks)


class FailedGenerationFilter(BaseFilter):
    """Drop documents whose program could not be generated (a chunk with status ``failed``), before execution.

    They are not refined documents: with an ``exclusion_writer`` they go, unchanged and with the chunk's error
    text in ``metadata["refinex"]["program"]["chunks"]``, to their own output (``filter_reason``
    ``generation_failed``), from where they can be refined again.
    """

    name = "🚧 RefineX generation failed"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        meta = doc.metadata.get(META_KEY)
        if isinstance(meta, dict) and generation_failed(meta):
            return False, ExecStatus.GENERATION_FAILED.value
        return True


__all__ = ["FailedGenerationFilter", "generation_failed"]
