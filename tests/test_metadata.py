from __future__ import annotations

import copy

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from datatrove.pipeline.writers import ParquetWriter

from refinex_datatrove.metadata import (
    META_KEY,
    STABLE_KEYS,
    ExecStatus,
    MalformedProgramMetadata,
    MalformedReason,
    exec_record,
    get_refinex,
    read_chunk_programs,
    refinex_arrow_schema,
    write_program,
)
from refinex_datatrove.program import RENDER_FORMAT, Chunk, ChunkProgram, InvalidReason, SkipReason

TEXT = "one\ntwo\nthree\nfour\nfive"
PROGRAMS = [ChunkProgram(Chunk(0, 3), "remove_lines(2, 2)"), ChunkProgram(Chunk(3, 2, skipped=True), "keep_all()")]


def _doc(text: str = TEXT, **metadata) -> Document:
    return Document(text=text, id="d", metadata=dict(metadata))


def _with_program() -> Document:
    doc = _doc()
    write_program(doc, PROGRAMS, source="labels", n_lines=5)
    return doc


def test_get_refinex_creates_every_stable_key():
    doc = _doc()
    meta = get_refinex(doc)
    assert doc.metadata[META_KEY] is meta
    assert set(meta) == set(STABLE_KEYS)
    assert all(v is None for v in meta.values())


def test_get_refinex_keeps_existing_content_and_fills_missing_keys():
    doc = _doc(refinex={"program": "x", "other": 1})
    meta = get_refinex(doc)
    assert meta["program"] == "x" and meta["other"] == 1
    assert meta["exec"] is None and meta["original_text"] is None


def test_get_refinex_rejects_non_dict():
    with pytest.raises(MalformedProgramMetadata) as e:
        get_refinex(_doc(refinex=["not", "a", "dict"]))
    assert e.value.reason is MalformedReason.REFINEX_NOT_A_DICT


def test_write_then_read_round_trips():
    doc = _with_program()
    record = doc.metadata[META_KEY]["program"]
    assert record == {
        "render": RENDER_FORMAT,
        "source": "labels",
        "model": None,
        "n_lines": 5,
        "chunks": [
            {"start": 0, "n_lines": 3, "skipped": False, "program": "remove_lines(2, 2)", "status": None,
             "error": None, "margin": None, "overruled_program": None},
            {"start": 3, "n_lines": 2, "skipped": True, "program": "keep_all()", "status": None, "error": None,
             "margin": None, "overruled_program": None},
        ],
    }
    assert read_chunk_programs(doc.metadata[META_KEY], n_doc_lines=5) == PROGRAMS


def test_write_program_resets_exec_and_quality():
    doc = _doc(refinex={"exec": {"status": "executed"}, "quality": {"words": 3}, "original_text": "keep me"})
    write_program(doc, PROGRAMS, source="model", n_lines=5)
    meta = doc.metadata[META_KEY]
    assert meta["exec"] is None and meta["quality"] is None
    assert meta["original_text"] == "keep me"


@pytest.mark.parametrize(
    ("programs", "n_lines", "source"),
    [
        (PROGRAMS, 0, "labels"),
        (PROGRAMS, True, "labels"),
        (PROGRAMS, 4, "labels"),  # second chunk ends at line 5
        ([], 5, "labels"),
        ([ChunkProgram(Chunk(-1, 2), "keep_all()")], 5, "labels"),
        ([ChunkProgram(Chunk(0, 5), 3)], 5, "labels"),
        (PROGRAMS, 5, ""),
    ],
)
def test_write_program_rejects_bad_arguments(programs, n_lines, source):
    with pytest.raises(ValueError):
        write_program(_doc(), programs, source=source, n_lines=n_lines)


