"""SFTRecordWriter: write one SFT record per chunk program, next to the document stream."""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.typeshelper import StatHints

from refinex_datatrove.metadata import META_KEY, MalformedProgramMetadata, read_chunk_programs
from refinex_datatrove.program import RENDER_FORMAT
from refinex_datatrove.train.records import RECORD_FORMATS, RecordFormat, sft_record_chunk_indices, sft_records


class SFTRecordWriter(PipelineStep):
    """Write the refine model's SFT records for every document that carries chunk programs.

    Reads ``metadata["refinex"]["program"]`` and ``doc.text``. Writes, through an inner datatrove writer, one
    record per non-skipped chunk: ``{"id": "<doc id>/chunk_<k>", "prompt", "completion", "render", "window",
    "unit"}`` with ``prompt``/``completion`` from :func:`refinex_datatrove.train.records.sft_records` (the same
    renderer as the annotator). Each record is handed to the writer as a ``Document`` with empty text and the
    record as metadata, so a writer with ``expand_metadata=True`` writes exactly the record. Documents pass
    through unchanged, like any datatrove writer. Documents without a program are counted as ``no_program``;
    unreadable programs as ``malformed_<reason>``; records as ``records`` (value=n).
    """

    name = "📝 RefineX SFT records"
    type = "💽 - WRITER"

    def __init__(
        self,
        *,
        output_folder: str | None = None,
        output_filename: str | None = None,
        compression: str | None = "gzip",
        writer: DiskWriter | None = None,
        fmt: RecordFormat = "prompt_completion",
        window: int | None = None,
        unit: str | None = None,
    ) -> None:
        """Configure the step.

        Args:
            output_folder: folder for ``JsonlWriter`` record files (``${rank}.jsonl.gz`` by default).
            output_filename: ``JsonlWriter`` filename template.
            compression: ``JsonlWriter`` compression.
            writer: a ready writer instead of ``output_folder``; give it ``expand_metadata=True``.
            fmt: ``"conversational"`` or ``"prompt_completion"``.
            window: recorded in each record (the training script writes it into the model's ``refinex.json``);
                default: the distiller's window from ``metadata["refinex"]["distill"]`` when present.
            unit: as ``window``.
        """
        super().__init__()
        if (output_folder is None) == (writer is None):
            raise ValueError("give exactly one of `output_folder` or `writer`")
        if fmt not in RECORD_FORMATS:
            raise ValueError(f"unknown record format {fmt!r}; use one of {RECORD_FORMATS}")
        self.writer = writer or JsonlWriter(
            output_folder, output_filename=output_filename, compression=compression, expand_metadata=True
        )
        self.fmt = fmt
        self.window = window
        self.unit = unit

    def _records(self, doc: Document) -> list[Document] | str:
        meta = doc.metadata.get(META_KEY)
        if not isinstance(meta, dict) or meta.get("program") is None:
            return "no_program"
        try:
            programs = read_chunk_programs(meta, n_doc_lines=len(doc.text.split("\n")))
        except MalformedProgramMetadata as exc:
            return f"malformed_{exc.reason}"
        distill = meta.get("distill") if isinstance(meta.get("distill"), dict) else {}
        extra = {
            "render": meta["program"].get("render", RENDER_FORMAT),
            "window": self.window if self.window is not None else distill.get("window"),
            "unit": self.unit if self.unit is not None else distill.get("unit"),
        }
        records = sft_records(doc.text, programs, fmt=self.fmt)
        return [
            Document(text="", id=f"{doc.id}/chunk_{k}", metadata={**record, **extra})
            for k, record in zip(sft_record_chunk_indices(programs), records, strict=True)
        ]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Write the records of every document and forward the documents; see the class docstring."""
        if data is None:
            return
        with self.writer as writer:
            for doc in data:
                self.stat_update(StatHints.total)
                with self.track_time():
                    records = self._records(doc)
                    if isinstance(records, str):
                        self.stat_update(records)
                    else:
                        for record in records:
                            writer.write(record, rank)
                        self.stat_update("records", value=len(records))
                yield doc


__all__ = ["SFTRecordWriter"]
