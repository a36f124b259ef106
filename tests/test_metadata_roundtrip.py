"""Every step that writes ``metadata["refinex"]`` (and every field it writes) survives Parquet and JSONL output.

The documents come from the real steps: ExpertRefiner and RefineModelAnnotator with the ScriptedBackend test
double, ProgramDistiller, ProgramExecutor(keep_original=True) and QualityFilter. They are written with
datatrove's writers, read back, and compared with what was written, field by field.
"""

from __future__ import annotations

import copy

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

from refinex_datatrove import metadata as md
from refinex_datatrove.llm.base import FIRST_TOP_LOGPROBS, TOKEN_LOGPROBS, Generation
from refinex_datatrove.llm.scripted import ScriptedBackend, request_text
from refinex_datatrove.metadata import (
    META_KEY,
    OTHER_METADATA_KEY,
    ParquetMetadataAdapter,
    parquet_reader_adapter,
    record_from_parquet,
    refinex_arrow_schema,
    refinex_arrow_type,
)
from refinex_datatrove.recipes import keep_text_adapter
from refinex_datatrove.steps.annotate import RefineModelAnnotator
from refinex_datatrove.steps.distill import ProgramDistiller
from refinex_datatrove.steps.execute import ProgramExecutor
from refinex_datatrove.steps.expert import ExpertRefiner
from refinex_datatrove.steps.quality_filter import QualityFilter


NAV = "Home | News | Sport | Weather | Contact us"
BODY = [
    "The river flooded the lower town on Tuesday after three days of heavy rain in the hills.",
    "Volunteers filled sandbags through the night while the council opened two shelters.",
]
FOOTER = "Copyright 2024 Example Media. All rights reserved."


def _expert(request, params):
    """A scripted expert: FAILS on 'FAIL', invents a sentence on 'INVENT', else drops the NAV/footer lines."""
    doc = request_text(request).split("Input: [doc]", 1)[1].rsplit("[/doc]", 1)[0]
    if "FAIL" in doc:
        return Generation(text="", finish_reason="error", error="scripted expert outage")
    kept = [line for line in doc.split("\n") if line in BODY]
    if "INVENT" in doc:
        kept.append("A long sentence that the expert made up entirely, with no source in the document.")
    return "modification_reason: [doc]menu and footer[/doc]\nrefined_text: [doc]" + "\n".join(kept) + "[/doc]"


def _refiner(request, params):
    """A scripted refine model: removes NAV lines; FAIL fails the request, TRUNC is cut at max_tokens, DRASTIC
    deletes the whole chunk with likelihoods that favour keep_all() (the decision rule overrules it)."""
    lines = [row.split("] ", 1)[1] for row in request.prompt.split("\n") if row.startswith("[")]
    if any("DRASTIC" in line for line in lines):
        extra = {TOKEN_LOGPROBS: [-3.0, -0.2], FIRST_TOP_LOGPROBS: {"remove": -3.0, "keep": -0.1}}
        return Generation(text=f"remove_lines(1, {len(lines)})", finish_reason="stop", extra=extra)
    if any("FAIL" in line for line in lines):
        return Generation(text="", finish_reason="error", error="scripted refiner 400: bad request")
    calls = [f"remove_lines({i}, {i})" for i, line in enumerate(lines, 1) if line.startswith("NAV")]
    calls += [f'remove_str({i}, " Click here!")' for i, line in enumerate(lines, 1) if "Click here!" in line]
    if any("TRUNC" in line for line in lines):
        return Generation(text="\n".join(calls) + '\nremove_str(1, "cut', finish_reason="length", completion_tokens=7)
    return "\n".join(calls) or "keep_all()"


def _run(step, docs):
    return list(step.run(iter(docs), rank=0, world_size=1))


