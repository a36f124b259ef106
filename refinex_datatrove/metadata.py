"""The data contract: everything refinex stores on a datatrove ``Document`` lives in ``doc.metadata["refinex"]``.

Schema (every key is always present once the dict exists; ``None`` when not applicable)::

    doc.metadata["refinex"] = {
        "rewrite": None | {                 # the expert's rewrite: ExpertRefiner (steps/expert.py)
            "text": str | None,             # the refined document; None unless status is "ok"
            "reason": str | None,           # the expert's reasons, windows joined by blank lines
            "status": "ok" | "truncated" | "unparseable" | "failed" | "empty_input",
            "prompt": str, "prompt_sha256": str,   # the prompt template's name and hash
            "model": str | None,            # the expert model's name
            "finish_reason": str | None,    # None when nothing was sent
            "prompt_tokens": int, "completion_tokens": int,
            "n_windows": int,               # windows sent to the expert
            "error": str | None,            # the first transport error
        },
        "program": None | {
            "render": "numbered_v1",       # RENDER_FORMAT the line numbers refer to
            "source": "distilled" | "model" | "labels" | ...,   # who wrote the program
            "model": str | None,            # the refine model's name (source "model"), else None
            "n_lines": int,                 # lines of doc.text (text.split("\\n")) the program was written for
            "chunks": [                     # one entry per chunk, numbering local to the chunk
                {"start": int,              # 0-based index of the chunk's first document line
                 "n_lines": int,            # >= 1
                 "skipped": bool,           # an over-long line that is never edited
                 "program": str,            # program text: remove_lines / remove_str / keep_all calls
                 "status": str | None,      # RefineModelAnnotator's ChunkStatus: "ok", "truncated", "empty",
                                            # "failed", "skipped", "blank", "overruled"; None when no model wrote it
                 "error": str | None,       # status "failed": the transport's error (<= 500 chars), else None
                 "margin": float | None,    # the decision rule's margin over keep_all() in nats (the model's
                                            # likelihoods; refine_model/decision.py), None when not scored
                 "overruled_program": str | None},  # status "overruled": the model's program the rule replaced
                                            # by keep_all() (kept, to be re-run), else None
                ...
            ],
        },
        "distill": None | {                 # ProgramDistiller (steps/distill.py)
            "status": "ok" | "rejected",
            "reason": str | None,           # the rejection reason, None when ok
            "detail": str,                  # what the rejection means for this document ("" when ok)
            "deleted_chars": int | None,    # what the programs delete (None when rejected)
            "lines_removed": int | None,
            "ops": None | {"remove_lines": int, "remove_str": int, "keep_all": int},   # calls by kind
            "window": int, "unit": str,     # the chunk window the programs were written for
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

Every record is built here (:func:`rewrite_record`, :func:`write_program`, :func:`distill_record`,
:func:`exec_record`, :func:`quality_record`); steps do not write dict literals of the contract. The ``exec``
counter dicts hold only non-zero counts. Writing a new program (:func:`write_program`) resets ``exec`` and
``quality`` to ``None``: they described the previous program.

Parquet: pass ``schema=refinex_arrow_schema()`` and ``adapter=ParquetMetadataAdapter(schema)`` to datatrove's
``ParquetWriter`` (``refinex_datatrove.recipes.make_writer`` does). The schema types every field above; its
schema is otherwise inferred from the first document, which breaks as soon as a later document has (or lacks) a
program. The adapter keeps what the schema cannot hold: metadata keys it does not declare (``url``,
``file_path``...) and any value that does not fit its type exactly (a key pyarrow would silently drop, a wrong
type) go, JSON-encoded, to ``metadata["other_metadata_json"]``; nothing is lost. :func:`record_from_parquet`
(or :func:`parquet_reader_adapter` for datatrove's ``ParquetReader``) turns a row back into the record the JSONL
writer would have written: ``exec`` counters without their ``null`` entries, the JSON keys merged back.
"""

from __future__ import annotations

import functools
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
    status: str | None
    error: str | None
    margin: float | None
    overruled_program: str | None


class ProgramRecord(TypedDict):
    render: str
    source: str
    model: str | None
    n_lines: int
    chunks: list[ChunkRecord]


class RewriteRecord(TypedDict):
    text: str | None
    reason: str | None
    status: str
    prompt: str
    prompt_sha256: str
    model: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    n_windows: int
    error: str | None


class OpsRecord(TypedDict):
    remove_lines: int
    remove_str: int
    keep_all: int


