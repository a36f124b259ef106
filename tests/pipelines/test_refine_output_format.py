"""``refinex refine --output-format jsonl|parquet``: the same documents and every metadata field in both, and the
report and ``refinex eval`` read either.

The refine model is a real local HTTP endpoint (tests/fake_openai_server.py) scripted to delete the lines that
start with NAV, so both runs get the same programs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from refinex_datatrove.cli import main as cli_main
from refinex_datatrove.files import iter_records
from refinex_datatrove.metadata import META_KEY, OTHER_METADATA_KEY, STABLE_KEYS
from refinex_datatrove.cli.refine import report_docs
from tests.fake_openai_server import FakeOpenAIServer
from tests.jsonl_rows import read_jsonl_folder
from tests.resilience.scripted_models import nav_endpoint_script


MODEL = "fake-refiner"
BODY = [
    "The city council approved the new river bridge on Monday evening after a long debate.",
    "Work starts in spring and should take three years, the mayor told the press on Tuesday.",
]


_script = nav_endpoint_script


def _inputs(folder: Path) -> list[dict]:
    docs = [
        {"id": f"d{i}", "text": "\n".join([f"NAV Home | News {i}", *BODY, "NAV Share | Print"]),
         "url": f"https://example.org/{i}", "crawl": {"year": 2024, "tags": ["news"]}}
        for i in range(3)
    ]
    docs.append({"id": "clean", "text": "\n".join(BODY), "url": None})
    docs.append({"id": "all-nav", "text": "NAV a\nNAV b"})  # emptied: excluded by the quality filter
    folder.mkdir(parents=True)
    (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return docs


def _refine(inputs: Path, out: Path, url: str, *extra: str) -> None:
    rc = cli_main([
        "refine", str(inputs / "docs.jsonl"), str(out), "--backend", "endpoint", "--base-url", url,
        "--model", MODEL, "--min-words", "3", "--compression", "none", "--progress", "0",
        "--backend-kwarg", "api_key_env=null", "--backend-kwarg", "timeout=5",
        # the decision rule off: its document guard would keep all-nav, whose emptying these tests follow
        "--overrule-margin", "off", *extra,
    ])
    assert rc == 0


def _gold(path: Path, docs: list[dict]) -> None:
    rows = [{"id": d["id"], "noisy": d["text"], "keep": [0 if line.startswith("NAV") else 1
                                                          for line in d["text"].split("\n")]} for d in docs]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("output-format")
    docs = _inputs(tmp / "in")
    with FakeOpenAIServer(script=_script, model=MODEL) as server:
        _refine(tmp / "in", tmp / "jsonl", server.url)
        _refine(tmp / "in", tmp / "parquet", server.url, "--output-format", "parquet")
    return tmp, docs


def _by_id(records):
    return sorted(records, key=lambda r: r["id"])


def test_parquet_output_holds_the_same_records_as_jsonl(runs):
    tmp, docs = runs
    assert not list((tmp / "parquet" / "refined").rglob("*.jsonl*"))
    (path,) = (tmp / "parquet" / "refined").glob("*.parquet")
    rows = pq.read_table(path).to_pylist()
    assert {r["id"] for r in rows} == {"d0", "d1", "d2", "clean"}
    # metadata["refinex"] is a typed struct; the other keys (url, crawl, file_path) are in the JSON column
    assert all(r["metadata"][META_KEY]["program"]["model"] == MODEL for r in rows)
    assert {k for r in rows for k in json.loads(r["metadata"][OTHER_METADATA_KEY])} == {"url", "crawl", "file_path"}

    from_jsonl = _by_id(read_jsonl_folder(tmp / "jsonl" / "refined"))
    from_parquet = _by_id(rec for _, _, rec in iter_records(str(tmp / "parquet" / "refined")))
    assert from_parquet == from_jsonl  # text, id and every metadata field, equal
    for rec in from_parquet:
        rx = rec["metadata"][META_KEY]
        assert list(rx) == list(STABLE_KEYS)
        assert rx["exec"]["status"] == "executed" and rx["quality"]["words"] > 0
        assert all(set(c) == {"start", "n_lines", "skipped", "program", "status", "error", "margin", "overruled_program"}
                   for c in rx["program"]["chunks"])
    originals = {d["id"]: d for d in docs}
    assert {r["id"]: r["metadata"].get("crawl") for r in from_parquet} == {
        i: originals[i].get("crawl") for i in ("d0", "d1", "d2", "clean")
    }
    assert next(r for r in from_parquet if r["id"] == "clean")["metadata"]["url"] is None  # a null is kept too
    # documents in = documents out + documents excluded, in either format
    excluded = read_jsonl_folder(tmp / "parquet" / "excluded")
    assert len(from_parquet) + len(excluded) == len(docs)


def test_report_reads_parquet_output(runs):
    tmp, _ = runs
    assert (tmp / "parquet" / "report.html").is_file()
    jsonl_docs, parquet_docs = list(report_docs(tmp / "jsonl")), list(report_docs(tmp / "parquet"))
    assert len(parquet_docs) == 5  # 4 refined + the emptied one the quality filter excluded
    assert _by_id(parquet_docs) == _by_id(jsonl_docs)
    changed = [d for d in parquet_docs if d["refined"] != d["text"]]  # the original text came from the metadata
    assert {d["id"] for d in changed} == {"d0", "d1", "d2", "all-nav"}


def test_eval_and_report_commands_read_parquet_output(runs, capsys):
    tmp, docs = runs
    _gold(tmp / "gold.jsonl", docs)
    figures = {}
    for fmt in ("jsonl", "parquet"):
        out = tmp / f"eval-{fmt}.json"
        assert cli_main(["eval", "--refined", str(tmp / fmt / "refined"), "--gold", str(tmp / "gold.jsonl"),
                         "--baselines", "", "--json", str(out)]) == 0
        figures[fmt] = json.loads(out.read_text())
        assert cli_main(["report", "--input", str(tmp / fmt / "refined"), "--out", str(tmp / f"{fmt}.html")]) == 0
    printed = capsys.readouterr().out
    assert "4 refined records read" in printed
    assert figures["parquet"]["refined_input"] == figures["jsonl"]["refined_input"]
    assert figures["parquet"]["methods"] == figures["jsonl"]["methods"]
    assert figures["parquet"]["methods"]["ours"]["corpus"]["docs"] == len(docs)


def test_a_parquet_reader_built_from_the_config_gives_back_the_written_metadata(runs):
    """Parquet output fed to another pipeline (``reader.format: parquet``) carries the metadata it was written
    with, as the JSONL output does."""
    from refinex_datatrove.recipes import make_reader

    tmp, _ = runs
    reader = make_reader({"format": "parquet", "data_folder": str(tmp / "parquet" / "refined")})
    read = _by_id({"text": d.text, "id": d.id, "metadata": d.metadata} for d in reader.run())
    assert read == _by_id(read_jsonl_folder(tmp / "jsonl" / "refined"))