def step_documents() -> list[Document]:
    """Documents carrying everything the steps write, each as the last step left it."""
    text = "\n".join([NAV, *BODY, FOOTER])
    distilled = [
        Document(text=text, id="expert-ok", metadata={"url": "https://example.org/a", "page": {"lang": "en"}}),
        Document(text=text + "\nINVENT", id="expert-invent"),
        Document(text=text + "\nFAIL", id="expert-failed"),
    ]
    _run(ExpertRefiner(backend=ScriptedBackend(_expert), model="scripted-expert", batch_size=2), distilled)
    emitted = _run(ProgramDistiller(), distilled)  # the rejected ones keep their distill record
    assert [d.id for d in emitted] == ["expert-ok"]

    long_line = "x" * 300
    annotated = [
        Document(text=f"NAV top\n{BODY[0]} Click here!\n{BODY[1]}\nNAV bottom", id="model-ok",
                 metadata={"file_path": "in/a.jsonl", "tags": ["news", "flood"]}),
        Document(text=f"{BODY[0]}\nFAIL here\n{BODY[1]}", id="model-failed"),
        Document(text=f"NAV x\n{BODY[0]}\nTRUNC\n{long_line}\n   \n\n{BODY[1]}", id="model-mixed"),
        Document(text="NAV only\nNAV again", id="model-emptied"),
        Document(text=f"DRASTIC\n{BODY[0]}", id="model-overruled"),
        Document(text="", id="model-blank"),
    ]
    annotator = RefineModelAnnotator(model="scripted-refiner", backend=ScriptedBackend(_refiner), window=160)
    annotated = _run(annotator, annotated)
    no_program = Document(text="A document nobody annotated, with enough words to pass the filter.", id="bare")
    executed = _run(ProgramExecutor(keep_original=True), [*emitted, *annotated, no_program])
    _run(QualityFilter(min_words=5), executed)  # writes quality on every document, drops some
    return [*distilled, *annotated, no_program]


def _paths(value, type_, prefix=""):
    """Paths of the fields of ``type_`` (``a.b``, lists as ``a[]``) that hold a value other than None; a counter
    dict is one field."""
    if value is None:
        return set()
    out = {prefix} if prefix else set()
    if pa.types.is_struct(type_) and isinstance(value, dict):
        for f in type_:
            path = f"{prefix}.{f.name}" if prefix else f.name
            out |= {path} if md._is_counter(f) and value.get(f.name) is not None else _paths(value.get(f.name), f.type, path)
    elif pa.types.is_list(type_):
        for item in value:
            out |= _paths(item, type_.value_type, f"{prefix}[]")
    return out


def _all_paths(type_, prefix=""):
    out = {prefix} if prefix else set()
    if pa.types.is_struct(type_):
        for f in type_:
            path = f"{prefix}.{f.name}" if prefix else f.name
            out |= {path} if md._is_counter(f) else _all_paths(f.type, path)
    elif pa.types.is_list(type_):
        out |= _all_paths(type_.value_type, f"{prefix}[]")
    return out


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return step_documents()


def test_the_step_documents_fill_every_field_of_the_schema(documents):
    """Guards the round trips below against passing vacuously: each field holds a value in some document."""
    type_ = refinex_arrow_type()
    filled = set().union(*(_paths(d.metadata[META_KEY], type_) for d in documents))
    assert filled == _all_paths(type_)
    statuses = {c["status"] for d in documents if d.metadata[META_KEY]["program"] and d.id.startswith("model")
                for c in d.metadata[META_KEY]["program"]["chunks"]}
    assert statuses == {"ok", "failed", "truncated", "skipped", "blank", "overruled"}


@pytest.mark.parametrize("expand_metadata", [False, True])
def test_parquet_round_trip_keeps_every_metadata_field(tmp_path, documents, expand_metadata):
    written = copy.deepcopy([(d.text, d.id, d.metadata) for d in documents])
    schema = refinex_arrow_schema(expand_metadata=expand_metadata)
    adapter = ParquetMetadataAdapter(schema, expand_metadata=expand_metadata)
    writer = ParquetWriter(str(tmp_path), schema=schema, adapter=adapter, batch_size=2,
                           expand_metadata=expand_metadata)
    with writer:
        for doc in documents:
            writer.write(doc, rank=0)
    (path,) = tmp_path.glob("*.parquet")
    table = pq.read_table(path)
    assert table.schema.equals(schema)
    rows = table.to_pylist()
    # the refinex struct is typed: it is a column, not the JSON side column
    refinex_column = [r[META_KEY] if expand_metadata else r["metadata"][META_KEY] for r in rows]
    assert all(value is not None for value in refinex_column)
    records = [record_from_parquet(r, expand_metadata=expand_metadata) for r in rows]
    assert [(r["text"], r["id"], r["metadata"]) for r in records] == written
    assert "metadata_as_json_refinex" not in writer.stats.stats  # nothing of the contract fell back to JSON


