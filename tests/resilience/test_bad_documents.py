"""Bad documents through the refine pipeline (LocalPipelineExecutor, ScriptedBackend).

Empty text, a 10 MB single line, CRLF and lone ``\\r``, NUL bytes, lone surrogates, bytes that are not UTF-8,
missing text or id, malformed ``metadata["refinex"]``, malformed JSON lines: every input record is refined,
passed through unchanged, or excluded with a named stat, and

    records in (non-blank input lines) == documents out + documents excluded

checked from the files the run wrote.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from refinex_datatrove.llm.scripted import ScriptedBackend
from refinex_datatrove.metadata import META_KEY
from refinex_datatrove.program import is_deletion_of
from refinex_datatrove.steps.guard import GUARD_KEY, GuardedJsonlReader, ReadStat
from tests.jsonl_rows import read_jsonl_folder
from tests.resilience.scripted_models import expected_nav_removed, nav_remover


os.environ.setdefault("HF_HUB_OFFLINE", "1")

BODY = "The council approved a new water plant for the river district on Monday after a long debate."
HUGE = "word " * 2_000_000  # 10 MB, one line: a skipped chunk, never sent, never edited

GOOD = [  # (record, fate): fate "refined" = expected_nav_removed(text); "unchanged"; "dropped_<reason>"
    ({"id": "nav", "text": f"NAV Home | News\n{BODY}\nNAV Share [ad]\n{BODY} [ad]"}, "refined"),
    ({"id": "crlf", "text": f"NAV Home\r\n{BODY}\r\n{BODY}\r\nNAV footer\r\n"}, "refined"),
    ({"id": "lone_cr", "text": f"NAV a\rstill the nav line\n{BODY}\rsame line\n{BODY}"}, "refined"),
    ({"id": "nul", "text": f"NAV \x00 menu\n{BODY}\x00\n\x00{BODY}"}, "refined"),
    ({"id": "seps", "text": f"NAV x\u2028y\n{BODY}\u2029\x0b\x0c\x1c\x85 {BODY}"}, "refined"),
    ({"id": "huge", "text": HUGE}, "unchanged"),
    ({"id": "huge_nav", "text": f"NAV menu\n{HUGE}\n{BODY}"}, "refined"),
    ({"id": "blank", "text": "   \n\t\n "}, "dropped_refinex_empty"),
    # the decision rule's document guard keeps it from being emptied; the quality filter drops it as too short
    ({"id": "all_nav", "text": "NAV a\nNAV b"}, "dropped_refinex_min_words"),
    ({"id": "short", "text": "NAV menu\nhello there"}, "dropped_refinex_min_words"),
    ({"id": "mostly_nav", "text": "\n".join(["NAV " + "menu " * 20] * 60 + [BODY])}, "dropped_refinex_removed_frac"),
    ({"text": f"no id\n{BODY}"}, "refined"),
    ({"id": 7, "text": f"int id\n{BODY}"}, "refined"),
    ({"id": "meta_str", "text": BODY, "metadata": "not a dict"}, "refined"),
    ({"id": "meta_list", "text": BODY, "metadata": [1, 2]}, "refined"),
    ({"id": "prog_str", "text": f"NAV x\n{BODY}", "metadata": {META_KEY: {"program": "not a dict"}}}, "refined"),
    ({"id": "prog_bad", "text": f"NAV x\n{BODY}",
      "metadata": {META_KEY: {"program": {"render": "numbered_v1", "chunks": 5}, "exec": {"status": "executed"}}}},
     "refined"),
    # metadata["refinex"] that is not a dict: the annotator may replace it (refined) or pass the document on
    ({"id": "refinex_str", "text": f"NAV x\n{BODY}", "metadata": {META_KEY: "garbage"}}, "refined_or_unchanged"),
    ({"id": "refinex_list", "text": f"NAV x\n{BODY}", "metadata": {META_KEY: [1]}}, "refined_or_unchanged"),
]
BAD_LINES = [  # excluded by the reader
    (b'{"id": "empty", "text": ""}', ReadStat.EMPTY_TEXT),
    (b'{"id": "sur", "text": "lone \\udc80 surrogate and more words to pass the filter"}', ReadStat.UNSUPPORTED_JSON),
    (b'{"id": "latin", "text": "caf\xe9 au lait"}', ReadStat.BAD_ENCODING),
    (b'{"id": "notext", "body": "x"}', ReadStat.MISSING_TEXT),
    (b'{"id": "numtext", "text": 5}', ReadStat.TEXT_NOT_A_STRING),
    (b'{"id": "cut", "text": "trunc', ReadStat.BAD_JSON),
    (b"[1, 2]", ReadStat.NOT_AN_OBJECT),
]


def write_inputs(folder: Path) -> int:
    """Two input files mixing good records, bad lines and blank lines; returns the number of records."""
    folder.mkdir(parents=True)
    lines = [json.dumps(r).encode() for r, _ in GOOD] + [raw for raw, _ in BAD_LINES]
    half = len(lines) // 2
    (folder / "a.jsonl").write_bytes(b"\n".join(lines[:half]) + b"\n\n")
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(b"\r\n".join(lines[half:]) + b"\r\n"))
    return len(lines)


def refine_config(tmp_path: Path) -> dict:
    return {
        "executor": {"tasks": 2, "workers": 1, "logging_dir": str(tmp_path / "logs")},
        "reader": {"format": "jsonl", "data_folder": str(tmp_path / "in"), "glob_pattern": "*.jsonl*"},
        "filters": dict.fromkeys(["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"], False),
        "annotate": {"model": "scripted", "window": 2_000, "batch_size": 4},
        "output": {"folder": str(tmp_path / "out"), "excluded": str(tmp_path / "excluded"), "compression": "gzip"},
    }


def build(config: dict, guard: bool) -> list:
    from refinex_datatrove.recipes import build_refine_pipeline

    steps = build_refine_pipeline(config, backend=ScriptedBackend(nav_remover))
    if guard and not isinstance(steps[0], GuardedJsonlReader):
        from datatrove.pipeline.writers import JsonlWriter

        reader = config["reader"]
        steps[0] = GuardedJsonlReader(
            reader["data_folder"], glob_pattern=reader["glob_pattern"],
            exclusion_writer=JsonlWriter(f"{config['output']['excluded']}/0_read"),
        )
    return steps


def test_refine_pipeline_reads_through_the_guard(tmp_path):
    """The refine pipeline's JSONL reader must be the guarded one: datatrove's JsonlReader loses records silently
    (one-line change in ``refinex_datatrove.recipes.make_reader``)."""
    steps = build(refine_config(tmp_path), guard=False)
    assert isinstance(steps[0], GuardedJsonlReader)


def test_every_bad_document_is_refined_passed_or_excluded_with_a_named_stat(tmp_path):
    from datatrove.executor import LocalPipelineExecutor

    n_records = write_inputs(tmp_path / "in")
    config = refine_config(tmp_path)
    LocalPipelineExecutor(build(config, guard=True), tasks=2, workers=1, logging_dir=config["executor"]["logging_dir"]
                          ).run()

    out = read_jsonl_folder(tmp_path / "out")
    excluded = read_jsonl_folder(tmp_path / "excluded")
    assert len(out) + len(excluded) == n_records
    ids = [r["id"] for r in out] + [r["id"] for r in excluded]
    assert len(set(ids)) == len(ids)

    # reader exclusions: one per bad line, with its reason
    read_ex = [r for r in excluded if GUARD_KEY in r.get("metadata", {})]
    assert sorted(r["metadata"][GUARD_KEY]["reason"] for r in read_ex) == sorted(r.value for _, r in BAD_LINES)

    # every good record: its fate
    by_text_start = {}
    for row in out + [r for r in excluded if GUARD_KEY not in r.get("metadata", {})]:
        by_text_start.setdefault(row["id"], row)
    for i, (record, fate) in enumerate(GOOD):
        doc_id = str(record["id"]) if "id" in record else next(k for k in by_text_start if k.endswith(f"/{i}"))
        row = by_text_start[doc_id]
        original = record["text"]
        text = row.get("text", "")  # datatrove's writers drop falsy fields: an emptied text has no "text" key
        assert is_deletion_of(original, text), doc_id
        if fate == "refined":
            assert row in out and text == expected_nav_removed(original), doc_id
        elif fate == "unchanged":
            assert row in out and text == original, doc_id
        elif fate == "refined_or_unchanged":
            assert row in out and text in (original, expected_nav_removed(original)), doc_id
        else:
            assert row["metadata"]["filter_reason"] == fate.removeprefix("dropped_"), doc_id

    stats = json.loads((tmp_path / "logs" / "stats.json").read_text())
    reader_stats = next(s["stats"] for s in stats if "guarded" in s["name"])
    total = lambda v: v["total"] if isinstance(v, dict) else v  # noqa: E731 - stats.json stores bare counts as ints
    assert total(reader_stats[ReadStat.EXCLUDED]) == len(BAD_LINES)
    assert total(reader_stats["documents"]) == len(GOOD)


@pytest.mark.parametrize("bad", ["garbage", [1], 3])
def test_annotator_survives_refinex_metadata_that_is_not_a_dict(bad):
    """A document whose ``metadata["refinex"]`` is not a dict must not stop the task (today: MalformedProgramMetadata
    from ``store_annotations`` -> ``write_program`` -> ``get_refinex``, mid-shard)."""
    from datatrove.data import Document

    from refinex_datatrove.steps.annotate import RefineModelAnnotator

    docs = [Document(text=f"NAV x\n{BODY}", id="bad", metadata={META_KEY: bad}),
            Document(text=f"NAV y\n{BODY}", id="good")]
    step = RefineModelAnnotator(model="scripted", backend=ScriptedBackend(nav_remover), window=2_000)
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == ["bad", "good"]
    assert isinstance(out[1].metadata[META_KEY]["program"], dict)