class DistillRecord(TypedDict):
    status: str
    reason: str | None
    detail: str
    deleted_chars: int | None
    lines_removed: int | None
    ops: OpsRecord | None
    window: int
    unit: str


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
    rewrite: RewriteRecord | None
    program: ProgramRecord | None
    distill: DistillRecord | None
    exec: ExecRecord | None
    quality: QualityRecord | None
    original_text: str | None


STABLE_KEYS = tuple(RefinexMetadata.__annotations__)
"""The keys of ``metadata["refinex"]``: ``rewrite``, ``program``, ``distill``, ``exec``, ``quality``,
``original_text``."""

OTHER_METADATA_KEY = "other_metadata_json"
"""Parquet only: the metadata column holding, JSON-encoded, what the schema cannot type (see the module doc)."""


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


def write_program(
    doc: Document,
    chunk_programs: list[ChunkProgram],
    source: str,
    n_lines: int,
    *,
    model: str | None = None,
    statuses: list[str] | None = None,
    errors: list[str | None] | None = None,
    margins: list[float | None] | None = None,
    overruled: list[str | None] | None = None,
) -> ProgramRecord:
    """Store ``chunk_programs`` as ``doc.metadata["refinex"]["program"]``; resets ``exec`` and ``quality``.

    Args:
        doc: the document the programs were written for.
        chunk_programs: one program per chunk, numbering local to each chunk.
        source: who wrote them (``"distilled"``, ``"model"``, ``"labels"``...).
        n_lines: the line count of the text the programs were written for (usually ``len(doc.text.split("\\n"))``).
        model: the name of the model that wrote them (``source="model"``).
        statuses: one chunk status per chunk (the annotator's ``ChunkStatus`` values); default ``None`` each.
        errors: one error text (or ``None``) per chunk; default ``None`` each.
        margins: one decision-rule margin (nats, or ``None``) per chunk; default ``None`` each.
        overruled: per chunk, the model's program the decision rule overruled (or ``None``); default ``None`` each.

    Raises:
        ValueError: bad arguments (this is a programming error, not bad data).
    """
    if isinstance(n_lines, bool) or not isinstance(n_lines, int) or n_lines < 1:
        raise ValueError(f"n_lines must be an int >= 1, got {n_lines!r}")
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a non-empty str, got {source!r}")
    if model is not None and not isinstance(model, str):
        raise ValueError(f"model must be a str or None, got {model!r}")
    n = len(chunk_programs)
    for name, values in (("statuses", statuses), ("errors", errors), ("overruled", overruled)):
        if values is not None and (len(values) != n or not all(v is None or isinstance(v, str) for v in values)):
            raise ValueError(f"{name} must hold one str or None per chunk program ({n}), got {values!r}")
    if margins is not None and (
        len(margins) != n
        or not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in margins)
    ):
        raise ValueError(f"margins must hold one number or None per chunk program ({n}), got {margins!r}")
    chunks: list[ChunkRecord] = []
    for i, cp in enumerate(chunk_programs):
        c = cp.chunk
        if c.start < 0 or c.n_lines < 1 or c.start + c.n_lines > n_lines:
            raise ValueError(f"chunk {c} does not fit in {n_lines} lines")
        if not isinstance(cp.program, str):
            raise ValueError(f"program text must be str, got {type(cp.program).__name__}")
        chunks.append({
            "start": c.start,
            "n_lines": c.n_lines,
            "skipped": c.skipped,
            "program": cp.program,
            "status": statuses[i] if statuses is not None else None,
            "error": errors[i] if errors is not None else None,
            "margin": float(margins[i]) if margins is not None and margins[i] is not None else None,
            "overruled_program": overruled[i] if overruled is not None else None,
        })
    if not chunks:
        raise ValueError("chunk_programs is empty: a program has at least one chunk")
    record: ProgramRecord = {
        "render": RENDER_FORMAT, "source": source, "model": model, "n_lines": n_lines, "chunks": chunks,
    }
    meta = get_refinex(doc)
    meta["program"] = record
    meta["exec"] = None
    meta["quality"] = None
    return record


def rewrite_record(
    *,
    text: str | None,
    reason: str | None,
    status: str,
    prompt: str,
    prompt_sha256: str,
    model: str | None,
    finish_reason: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    n_windows: int,
    error: str | None,
) -> RewriteRecord:
    """Build a ``rewrite`` record (the expert's rewrite of one document)."""
    return {
        "text": text,
        "reason": reason,
        "status": str(status),
        "prompt": prompt,
        "prompt_sha256": prompt_sha256,
        "model": model,
        "finish_reason": finish_reason,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "n_windows": n_windows,
        "error": error,
    }