def test_parquet_reader_adapter_gives_back_the_documents(tmp_path, documents):
    schema = refinex_arrow_schema()
    with ParquetWriter(str(tmp_path), schema=schema, adapter=ParquetMetadataAdapter(schema)) as writer:
        for doc in documents:
            writer.write(doc, rank=0)
    read = list(ParquetReader(str(tmp_path), adapter=parquet_reader_adapter).run())
    kept = [d for d in documents if d.text]  # datatrove's readers skip documents with an empty text
    assert len(kept) < len(documents)
    assert [(d.text, d.id) for d in read] == [(d.text, d.id) for d in kept]
    for got, want in zip(read, kept, strict=True):
        assert {k: v for k, v in got.metadata.items() if k != "file_path"} == {
            k: v for k, v in want.metadata.items() if k != "file_path"
        }
        if "file_path" in want.metadata:  # the reader adds its own file_path unless the document had one
            assert got.metadata["file_path"] == want.metadata["file_path"]


def test_jsonl_round_trip_keeps_every_metadata_field(tmp_path, documents):
    written = copy.deepcopy([(d.text, d.id, d.metadata) for d in documents])
    with JsonlWriter(str(tmp_path), compression=None, adapter=keep_text_adapter) as writer:
        for doc in documents:
            writer.write(doc, rank=0)
    (path,) = tmp_path.glob("*.jsonl")
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [(r["text"], r["id"], r["metadata"]) for r in records] == written


def test_values_the_schema_cannot_type_go_to_the_json_column_and_are_counted(tmp_path):
    doc = Document(text="", id="odd", metadata={
        META_KEY: {**md.empty_refinex(), "from_the_future": {"x": 1}},  # a key the schema does not have
        "score": 0.5,
        "nothing": None,
    })
    schema = refinex_arrow_schema([pa.field("score", pa.string())])  # declared with the wrong type
    writer = ParquetWriter(str(tmp_path), schema=schema, adapter=ParquetMetadataAdapter(schema))
    with writer:
        writer.write(doc, rank=0)
    (row,) = pq.read_table(next(tmp_path.glob("*.parquet"))).to_pylist()
    assert row["metadata"][META_KEY] is None and row["metadata"]["score"] is None
    assert orjson.loads(row["metadata"][OTHER_METADATA_KEY])["score"] == 0.5
    assert record_from_parquet(row) == {"text": "", "id": "odd", "metadata": doc.metadata}
    assert writer.stats["metadata_as_json_refinex"].total == 1
    assert writer.stats["metadata_as_json_score"].total == 1


def test_without_the_adapter_pyarrow_drops_unknown_keys(tmp_path):
    """Why the adapter exists: datatrove's default adapter with the schema loses a key the schema lacks."""
    doc = Document(text="t", id="d", metadata={META_KEY: {**md.empty_refinex(), "from_the_future": 1}})
    with ParquetWriter(str(tmp_path), schema=refinex_arrow_schema()) as writer:
        writer.write(doc, rank=0)
    (row,) = pq.read_table(next(tmp_path.glob("*.parquet"))).to_pylist()
    assert "from_the_future" not in row["metadata"][META_KEY]


TYPED = {
    "": md.RefinexMetadata,
    "rewrite": md.RewriteRecord,
    "program": md.ProgramRecord,
    "program.chunks[]": md.ChunkRecord,
    "distill": md.DistillRecord,
    "distill.ops": md.OpsRecord,
    "exec": md.ExecRecord,
    "quality": md.QualityRecord,
}


@pytest.mark.parametrize("where", list(TYPED))
def test_typed_dicts_and_the_arrow_type_have_the_same_fields(where):
    type_ = refinex_arrow_type()
    for part in [p for p in where.split(".") if p]:
        type_ = type_.field(part.removesuffix("[]")).type
        if part.endswith("[]"):
            type_ = type_.value_type
    assert [f.name for f in type_] == list(TYPED[where].__annotations__)
    if where == "":
        assert [f.name for f in type_] == list(md.STABLE_KEYS)
