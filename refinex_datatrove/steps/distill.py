"""ProgramDistiller: turn (original, expert rewrite) pairs into per-chunk deletion programs (paper §6)."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import Any, Literal

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.logging import logger
from datatrove.utils.typeshelper import StatHints

from refinex_datatrove.distill.to_program import (
    DistillConfig,
    DistillResult,
    RejectReason,
    distill_document,
    roundtrip_error,
)
from refinex_datatrove.expert_protocol import ExpertStatus
from refinex_datatrove.metadata import (
    META_KEY,
    MalformedProgramMetadata,
    distill_record,
    empty_refinex,
    get_refinex,
    write_program,
)
from refinex_datatrove.program import Unit, delete_spans, split_lines
from refinex_datatrove.refine_model.card import DEFAULT_WINDOW


class DistillStat(StrEnum):
    """Stats of :class:`ProgramDistiller` besides ``total``/``forwarded``/``dropped`` and ``rejected_<reason>``."""

    PROGRAMS = "programs"  # chunk programs emitted (skipped chunks excluded), value=n per document
    PROGRAMS_KEEP_ALL = "programs_keep_all"  # chunk programs that are keep_all(), value=n
    DOCS_KEEP_ALL = "docs_keep_all"  # emitted documents with nothing deleted
    OPS_REMOVE_LINES = "ops_remove_lines"
    OPS_REMOVE_STR = "ops_remove_str"
    DELETED_CHARS = "deleted_chars"
    LINES_REMOVED = "lines_removed"
    ROUNDTRIP_OK = "roundtrip_ok"  # emitted documents whose programs, re-executed here, give the deletion target
    MATCHES_REFINED = "matches_refined"  # emitted documents whose deletion target is exactly the refined text
    MALFORMED_REFINEX = "malformed_refinex"


class SourceReject(StrEnum):
    """Rejections decided before distillation (the refined text is unusable); distiller rejections use
    :class:`refinex_datatrove.distill.to_program.RejectReason`."""

    NO_REWRITE = "no_rewrite"  # rewrite mode: no metadata["refinex"]["rewrite"] record
    MISSING_FIELD = "missing_field"  # field mode: the metadata field is absent or not a string
    DISTILL_ERROR = "distill_error"  # the distiller raised (a bug; logged with the document id)


class ProgramDistiller(PipelineStep):
    """Distil each document's refined text into programs and keep only documents that yield an example.

    Reads ``doc.text`` (the original) and the refined text from ``metadata["refinex"]["rewrite"]["text"]``
    (``source="rewrite"``, only when the rewrite status is ``ok``) or from ``metadata[field]``
    (``source="field"``, e.g. WCXB's ``gold_projected``). Writes ``metadata["refinex"]["program"]`` (see
    :mod:`refinex_datatrove.metadata`, ``source="distilled"``) and ``metadata["refinex"]["distill"]`` =
    ``{"status": "ok"|"rejected", "reason", "detail", "deleted_chars", "lines_removed", "ops": {kind: n},
    "window", "unit"}`` (rejected documents too, with ``deleted_chars``, ``lines_removed`` and ``ops`` ``None``).

    Emitted documents are forwarded. Rejected ones are counted as ``dropped`` and ``rejected_<reason>`` (a rewrite
    that did not parse is ``rejected_rewrite_<status>``), written to ``exclusion_writer`` if given, and not
    forwarded: ``total == forwarded + dropped``.
    """

    name = "🧪 RefineX distill"
    type = "🔨 - DISTILL"
    _requires_dependencies = ["rapidfuzz"]

    def __init__(
        self,
        *,
        source: Literal["rewrite", "field"] = "rewrite",
        field: str | None = None,
        window: int = DEFAULT_WINDOW,
        unit: Unit = "chars",
        config: DistillConfig | None = None,
        exclusion_writer: DiskWriter | None = None,
    ) -> None:
        """Configure the step.

        Args:
            source: where the refined text comes from: the expert rewrite record or a metadata field.
            field: with ``source="field"``, the metadata key holding the refined text; dots address nested
                dicts (``"a.b"`` is ``metadata["a"]["b"]``).
            window: program chunk window, in ``unit``; must equal the annotator's.
            unit: ``"chars"``, ``"words"`` or a picklable callable counting one line.
            config: distillation filters (paper defaults).
            exclusion_writer: receives rejected documents, with the reason in ``metadata["refinex"]["distill"]``.
        """
        super().__init__()
        if source not in ("rewrite", "field"):
            raise ValueError(f"source must be 'rewrite' or 'field', got {source!r}")
        if source == "field" and not field:
            raise ValueError("source='field' needs the metadata `field` holding the refined text")
        if source == "rewrite" and field:
            raise ValueError("`field` is only used with source='field'")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.source = source
        self.field = field
        self.window = window
        self.unit = unit
        self.config = config or DistillConfig()
        self.exclusion_writer = exclusion_writer

    def _refined_text(self, doc: Document, meta: dict[str, Any]) -> tuple[str | None, str | None]:
        """``(refined_text, None)`` or ``(None, rejection reason)``."""
        if self.source == "field":
            value: Any = doc.metadata
            for key in self.field.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            return (value, None) if isinstance(value, str) else (None, SourceReject.MISSING_FIELD)
        rewrite = meta.get("rewrite")
        if not isinstance(rewrite, dict):
            return None, SourceReject.NO_REWRITE
        status = rewrite.get("status")
        if status != ExpertStatus.OK or not isinstance(rewrite.get("text"), str):
            return None, f"rewrite_{status or 'missing_status'}"
        return rewrite["text"], None

    def _distill(self, doc: Document, refined: str) -> DistillResult | str:
        try:
            return distill_document(doc.text, refined, self.window, self.unit, self.config)
        except Exception as exc:  # never stop the shard; the id makes the bug reproducible
            logger.warning(f"distill_document raised on document {doc.id!r}: {exc!r}")
            return SourceReject.DISTILL_ERROR

    def _count_emitted(self, doc: Document, refined: str, result: DistillResult) -> None:
        ops = result.op_counts
        n_programs = sum(1 for cp in result.chunk_programs if not cp.chunk.skipped)
        self.stat_update(DistillStat.PROGRAMS, value=n_programs)
        self.stat_update(DistillStat.PROGRAMS_KEEP_ALL, value=ops.get("keep_all", 0))
        self.stat_update(DistillStat.OPS_REMOVE_LINES, value=ops.get("remove_lines", 0))
        self.stat_update(DistillStat.OPS_REMOVE_STR, value=ops.get("remove_str", 0))
        self.stat_update(DistillStat.DELETED_CHARS, value=result.deleted_chars, unit="char")
        self.stat_update(DistillStat.LINES_REMOVED, value=result.lines_removed, unit="line")
        if result.deleted_chars == 0:
            self.stat_update(DistillStat.DOCS_KEEP_ALL)
        self.stat_update(DistillStat.ROUNDTRIP_OK)
        if delete_spans(doc.text, result.deleted_spans) == refined:
            self.stat_update(DistillStat.MATCHES_REFINED)

    def _reject(self, doc: Document, meta: dict[str, Any], reason: str, detail: str, excluded: Any, rank: int) -> None:
        meta["distill"] = distill_record(window=self.window, unit=self.unit, reason=str(reason), detail=detail)
        self.stat_update(StatHints.dropped)
        self.stat_update(f"rejected_{reason}")
        if excluded is not None:
            excluded.write(doc, rank)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Distil every document of ``data``; see the class docstring."""
        if data is None:
            return
        with self.exclusion_writer or contextlib.nullcontext() as excluded:
            for doc in data:
                self.stat_update(StatHints.total)
                try:
                    meta = get_refinex(doc)
                except MalformedProgramMetadata:
                    self.stat_update(DistillStat.MALFORMED_REFINEX)
                    meta = doc.metadata[META_KEY] = empty_refinex()
                with self.track_time():
                    refined, reject = self._refined_text(doc, meta)
                    result = self._distill(doc, refined) if refined is not None else reject
                if isinstance(result, str):
                    self._reject(doc, meta, result, "", excluded, rank)
                    continue
                if not result.ok:
                    self._reject(doc, meta, str(result.rejection), result.detail, excluded, rank)
                    continue
                error = roundtrip_error(doc.text, result.chunk_programs, result.deleted_spans)
                if error is not None:
                    self._reject(doc, meta, RejectReason.ROUNDTRIP_MISMATCH, error, excluded, rank)
                    continue
                write_program(doc, result.chunk_programs, "distilled", len(split_lines(doc.text)))
                meta["distill"] = distill_record(
                    window=self.window,
                    unit=self.unit,
                    deleted_chars=result.deleted_chars,
                    lines_removed=result.lines_removed,
                    ops=result.op_counts,
                )
                self._count_emitted(doc, refined, result)
                self.stat_update(StatHints.forwarded)
                self.update_doc_stats(doc)
                yield doc


__all__ = ["DistillStat", "ProgramDistiller", "SourceReject"]
