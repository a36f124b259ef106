"""The quickstart: the bundled demo corpus, and ``make demo``'s commands (``refinex refine`` with its HTML report,
then ``refinex eval``) run on a few demo documents with the tiny test model instead of the default model."""

from __future__ import annotations

import json
import os
import re
from html import unescape
from pathlib import Path

import pytest

from refinex_datatrove.metadata import META_KEY
from refinex_datatrove.program import is_deletion_of
from refinex_datatrove.train.wcxb import wcxb_split
from tests.jsonl_rows import read_jsonl_folder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "data" / "demo_web.jsonl"
PAGE_TYPES = {"article", "collection", "documentation", "forum", "listing", "product", "service"}


def _demo() -> list[dict]:
    return [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]


def _summary_value(printed: str, label: str) -> int:
    m = re.search(rf"^{re.escape(label)}: (\d+)", printed, re.MULTILINE)
    assert m, f"{label!r} missing from the summary:\n{printed}"
    return int(m.group(1))


def test_demo_corpus_is_labelled_dev_split_web_text():
    docs = _demo()
    assert len(docs) >= 32
    assert len({d["id"] for d in docs}) == len(docs)
    assert {d["page_type"] for d in docs} == PAGE_TYPES  # every page type is represented
    for d in docs:
        assert set(d) == {"id", "text", "url", "page_type", "source", "keep"}
        assert wcxb_split(d["id"]) == "dev"  # never trained on
        assert len(d["text"]) <= 2400 and d["url"].startswith("http")
        assert "web-content-extraction-benchmark" in d["source"]
        assert len(d["keep"]) == len(d["text"].split("\n"))
        assert set(d["keep"]) == {0, 1}  # something to keep and something to delete


def test_demo_corpus_excerpts_match_the_wcxb_pairs():
    pairs_path = Path(os.environ.get("REFINEX_WCXB_DIR", ROOT.parent / "shared" / "data" / "wcxb-dev"))
    pairs_path = pairs_path / "pairs.jsonl.gz"
    if not pairs_path.is_file():
        pytest.skip("wcxb-dev data not available")
    from refinex_datatrove.train.wcxb import iter_pairs, sample_dev_pairs

    demo = {d["id"]: d for d in _demo()}
    pairs = {p["id"]: p for p in iter_pairs(pairs_path, "dev") if p["id"] in demo}
    assert set(pairs) == set(demo)
    for doc_id, d in demo.items():
        lines = pairs[doc_id]["noisy"].split("\n")
        n = len(d["keep"])
        assert d["text"] == "\n".join(lines[:n])  # cut at a line boundary
        assert d["keep"] == pairs[doc_id]["keep"][:n]
        assert n == len(lines) or len(d["text"]) + 1 + len(lines[n]) > 2400  # the longest such excerpt
    assert not set(demo) & {p["id"] for p in sample_dev_pairs(pairs_path)}  # not the dev-score sample


def _refine(out: Path, model: str, *extra: str) -> list[str]:
    return [
        "refine", str(DEMO), str(out), "--model", model, "--backend", "transformers",
        "--backend-kwarg", "num_threads=1", "--tasks", "1", "--workers", "1", *extra,
    ]  # fmt: skip


