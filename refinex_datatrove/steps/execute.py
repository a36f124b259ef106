"""ProgramExecutor: run the stored per-chunk programs on each document (deterministic, deletion-only, CPU)."""

from __future__ import annotations

from enum import StrEnum

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger
from datatrove.utils.typeshelper import StatHints

from refinex_datatrove.metadata import (
    ExecStatus,
    MalformedProgramMetadata,
    MalformedReason,
    exec_record,
    get_refinex,
    read_chunk_programs,
)
from refinex_datatrove.program import ExecPolicy, execute_document
from refinex_datatrove.steps.failed import generation_failed


class ExecStat(StrEnum):
    """Stats of :class:`ProgramExecutor` besides ``total``/``forwarded``.

    Per document also one of ``executed``, ``no_program``, ``malformed_program`` (plus
    ``malformed_program_<reason>``) or ``program_mismatch``, and per executed document ``applied_<kind>``,
    ``skipped_<reason>`` and ``invalid_<reason>`` with the number of calls as value.
    """

    ALREADY_EXECUTED = "already_executed"
    CHARS_REMOVED = "chars_removed"
    LINES_REMOVED = "lines_removed"
    DOCS_CHANGED = "docs_changed"
    DOCS_UNTOUCHED = "docs_untouched"


class ProgramExecutor(PipelineStep):
    """Apply the programs in ``metadata["refinex"]["program"]`` to ``doc.text``.

    Reads ``doc.metadata["refinex"]["program"]``. Writes ``doc.text``, ``doc.metadata["refinex"]["exec"]`` and,
    with ``keep_original=True``, ``doc.metadata["refinex"]["original_text"]`` (see :mod:`refinex_datatrove.metadata`).

    Every document is forwarded; this step never drops (``QualityFilter`` does). A document whose program has a
    chunk with status ``failed`` (the refine model could not answer) is not executed (``generation_failed``: no
    call counts as applied). A document without a program,
    with malformed program metadata, or whose line count differs from the program's passes with its text
    unchanged and a named stat (``no_program``, ``malformed_program_<reason>``, ``program_mismatch``). A document
    whose ``exec`` status is already ``executed`` is not executed twice (``already_executed``).

    Args:
        policy: what to do with chunks holding invalid calls (default: skip only the invalid calls).
        keep_original: store the text before execution in ``original_text`` when the program changed it (a
            document the program emptied keeps it whatever this says).
    """

    name = "🧹 RefineX execute"
    type = "✂️ - FORMAT"

    def __init__(self, *, policy: ExecPolicy | None = None, keep_original: bool = False) -> None:
        super().__init__()
        if policy is not None and not isinstance(policy, ExecPolicy):
            raise TypeError(f"policy must be an ExecPolicy, got {type(policy).__name__}")
        self.policy = policy or ExecPolicy()
        self.keep_original = keep_original

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update(StatHints.total)
            with self.track_time():
                changed = self._execute(doc)
            self.stat_update(ExecStat.DOCS_CHANGED if changed else ExecStat.DOCS_UNTOUCHED)
            self.stat_update(StatHints.forwarded)
            self.update_doc_stats(doc)
            yield doc

    def _execute(self, doc: Document) -> bool:
        """Execute ``doc``'s program in place; returns whether the text changed."""
        text = doc.text
        try:
            meta = get_refinex(doc)
        except MalformedProgramMetadata as e:  # nowhere to record an exec status
            self._malformed(doc, e)
            return False
        if meta["program"] is None:
            self.stat_update(ExecStatus.NO_PROGRAM)
            meta["exec"] = exec_record(ExecStatus.NO_PROGRAM, chars_before=len(text))
            return False
        previous = meta["exec"]
        if isinstance(previous, dict) and previous.get("status") == ExecStatus.EXECUTED:
            self.stat_update(ExecStat.ALREADY_EXECUTED)
            return False
        if generation_failed(meta):  # no program for some chunk: the document is not refined, keep_all is no call
            self.stat_update(ExecStatus.GENERATION_FAILED)
            meta["exec"] = exec_record(ExecStatus.GENERATION_FAILED, chars_before=len(text),
                                       reason="a chunk's program could not be generated (chunk status 'failed')")
            return False
        try:
            programs = read_chunk_programs(meta, n_doc_lines=text.count("\n") + 1)
        except MalformedProgramMetadata as e:
            if e.reason is MalformedReason.PROGRAM_MISMATCH:  # the text changed since the program was written
                status = ExecStatus.PROGRAM_MISMATCH
                self.stat_update(status)
            else:
                status = ExecStatus.MALFORMED_PROGRAM
                self._malformed(doc, e)
            meta["exec"] = exec_record(status, chars_before=len(text), reason=str(e))
            return False

        result = execute_document(text, programs, self.policy)
        self.stat_update(ExecStatus.EXECUTED)
        for prefix, counts in (("applied", result.applied), ("skipped", result.skipped), ("invalid", result.invalid)):
            for key, n in counts.items():
                if n:
                    self.stat_update(f"{prefix}_{key}", value=n)
        self.stat_update(ExecStat.CHARS_REMOVED, value=result.chars_removed)
        self.stat_update(ExecStat.LINES_REMOVED, value=result.lines_removed)
        meta["exec"] = exec_record(
            ExecStatus.EXECUTED,
            chars_before=len(text),
            chars_after=len(result.text),
            applied=result.applied,
            skipped=result.skipped,
            invalid=result.invalid,
            lines_removed=result.lines_removed,
        )
        if result.text == text:
            return False
        if (self.keep_original or not result.text.strip()) and meta["original_text"] is None:
            meta["original_text"] = text  # an emptied document keeps it anyway: its exclusion can be audited
        doc.text = result.text
        return True

    def _malformed(self, doc: Document, error: MalformedProgramMetadata) -> None:
        self.stat_update(ExecStatus.MALFORMED_PROGRAM, f"{ExecStatus.MALFORMED_PROGRAM}_{error.reason}")
        logger.debug(f"document {doc.id!r}: malformed refinex metadata ({error}); text left unchanged")