def _unit_name(unit: Any) -> str:
    return unit if isinstance(unit, str) else getattr(unit, "__name__", "custom")


def distill_record(
    *,
    window: int,
    unit: Any,
    reason: str | None = None,
    detail: str = "",
    deleted_chars: int | None = None,
    lines_removed: int | None = None,
    ops: dict[str, int] | None = None,
) -> DistillRecord:
    """Build a ``distill`` record: ``status`` is ``"rejected"`` when ``reason`` is given, else ``"ok"``.

    Args:
        window: the chunk window the programs were (or would have been) written for.
        unit: the window unit: ``"chars"``, ``"words"`` or a callable (recorded by its ``__name__``).
        reason: the rejection reason (``None``: the document was distilled).
        detail: what the rejection means for this document.
        deleted_chars: characters the programs delete (accepted documents).
        lines_removed: document lines the programs delete whole (accepted documents).
        ops: calls by kind (``remove_lines``, ``remove_str``, ``keep_all``); missing kinds count 0.

    Raises:
        ValueError: ``ops`` with a kind outside :data:`APPLIED_KINDS`.
    """
    ops_record: OpsRecord | None = None
    if ops is not None:
        unknown = set(ops) - set(APPLIED_KINDS)
        if unknown:
            raise ValueError(f"unknown op kind(s) {sorted(unknown)}; known: {list(APPLIED_KINDS)}")
        ops_record = {"remove_lines": ops.get("remove_lines", 0), "remove_str": ops.get("remove_str", 0),
                      "keep_all": ops.get("keep_all", 0)}
    return {
        "status": "ok" if reason is None else "rejected",
        "reason": None if reason is None else str(reason),
        "detail": detail,
        "deleted_chars": deleted_chars,
        "lines_removed": lines_removed,
        "ops": ops_record,
        "window": window,
        "unit": _unit_name(unit),
    }


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


def quality_record(*, words: int, chars: int, removed_frac: float | None) -> QualityRecord:
    """Build a ``quality`` record (QualityFilter's measurements)."""
    return {"words": words, "chars": chars, "removed_frac": removed_frac}


COUNTER_FIELD = b"refinex_counter"
"""Arrow field metadata marking a counter struct: a dict holding only some of its keys (absent = 0)."""


def _counter_field(pa: Any, name: str, keys: list[str]) -> pa.Field:
    return pa.field(name, pa.struct([pa.field(k, pa.int64()) for k in keys]), metadata={COUNTER_FIELD: b"1"})