def _set(path, value):
    def mutate(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path):
    def mutate(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


MALFORMED = [
    ("program_is_a_string", _set(["program"], "remove_lines(1, 2)"), MalformedReason.PROGRAM_NOT_A_DICT),
    ("program_is_none", _set(["program"], None), MalformedReason.PROGRAM_NOT_A_DICT),
    ("chunks_not_a_list", _set(["program", "chunks"], {"0": "keep_all()"}), MalformedReason.CHUNKS_NOT_A_LIST),
    ("no_chunks", _set(["program", "chunks"], []), MalformedReason.NO_CHUNKS),
    (
        "chunk_not_a_dict",
        _set(["program", "chunks", 0], [0, 3, False, "keep_all()"]),
        MalformedReason.CHUNK_NOT_A_DICT,
    ),
    ("start_as_string", _set(["program", "chunks", 0, "start"], "0"), MalformedReason.WRONG_TYPE),
    ("n_lines_as_float", _set(["program", "chunks", 0, "n_lines"], 3.0), MalformedReason.WRONG_TYPE),
    ("negative_start", _set(["program", "chunks", 0, "start"], -1), MalformedReason.NEGATIVE_NUMBER),
    ("bool_n_lines", _set(["program", "n_lines"], True), MalformedReason.BOOL_AS_INT),
    ("bool_chunk_start", _set(["program", "chunks", 1, "start"], False), MalformedReason.BOOL_AS_INT),
    (
        "program_text_not_str",
        _set(["program", "chunks", 0, "program"], ["remove_lines(2, 2)"]),
        MalformedReason.WRONG_TYPE,
    ),
    ("skipped_not_bool", _set(["program", "chunks", 0, "skipped"], 0), MalformedReason.WRONG_TYPE),
    ("missing_chunks", _delete(["program", "chunks"]), MalformedReason.MISSING_KEY),
    ("missing_program_text", _delete(["program", "chunks", 1, "program"]), MalformedReason.MISSING_KEY),
    ("empty_chunk", _set(["program", "chunks", 1, "n_lines"], 0), MalformedReason.EMPTY_CHUNK),
    ("chunk_past_end", _set(["program", "chunks", 1, "n_lines"], 3), MalformedReason.CHUNK_OUT_OF_RANGE),
    ("other_render", _set(["program", "render"], "numbered_v0"), MalformedReason.UNKNOWN_RENDER),
]


@pytest.mark.parametrize(("case", "mutate", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_read_chunk_programs_names_every_malformation(case, mutate, reason):
    meta = copy.deepcopy(_with_program().metadata[META_KEY])
    mutate(meta)
    with pytest.raises(MalformedProgramMetadata) as e:
        read_chunk_programs(meta, n_doc_lines=5)
    assert e.value.reason is reason
    assert reason.value in str(e.value)


@pytest.mark.parametrize("n_doc_lines", [4, 6])
def test_read_chunk_programs_line_count_mismatch(n_doc_lines):
    with pytest.raises(MalformedProgramMetadata) as e:
        read_chunk_programs(_with_program().metadata[META_KEY], n_doc_lines=n_doc_lines)
    assert e.value.reason is MalformedReason.PROGRAM_MISMATCH


def test_exec_record_defaults_to_nothing_removed():
    rec = exec_record(ExecStatus.NO_PROGRAM, chars_before=12)
    assert rec["status"] == "no_program"
    assert rec["chars_after"] == 12 and rec["chars_removed"] == 0
    rec = exec_record(ExecStatus.EXECUTED, chars_before=12, chars_after=5, skipped={"str_not_found": 1})
    assert rec["chars_removed"] == 7 and rec["skipped"] == {"str_not_found": 1}


def test_arrow_type_has_a_field_for_every_counter_key():
    refinex = refinex_arrow_schema().field("metadata").type.field(META_KEY).type
    exec_type = refinex.field("exec").type
    assert {f.name for f in exec_type.field("skipped").type} == {r.value for r in SkipReason}
    assert {f.name for f in exec_type.field("invalid").type} == {r.value for r in InvalidReason}
    assert {f.name for f in refinex} == set(STABLE_KEYS)


def _parquet_docs() -> list[Document]:
    plain = Document(text="no metadata at all", id="plain")
    other = Document(text=TEXT, id="other", metadata={"url": "http://example.org"})
    programmed = _with_program()
    executed = _with_program()
    meta = get_refinex(executed)
    meta["exec"] = exec_record(
        ExecStatus.EXECUTED,
        chars_before=len(TEXT),
        chars_after=len(TEXT) - 4,
        applied={"remove_lines": 1, "keep_all": 1},
        skipped={"str_not_found": 2},
        invalid={"syntax_error": 1},
        lines_removed=1,
    )
    meta["quality"] = {"words": 4, "chars": len(TEXT) - 4, "removed_frac": 4 / len(TEXT)}
    meta["original_text"] = TEXT
    executed.text = "one\nthree\nfour\nfive"
    return [plain, other, programmed, executed]


@pytest.mark.parametrize("expand_metadata", [False, True])
def test_parquet_writer_with_schema_handles_docs_with_and_without_programs(tmp_path, expand_metadata):
    docs = _parquet_docs()
    schema = refinex_arrow_schema([pa.field("url", pa.string())], expand_metadata=expand_metadata)
    # batch_size=1: every document is its own record batch against the same file schema
    with ParquetWriter(str(tmp_path), schema=schema, batch_size=1, expand_metadata=expand_metadata) as writer:
        for doc in docs:
            writer.write(doc, rank=0)
    (path,) = tmp_path.glob("*.parquet")
    rows = pq.read_table(path).to_pylist()
    assert [r["id"] for r in rows] == ["plain", "other", "d", "d"]
    metas = [r if expand_metadata else (r["metadata"] or {}) for r in rows]
    assert metas[0].get(META_KEY) is None
    assert metas[1]["url"] == "http://example.org" and metas[1][META_KEY] is None
    program = metas[2][META_KEY]["program"]
    assert program["chunks"][1] == {
        "start": 3, "n_lines": 2, "skipped": True, "program": "keep_all()", "status": None, "error": None,
        "margin": None, "overruled_program": None,
    }
    assert read_chunk_programs(metas[2][META_KEY], n_doc_lines=5) == PROGRAMS
    assert metas[2][META_KEY]["exec"] is None
    ex = metas[3][META_KEY]["exec"]
    assert ex["status"] == "executed" and ex["chars_removed"] == 4
    assert ex["applied"]["remove_lines"] == 1 and ex["applied"]["remove_str"] is None
    assert ex["skipped"]["str_not_found"] == 2 and ex["invalid"]["syntax_error"] == 1
    assert metas[3][META_KEY]["quality"]["removed_frac"] == pytest.approx(4 / len(TEXT))
    assert metas[3][META_KEY]["original_text"] == TEXT
