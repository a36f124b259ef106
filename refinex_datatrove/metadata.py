"""The data contract: everything refinex stores on a datatrove ``Document`` lives in ``doc.metadata["refinex"]``.

Schema (every key is always present once the dict exists; ``None`` when not applicable)::

    doc.metadata["refinex"] = {
        "rewrite": None | {...},            # the expert's rewrite, written by ExpertRefiner (see steps/expert.py)
        "program": None | {
            "render": "numbered_v1",       # RENDER_FORMAT the line numbers refer to
            "source": "distilled" | "model" | "labels" | ...,   # who wrote the program
            "n_lines": int,                 # lines of doc.text (text.split("\\n")) the program was written for
            "chunks": [                     # one entry per chunk, numbering local to the chunk
                {"start": int,              # 0-based index of the chunk's first document line
                 "n_lines": int,            # >= 1
                 "skipped": bool,           # an over-long line that is never edited
                 "program": str},           # program text: remove_lines / remove_str / keep_all calls
                ...
            ],
        },
        "exec": None | {
            "status": "executed" | "no_program" | "malformed_program" | "program_mismatch" | "generation_failed",
            "reason": str | None,           # why the program was not run (malformed / mismatch), else None
            "applied": {kind: n},           # applied calls: remove_lines, remove_str, keep_all
            "skipped": {reason: n},         # calls not applied, by SkipReason
            "invalid": {reason: n},         # invalid calls, by InvalidReason
            "lines_removed": int, "chars_removed": int,
            "chars_before": int, "chars_after": int,
        },
        "quality": None | {"words": int, "chars": int, "removed_frac": float | None},   # QualityFilter
        "original_text": str | None,        # text before execution (ProgramExecutor(keep_original=True))
    }

Counter dicts hold only non-zero counts. Writing a new program (:func:`write_program`) resets ``exec`` and
``quality`` to ``None``: they described the previous program.

For Parquet, pass ``schema=refinex_arrow_schema()`` to datatrove's ``ParquetWriter``: its schema is otherwise
inferred from the first document, which breaks as soon as a later document has (or lacks) a program.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

from refinex_datatrove.program import RENDER_FORMAT, Chunk, ChunkProgram, InvalidReason, SkipReason

if TYPE_CHECKING:
    import pyarrow as pa
    from datatrove.data import Document


META_KEY = "refinex"

APPLIED_KINDS = ("remove_lines", "remove_str", "keep_all")
"""The keys of ``exec["applied"]``."""


class ChunkRecord(TypedDict):
    start: int
    n_lines: int
    skipped: bool
    program: str


class ProgramRecord(TypedDict):
    render: str
    source: str
    n_lines: int
    chunks: list[ChunkRecord]


class ExecRecord(TypedDict):
    status: str
    reason: str | None
    applied: dict[str, int]
    skipped: dict[str, int]
    invalid: dict[str, int]
    lines_removed: int
    chars_removed: int
    chars_before: int
    chars_after: int


class QualityRecord(TypedDict):
    words: int
    chars: int
    removed_frac: float | None


class RefinexMetadata(TypedDict):
    rewrite: dict[str, Any] | None
    program: ProgramRecord | None
    exec: ExecRecord | None
    quality: QualityRecord | None
    original_text: str | None


STABLE_KEYS = ("rewrite", "program", "exec", "quality", "original_text")


class ExecStatus(StrEnum):
    EXECUTED = "executed"
    NO_PROGRAM = "no_program"
    MALFORMED_PROGRAM = "malformed_program"
    PROGRAM_MISMATCH = "program_mismatch"
    GENERATION_FAILED = "generation_failed"  # a chunk's program could not be generated: not executed


class MalformedReason(StrEnum):
    """Why ``metadata["refinex"]`` (or its ``program``) could not be read."""

    REFINEX_NOT_A_DICT = "refinex_not_a_dict"
    PROGRAM_NOT_A_DICT = "program_not_a_dict"
    MISSING_KEY = "missing_key"
    WRONG_TYPE = "wrong_type"  # e.g. "3" where an int is expected, a non-str program text
    BOOL_AS_INT = "bool_as_int"  # True/False where an int is expected
    NEGATIVE_NUMBER = "negative_number"
    EMPTY_CHUNK = "empty_chunk"  # a chunk with n_lines == 0
    CHUNKS_NOT_A_LIST = "chunks_not_a_list"
    CHUNK_NOT_A_DICT = "chunk_not_a_dict"
    NO_CHUNKS = "no_chunks"
    CHUNK_OUT_OF_RANGE = "chunk_out_of_range"  # a chunk ends past the program's n_lines
    UNKNOWN_RENDER = "unknown_render"  # numbered for another RENDER_FORMAT
    PROGRAM_MISMATCH = "program_mismatch"  # n_lines differs from the document's line count


class MalformedProgramMetadata(ValueError):
    """``metadata["refinex"]`` holds something that is not a valid program record.

    Attributes:
        reason: a :class:`MalformedReason`; ``str(exc)`` adds the details.
    """

    def __init__(self, reason: MalformedReason, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


def empty_refinex() -> dict[str, Any]:
    """A fresh ``metadata["refinex"]`` dict with every stable key set to ``None``."""
    return dict.fromkeys(STABLE_KEYS)


def get_refinex(doc: Document) -> dict[str, Any]:
    """``doc.metadata["refinex"]``, created if absent; missing stable keys are added as ``None``.

    Raises:
        MalformedProgramMetadata: ``refinex_not_a_dict`` when the key holds something other than a dict.
    """
    meta = doc.metadata.get(META_KEY)
    if meta is None:
        meta = doc.metadata[META_KEY] = empty_refinex()
        return meta
    if not isinstance(meta, dict):
        raise MalformedProgramMetadata(MalformedReason.REFINEX_NOT_A_DICT, f"got {type(meta).__name__}")
    for key in STABLE_KEYS:
        meta.setdefault(key, None)
    return meta


def _get(record: dict, key: str, where: str) -> Any:
    if key not in record:
        raise MalformedProgramMetadata(MalformedReason.MISSING_KEY, f"{where} has no {key!r}")
    return record[key]


def _count(record: dict, key: str, where: str) -> int:
    value = _get(record, key, where)
    if isinstance(value, bool):
        raise MalformedProgramMetadata(MalformedReason.BOOL_AS_INT, f"{where}[{key!r}] is {value!r}")
    if not isinstance(value, int):
        raise MalformedProgramMetadata(
            MalformedReason.WRONG_TYPE, f"{where}[{key!r}] is {type(value).__name__}, expected int"
        )
    if value < 0:
        raise MalformedProgramMetadata(MalformedReason.NEGATIVE_NUMBER, f"{where}[{key!r}] is {value}")
    return value


def read_chunk_programs(meta: dict[str, Any], n_doc_lines: int | None = None) -> list[ChunkProgram]:
    """Validate ``meta["program"]`` and turn it into :class:`ChunkProgram` objects for the executor.

    Args:
        meta: the ``metadata["refinex"]`` dict.
        n_doc_lines: the document's current line count (``len(text.split("\\n"))``); when given, a program
            written for another line count raises ``program_mismatch``.

    Raises:
        MalformedProgramMetadata: for anything malformed (wrong types, missing keys, negative numbers, bools
            used as ints, chunks that are not a list or run past ``n_lines``, another render format) and for
            a line-count mismatch. A missing program (``None``) is ``program_not_a_dict``: check for ``None``
            first if "no program" is a normal case.
    """
    program = meta.get("program")
    if not isinstance(program, dict):
        raise MalformedProgramMetadata(MalformedReason.PROGRAM_NOT_A_DICT, f"got {type(program).__name__}")
    render = _get(program, "render", "program")
    if render != RENDER_FORMAT:
        raise MalformedProgramMetadata(
            MalformedReason.UNKNOWN_RENDER,
            f"program was written for {render!r}, this executor reads {RENDER_FORMAT!r}",
        )
    n_lines = _count(program, "n_lines", "program")
    chunks = _get(program, "chunks", "program")
    if not isinstance(chunks, list):
        raise MalformedProgramMetadata(MalformedReason.CHUNKS_NOT_A_LIST, f"got {type(chunks).__name__}")
    if not chunks:
        raise MalformedProgramMetadata(MalformedReason.NO_CHUNKS, "a program has at least one chunk")
    out: list[ChunkProgram] = []
    for i, rec in enumerate(chunks):
        where = f"chunks[{i}]"
        if not isinstance(rec, dict):
            raise MalformedProgramMetadata(MalformedReason.CHUNK_NOT_A_DICT, f"{where} is {type(rec).__name__}")
        start = _count(rec, "start", where)
        size = _count(rec, "n_lines", where)
        if size == 0:
            raise MalformedProgramMetadata(MalformedReason.EMPTY_CHUNK, f"{where} has no lines")
        if start + size > n_lines:
            raise MalformedProgramMetadata(
                MalformedReason.CHUNK_OUT_OF_RANGE, f"{where} ends at line {start + size} of {n_lines}"
            )
        skipped = _get(rec, "skipped", where)
        if not isinstance(skipped, bool):
            raise MalformedProgramMetadata(MalformedReason.WRONG_TYPE, f"{where}['skipped'] is not a bool")
        text = _get(rec, "program", where)
        if not isinstance(text, str):
            raise MalformedProgramMetadata(
                MalformedReason.WRONG_TYPE, f"{where}['program'] is {type(text).__name__}, expected str"
            )
        out.append(ChunkProgram(Chunk(start, size, skipped), text))
    if n_doc_lines is not None and n_doc_lines != n_lines:
        raise MalformedProgramMetadata(
            MalformedReason.PROGRAM_MISMATCH, f"program written for {n_lines} lines, document has {n_doc_lines}"
        )
    return out


def write_program(doc: Document, chunk_programs: list[ChunkProgram], source: str, n_lines: int) -> ProgramRecord:
    """Store ``chunk_programs`` as ``doc.metadata["refinex"]["program"]``; resets ``exec`` and ``quality``.

    Args:
        doc: the document the programs were written for.
        chunk_programs: one program per chunk, numbering local to each chunk.
        source: who wrote them (``"distilled"``, ``"model"``, ``"labels"``...).
        n_lines: the line count of the text the programs were written for (usually ``len(doc.text.split("\\n"))``).

    Raises:
        ValueError: bad arguments (this is a programming error, not bad data).
    """
    if isinstance(n_lines, bool) or not isinstance(n_lines, int) or n_lines < 1:
        raise ValueError(f"n_lines must be an int >= 1, got {n_lines!r}")
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a non-empty str, got {source!r}")
    chunks: list[ChunkRecord] = []
    for cp in chunk_programs:
        c = cp.chunk
        if c.start < 0 or c.n_lines < 1 or c.start + c.n_lines > n_lines:
            raise ValueError(f"chunk {c} does not fit in {n_lines} lines")
        if not isinstance(cp.program, str):
            raise ValueError(f"program text must be str, got {type(cp.program).__name__}")
        chunks.append({"start": c.start, "n_lines": c.n_lines, "skipped": c.skipped, "program": cp.program})
    if not chunks:
        raise ValueError("chunk_programs is empty: a program has at least one chunk")
    record: ProgramRecord = {"render": RENDER_FORMAT, "source": source, "n_lines": n_lines, "chunks": chunks}
    meta = get_refinex(doc)
    meta["program"] = record
    meta["exec"] = None
    meta["quality"] = None
    return record


def exec_record(
    status: ExecStatus,
    *,
    chars_before: int,
    chars_after: int | None = None,
    reason: str | None = None,
    applied: dict[str, int] | None = None,
    skipped: dict[str, int] | None = None,
    invalid: dict[str, int] | None = None,
    lines_removed: int = 0,
) -> ExecRecord:
    """Build an ``exec`` record; ``chars_after`` defaults to ``chars_before`` (nothing removed)."""
    after = chars_before if chars_after is None else chars_after
    return {
        "status": status.value,
        "reason": reason,
        "applied": dict(applied or {}),
        "skipped": dict(skipped or {}),
        "invalid": dict(invalid or {}),
        "lines_removed": lines_removed,
        "chars_removed": chars_before - after,
        "chars_before": chars_before,
        "chars_after": after,
    }


def _counter_struct(pa: Any, keys: list[str]) -> pa.DataType:
    return pa.struct([pa.field(k, pa.int64()) for k in keys])


def refinex_arrow_type() -> pa.DataType:
    """The pyarrow struct type of ``metadata["refinex"]``.

    Counter dicts become structs with one nullable int64 field per known key (``null`` = 0), built from the
    core's :class:`SkipReason` and :class:`InvalidReason`, so present and absent values both convert and the
    columns read back as dicts.
    """
    import pyarrow as pa

    chunk = pa.struct(
        [
            pa.field("start", pa.int64()),
            pa.field("n_lines", pa.int64()),
            pa.field("skipped", pa.bool_()),
            pa.field("program", pa.string()),
        ]
    )
    program = pa.struct(
        [
            pa.field("render", pa.string()),
            pa.field("source", pa.string()),
            pa.field("n_lines", pa.int64()),
            pa.field("chunks", pa.list_(chunk)),
        ]
    )
    exec_ = pa.struct(
        [
            pa.field("status", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("applied", _counter_struct(pa, list(APPLIED_KINDS))),
            pa.field("skipped", _counter_struct(pa, [r.value for r in SkipReason])),
            pa.field("invalid", _counter_struct(pa, [r.value for r in InvalidReason])),
            pa.field("lines_removed", pa.int64()),
            pa.field("chars_removed", pa.int64()),
            pa.field("chars_before", pa.int64()),
            pa.field("chars_after", pa.int64()),
        ]
    )
    quality = pa.struct(
        [pa.field("words", pa.int64()), pa.field("chars", pa.int64()), pa.field("removed_frac", pa.float64())]
    )
    rewrite = pa.struct(
        [pa.field(k, pa.string()) for k in ("text", "reason", "status", "prompt", "prompt_sha256", "model")]
        + [pa.field("finish_reason", pa.string())]
        + [pa.field(k, pa.int64()) for k in ("prompt_tokens", "completion_tokens", "n_windows")]
        + [pa.field("error", pa.string())]
    )
    return pa.struct(
        [
            pa.field("rewrite", rewrite),
            pa.field("program", program),
            pa.field("exec", exec_),
            pa.field("quality", quality),
            pa.field("original_text", pa.string()),
        ]
    )


def refinex_arrow_schema(
    extra_metadata_fields: list[pa.Field] | None = None, *, expand_metadata: bool = False
) -> pa.Schema:
    """A pyarrow schema for datatrove's ``ParquetWriter(schema=...)`` that keeps ``metadata["refinex"]``.

    Args:
        extra_metadata_fields: other metadata keys to keep (e.g. ``pa.field("url", pa.string())``). Keys not in
            the schema are not written: list every metadata key you need.
        expand_metadata: match ``ParquetWriter(expand_metadata=True)``, where metadata keys are top-level
            columns.
    """
    import pyarrow as pa

    meta_fields = [pa.field(META_KEY, refinex_arrow_type()), *(extra_metadata_fields or [])]
    base = [pa.field("text", pa.string()), pa.field("id", pa.string())]
    if expand_metadata:
        return pa.schema(base + meta_fields)
    return pa.schema([*base, pa.field("metadata", pa.struct(meta_fields))])


__all__ = [
    "APPLIED_KINDS",
    "META_KEY",
    "STABLE_KEYS",
    "ChunkRecord",
    "ExecRecord",
    "ExecStatus",
    "MalformedProgramMetadata",
    "MalformedReason",
    "ProgramRecord",
    "QualityRecord",
    "RefinexMetadata",
    "empty_refinex",
    "exec_record",
    "get_refinex",
    "read_chunk_programs",
    "refinex_arrow_schema",
    "refinex_arrow_type",
    "write_program",
]