@functools.cache
def refinex_arrow_type() -> pa.DataType:
    """The pyarrow struct type of ``metadata["refinex"]``: one field for every key of the schema (module doc).

    Counter dicts become structs with one nullable int64 field per known key (``null`` = absent), built from the
    core's :class:`SkipReason` and :class:`InvalidReason` and marked with :data:`COUNTER_FIELD`, so present and
    absent values both convert; :func:`refinex_from_arrow` drops the ``null`` entries again.
    """
    import pyarrow as pa

    chunk = pa.struct(
        [
            pa.field("start", pa.int64()),
            pa.field("n_lines", pa.int64()),
            pa.field("skipped", pa.bool_()),
            pa.field("program", pa.string()),
            pa.field("status", pa.string()),
            pa.field("error", pa.string()),
            pa.field("margin", pa.float64()),
            pa.field("overruled_program", pa.string()),
        ]
    )
    program = pa.struct(
        [
            pa.field("render", pa.string()),
            pa.field("source", pa.string()),
            pa.field("model", pa.string()),
            pa.field("n_lines", pa.int64()),
            pa.field("chunks", pa.list_(chunk)),
        ]
    )
    distill = pa.struct(
        [
            pa.field("status", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("detail", pa.string()),
            pa.field("deleted_chars", pa.int64()),
            pa.field("lines_removed", pa.int64()),
            pa.field("ops", pa.struct([pa.field(k, pa.int64()) for k in APPLIED_KINDS])),
            pa.field("window", pa.int64()),
            pa.field("unit", pa.string()),
        ]
    )
    exec_ = pa.struct(
        [
            pa.field("status", pa.string()),
            pa.field("reason", pa.string()),
            _counter_field(pa, "applied", list(APPLIED_KINDS)),
            _counter_field(pa, "skipped", [r.value for r in SkipReason]),
            _counter_field(pa, "invalid", [r.value for r in InvalidReason]),
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
            pa.field("distill", distill),
            pa.field("exec", exec_),
            pa.field("quality", quality),
            pa.field("original_text", pa.string()),
        ]
    )


def refinex_arrow_schema(
    extra_metadata_fields: list[pa.Field] | None = None, *, expand_metadata: bool = False
) -> pa.Schema:
    """A pyarrow schema for datatrove's ``ParquetWriter(schema=...)`` that keeps ``metadata["refinex"]``.

    Besides ``refinex`` and ``extra_metadata_fields`` it holds the string field :data:`OTHER_METADATA_KEY`,
    which :class:`ParquetMetadataAdapter` fills with everything the typed fields cannot hold.

    Args:
        extra_metadata_fields: other metadata keys to type (e.g. ``pa.field("url", pa.string())``). Without
            :class:`ParquetMetadataAdapter`, keys not in the schema are silently not written by pyarrow.
        expand_metadata: match ``ParquetWriter(expand_metadata=True)``, where metadata keys are top-level
            columns.
    """
    import pyarrow as pa

    meta_fields = [
        pa.field(META_KEY, refinex_arrow_type()),
        *(extra_metadata_fields or []),
        pa.field(OTHER_METADATA_KEY, pa.string()),
    ]
    base = [pa.field("text", pa.string()), pa.field("id", pa.string())]
    if expand_metadata:
        return pa.schema(base + meta_fields)
    return pa.schema([*base, pa.field("metadata", pa.struct(meta_fields))])


def _is_counter(field: Any) -> bool:
    return bool(field.metadata) and field.metadata.get(COUNTER_FIELD) == b"1"


def fits_arrow_type(value: Any, type_: pa.DataType, *, partial: bool = False) -> bool:
    """Whether ``value`` converts to ``type_`` and reads back equal (after :func:`refinex_from_arrow`).

    A dict must hold every field of its struct (a missing key would read back as ``None``) and no other key
    (pyarrow drops unknown keys silently); a counter struct (``partial``) may hold a subset of its fields.
    ``None`` fits every type. Integers must be ints (not bools), floats ints or floats.
    """
    import pyarrow as pa

    if value is None:
        return True
    if pa.types.is_struct(type_):
        if not isinstance(value, dict):
            return False
        names = {f.name for f in type_}
        keys = set(value)
        if not keys <= names or (not partial and keys != names):
            return False
        return all(
            fits_arrow_type(value[f.name], f.type, partial=_is_counter(f)) and not (partial and value[f.name] is None)
            for f in type_
            if f.name in value
        )
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return isinstance(value, list) and all(fits_arrow_type(v, type_.value_type) for v in value)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return isinstance(value, str)
    if pa.types.is_boolean(type_):
        return isinstance(value, bool)
    if pa.types.is_integer(type_):
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if pa.types.is_floating(type_):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False


def _from_arrow(value: Any, type_: pa.DataType, partial: bool = False) -> Any:
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_struct(type_) and isinstance(value, dict):
        out = {}
        for f in type_:
            if f.name not in value:
                continue
            v = _from_arrow(value[f.name], f.type, _is_counter(f))
            if partial and v is None:
                continue
            out[f.name] = v
        return out
    if (pa.types.is_list(type_) or pa.types.is_large_list(type_)) and isinstance(value, list):
        return [_from_arrow(v, type_.value_type) for v in value]
    return value


def refinex_from_arrow(value: Any) -> Any:
    """A ``metadata["refinex"]`` value read from Parquet, as it was written: counter structs lose their
    ``null`` entries (``{"remove_lines": 1, "remove_str": None, ...}`` -> ``{"remove_lines": 1}``)."""
    return _from_arrow(value, refinex_arrow_type())


def _metadata_types(schema: pa.Schema, expand_metadata: bool) -> dict[str, pa.DataType]:
    if expand_metadata:
        return {f.name: f.type for f in schema if f.name not in ("text", "id", "media")}
    return {f.name: f.type for f in schema.field("metadata").type}


class ParquetMetadataAdapter:
    """A lossless adapter for datatrove's ``ParquetWriter``: ``ParquetWriter(schema=s, adapter=ParquetMetadataAdapter(s))``.

    Writes ``text`` (also when empty), ``id`` and the metadata keys the schema declares whose value fits their
    type exactly (:func:`fits_arrow_type`); every other metadata key, and a declared key whose value does not
    fit or is ``None``, goes JSON-encoded to :data:`OTHER_METADATA_KEY` (the schema must declare it, as
    :func:`refinex_arrow_schema` does). A declared value that did not fit its type is counted by the writer as
    ``metadata_as_json_<key>``. :func:`record_from_parquet` reverses it.

    Args:
        schema: the writer's schema.
        expand_metadata: the writer's ``expand_metadata``.
    """

    def __init__(self, schema: pa.Schema, expand_metadata: bool = False) -> None:
        types = _metadata_types(schema, expand_metadata)
        if OTHER_METADATA_KEY not in types:
            raise ValueError(f"the schema has no {OTHER_METADATA_KEY!r} metadata field: use refinex_arrow_schema()")
        self.schema = schema
        self.expand_metadata = expand_metadata
        self._types = types

    def __call__(self, writer: Any, document: Document) -> dict[str, Any]:
        import orjson

        try:  # JsonlWriter's own encoder of dates and numpy scalars: the same values, written the same way
            from datatrove.pipeline.writers.jsonl import _json_default
        except ImportError:  # an older datatrove: orjson's own types only
            _json_default = None

        columns: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for key, value in document.metadata.items():
            type_ = self._types.get(key) if key != OTHER_METADATA_KEY else None
            if type_ is not None and value is not None and fits_arrow_type(value, type_):
                columns[key] = value
                continue
            if type_ is not None and value is not None and hasattr(writer, "stat_update"):
                writer.stat_update(f"metadata_as_json_{key}")
            other[key] = value
        if other:
            columns[OTHER_METADATA_KEY] = orjson.dumps(other, default=_json_default).decode("utf-8")
        data: dict[str, Any] = {"text": document.text, "id": document.id}
        if self.expand_metadata:
            return data | columns
        data["metadata"] = columns
        return data


def record_from_parquet(row: dict[str, Any], *, expand_metadata: bool = False) -> dict[str, Any]:
    """A row of a Parquet file written with :class:`ParquetMetadataAdapter`, as the record datatrove's
    ``JsonlWriter`` (with a text-keeping adapter) would have written: ``{"text", "id", "metadata"}``.

    ``metadata["refinex"]`` goes through :func:`refinex_from_arrow`, :data:`OTHER_METADATA_KEY` is decoded and
    merged back, ``null`` metadata columns (keys the document did not have) are left out, and so is an empty
    ``metadata``. Other columns are kept as they are.

    Raises:
        ValueError: :data:`OTHER_METADATA_KEY` holds something that is not a JSON object.
    """
    import json

    row = dict(row)
    if expand_metadata:
        metadata = {k: row.pop(k) for k in list(row) if k not in ("text", "id", "media")}
    else:
        metadata = dict(row.pop("metadata", None) or {})
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        if key == OTHER_METADATA_KEY:
            decoded = json.loads(value)
            if not isinstance(decoded, dict):
                raise ValueError(f"{OTHER_METADATA_KEY} is not a JSON object: {value[:80]!r}")
            out.update(decoded)
        elif key == META_KEY:
            out[key] = refinex_from_arrow(value)
        else:
            out[key] = value
    record = row  # text, id and any other column
    if out:
        record["metadata"] = out
    return record


def parquet_reader_adapter(reader: Any, data: dict, path: str, id_in_file: int | str) -> dict:
    """An adapter for datatrove's ``ParquetReader(adapter=...)`` reading :class:`ParquetMetadataAdapter` output:
    documents get back the metadata they were written with (:func:`record_from_parquet`)."""
    return reader._default_adapter(record_from_parquet(data), path, id_in_file)


__all__ = [
    "APPLIED_KINDS",
    "COUNTER_FIELD",
    "META_KEY",
    "OTHER_METADATA_KEY",
    "STABLE_KEYS",
    "ChunkRecord",
    "DistillRecord",
    "ExecRecord",
    "ExecStatus",
    "MalformedProgramMetadata",
    "MalformedReason",
    "OpsRecord",
    "ParquetMetadataAdapter",
    "ProgramRecord",
    "QualityRecord",
    "RefinexMetadata",
    "RewriteRecord",
    "distill_record",
    "empty_refinex",
    "exec_record",
    "fits_arrow_type",
    "get_refinex",
    "parquet_reader_adapter",
    "quality_record",
    "read_chunk_programs",
    "record_from_parquet",
    "refinex_arrow_schema",
    "refinex_arrow_type",
    "refinex_from_arrow",
    "rewrite_record",
    "write_program",
]