def test_demo_commands_with_the_tiny_model(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from refinex_datatrove.cli import main
    from tests.tiny_model import build_tiny_model

    n = 3
    model = build_tiny_model(tmp_path / "tiny")
    out = tmp_path / "demo"
    # the tiny tokenizer spends many tokens on real web text: small windows stay within its 1,024 positions
    argv = _refine(out, model, "--limit", str(n), "--window", "300", "--max-new-tokens", "16", "--batch-size", "4")
    argv.append("--force")
    assert main(argv) == 0
    printed = capsys.readouterr().out

    refined_files = list((out / "refined").glob("*.jsonl.gz"))
    assert refined_files and (out / "logs" / "stats.json").is_file() and (out / "report.html").is_file()
    docs_in, docs_out = _summary_value(printed, "documents in"), _summary_value(printed, "documents out")
    excluded = _summary_value(printed, "documents excluded")
    assert docs_in == n and docs_in == docs_out + excluded
    removed = _summary_value(printed, "chars removed by programs")
    assert re.search(r"^calls applied: ", printed, re.MULTILINE)
    assert f"report: {out / 'report.html'}" in printed
    assert re.search(r"^wall time: [\d.]+ s", printed, re.MULTILINE)

    originals = {d["id"]: d["text"] for d in _demo()[:n]}
    refined = read_jsonl_folder(out / "refined")
    quality_excluded = read_jsonl_folder(out / "excluded") if (out / "excluded").exists() else []
    assert len(refined) == docs_out and len(refined) + len(quality_excluded) == n
    assert sum(len(originals[r["id"]]) - len(r.get("text", "")) for r in refined + quality_excluded) == removed
    for row in refined:
        assert is_deletion_of(originals[row["id"]], row["text"])
        rx = row["metadata"][META_KEY]
        assert rx["program"]["source"] == "model" and rx["exec"]["status"] == "executed"
        if row["text"] != originals[row["id"]]:  # the report's source of the original text
            assert rx["original_text"] == originals[row["id"]]

    html = (out / "report.html").read_text(encoding="utf-8")
    assert all(f'data-doc-id="{row["id"]}"' in html for row in refined)
    assert ('<del class="rx-del"' in html) == (removed > 0)

    # `make demo`'s scoring step on the same documents
    assert main(["eval", "--refined", str(out / "refined"), "--gold", str(DEMO), "--text-key", "text",
                 "--limit", str(n)]) == 0  # fmt: skip
    scored = capsys.readouterr().out
    assert f"{n} gold documents scored" in scored
    assert "keep-all" in scored and "gold" in scored

    # a rerun without --force skips the completed task and says so; with --force everything runs again
    (out / "report.html").unlink()
    stats_before = (out / "logs" / "stats.json").stat().st_mtime_ns
    assert main(argv[:-1]) == 0
    captured = capsys.readouterr()
    assert "--force" in captured.err and (out / "report.html").is_file()
    assert (out / "logs" / "stats.json").stat().st_mtime_ns == stats_before
    stale = out / "excluded" / "9_stale"
    stale.mkdir(parents=True)
    (stale / "00000.jsonl").write_text('{"id": "old", "text": "from an earlier run"}\n')
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "--force" not in captured.err and not stale.exists()
    assert _summary_value(captured.out, "documents in") == n
    assert (out / "logs" / "stats.json").stat().st_mtime_ns != stats_before


def _delete_first_line(request, params):
    return "remove_lines(1, 1)"


def test_refine_report_shows_deletions_and_no_report_keeps_records_lean(tmp_path, capsys, monkeypatch):
    """The report's struck-through spans, with a scripted backend standing in for the model (deterministic)."""
    from refinex_datatrove.cli import main
    from refinex_datatrove.llm.scripted import ScriptedBackend
    from refinex_datatrove.steps import annotate

    scripted = ScriptedBackend(_delete_first_line)
    monkeypatch.setattr(annotate, "make_refine_backend", lambda kind, info, kw=None: scripted)
    n = 4
    docs = {d["id"]: d for d in _demo()[:n]}
    out = tmp_path / "with"
    assert main(_refine(out, "scripted", "--limit", str(n), "--compression", "none")) == 0
    printed = capsys.readouterr().out
    assert _summary_value(printed, "documents in") == n
    assert re.search(r"^calls applied: remove_lines=\d+", printed, re.MULTILINE)

    rows = read_jsonl_folder(out / "refined")
    assert rows
    html = (out / "report.html").read_text(encoding="utf-8")
    for row in rows:
        original = docs[row["id"]]["text"]
        assert row["metadata"][META_KEY]["original_text"] == original
        assert is_deletion_of(original, row["text"]) and len(row["text"]) < len(original)
        first_line = original.split("\n")[0]
        section = html.split(f'data-doc-id="{row["id"]}"', 1)[1].split("</section>", 1)[0]
        struck = "".join(re.findall(r'<del class="rx-del"[^>]*>(.*?)</del>', section, re.DOTALL))
        assert unescape(first_line) in unescape(struck)  # the deleted first line is shown struck through

    lean = tmp_path / "without"
    assert main(_refine(lean, "scripted", "--limit", str(n), "--compression", "none", "--no-report")) == 0
    printed = capsys.readouterr().out
    assert "report:" not in printed and not (lean / "report.html").exists()
    lean_rows = read_jsonl_folder(lean / "refined")
    assert [r["text"] for r in lean_rows] == [r["text"] for r in rows]
    assert all("original_text" not in r["metadata"][META_KEY] or r["metadata"][META_KEY]["original_text"] is None
               for r in lean_rows)  # fmt: skip
