from __future__ import annotations

import json

import pytest

from refinex_datatrove.eval.report import attribute_calls, load_stats, render_report, report_doc, write_report
from refinex_datatrove.program import Chunk, ChunkProgram, ExecPolicy
from tests.eval.report_helpers import HOSTILE_ID, HOSTILE_TEXT, hostile_doc, program, walk


TEXT = "Nav | Home\nKeep this line.\nAd: buy now! Keep the rest.\nFooter 1\nFooter 2"
#       0..10 (+\n) 11..26 (+\n)    27..54 (+\n)                 55..63 (+\n) 64..72


def test_attribute_calls_by_hand():
    chunks = [
        ChunkProgram(Chunk(0, 3), 'remove_lines(1, 1)\nremove_str(3, "Ad: buy now! ")\nremove_lines(9, 9)'),
        ChunkProgram(Chunk(3, 2), "remove_lines(1, 2)\nkeep_all()\nnot a call"),
    ]
    result, calls = attribute_calls(TEXT, chunks)
    assert result.text == "Keep this line.\nKeep the rest."
    by_source = {c.source: c for c in calls}
    assert by_source["remove_lines(1, 1)"].spans == [(0, 11)]  # "Nav | Home\n"
    assert by_source['remove_str(3, "Ad: buy now! ")'].spans == [(27, 27 + len("Ad: buy now! "))]
    # the last lines take the line break before them
    assert by_source["remove_lines(1, 2)"].spans == [(54, 72)]
    assert by_source["remove_lines(1, 2)"].doc_lines == (4, 5)
    assert by_source["remove_lines(9, 9)"].status == "line_out_of_range"
    assert by_source["keep_all()"].status == "keep_all_mixed"
    assert by_source["not a call"].status.startswith("invalid: ")
    assert [c.chunk for c in calls] == [0, 0, 0, 1, 1, 1]
    assert [c.index for c in calls] == list(range(6))


def test_keep_chunk_policy_marks_the_calls_of_the_kept_chunk():
    chunks = [ChunkProgram(Chunk(0, 5), "remove_lines(1, 1)\nbogus(")]
    result, calls = attribute_calls(TEXT, chunks, ExecPolicy(on_invalid="keep_chunk"))
    assert result.text == TEXT
    assert calls[0].status == "chunk_kept_invalid" and calls[0].spans == []


def test_report_shows_each_deleted_span_with_its_call():
    doc = {
        "id": "d1",
        "text": TEXT,
        "program": program(TEXT, [(0, 5, 'remove_lines(1, 1)\nremove_str(3, "Ad: buy now! ")')]),
    }
    page = render_report([doc])
    w = walk(page)
    assert w.dels == ["Nav | Home\n", "Ad: buy now! "]
    assert w.labels == ["remove_lines(1, 1)", 'remove_str(3, "Ad: buy now! ")']
    assert "document line 1" in w.del_titles[0]


def test_hostile_markup_is_escaped_everywhere():
    page = render_report([hostile_doc()], title="<script>t()</script>")
    w = walk(page)
    assert w.tags.count("script") == 1  # ours
    assert "img" not in w.tags and "iframe" not in w.tags and "b" not in w.tags
    assert '<script>alert("x")</script> ' in w.dels  # the remove_str span, as text
    assert not any("Click" in d for d in w.dels)
    assert any(v == HOSTILE_ID for _, v in w.attrs)  # kept as data, in an attribute, escaped
    assert "<img" not in page and "<iframe" not in page


def test_content_security_policy_blocks_external_loads():
    page = render_report([hostile_doc()])
    assert "default-src 'none'" in page
    assert "http://" not in page.replace("http://example.invalid", "")


def test_long_documents_are_cut():
    text = "Menu\n" + "word " * 2000
    doc = {"id": "long", "text": text, "program": program(text, [(0, 2, "remove_lines(1, 1)")])}
    page = render_report([doc], max_chars=100)
    assert "more characters not shown" in page
    assert "word " * 30 not in page
    assert walk(page).dels == ["Menu\n"]


def test_corpus_figures_cover_every_doc_but_max_docs_are_shown():
    docs = [{"id": f"d{i}", "text": TEXT, "program": program(TEXT, [(0, 5, "remove_lines(4, 5)")])} for i in range(5)]
    page = render_report(docs, max_docs=2)
    assert "5 documents; 5 changed" in page
    assert page.count('class="rx-doc') == 2
    assert "Showing the first 2 of 5 documents" in page


def test_docs_without_program_or_original_are_reported_not_crashed():
    docs = [
        {"id": "np", "text": "plain text", "program": None},
        {"id": "bad", "text": "a\nb", "program": {"render": "other_v9", "n_lines": 2, "chunks": []}},
        {"id": "noorig", "text": None, "refined": "what is left", "program": None},
        {"id": "mismatch", "text": TEXT, "refined": "x", "program": program(TEXT, [(0, 5, "remove_lines(1, 1)")])},
    ]
    page = render_report(docs)
    assert "no program" in page
    assert "unknown_render" in page
    assert "original text not available" in page
    assert "does not give the stored text" in page
    assert walk(page).dels == ["Nav | Home\n"]


def test_stats_table_from_datatrove_stats_json(tmp_path):
    stats = [
        {
            "name": "Execute",
            "time_stats": {},
            "stats": {"total": 3, "chars_removed": {"total": 120, "n": 3, "mean": 40}},
        },
        {"name": "Writer", "time_stats": {}, "stats": {}},
    ]
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    assert load_stats(path)[0]["name"] == "Execute"
    page = render_report([], stats=path)
    assert "chars_removed" in page and "40.00" in page and "no stats" in page
    with pytest.raises(ValueError, match="not a datatrove stats.json"):
        load_stats({"foo": 1})


def test_write_report_creates_folders(tmp_path):
    out = write_report([hostile_doc()], tmp_path / "a" / "b" / "report.html", title="T")
    assert out.exists() and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_lone_surrogates_and_nuls_do_not_break_writing(tmp_path):
    text = "bad \ud800 char\nnul \x00 here"
    doc = {"id": "s", "text": text, "program": program(text, [(0, 2, "remove_lines(2, 2)")])}
    out = write_report([doc], tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "\x00" not in page
    assert "".join(walk(page).dels) == "\nnul \ufffd here"


def test_report_doc_from_datatrove_records():
    meta = {"program": {"x": 1}, "exec": {"status": "executed", "chars_removed": 4}, "original_text": "orig"}
    rec = {"id": "r", "text": "refined", "metadata": {"refinex": meta}}
    d = report_doc(rec)
    assert (d["text"], d["refined"], d["program"]) == ("orig", "refined", {"x": 1})
    assert report_doc(rec, original_text="given")["text"] == "given"
    untouched = {"id": "u", "text": "same", "metadata": {"refinex": {"exec": {"chars_removed": 0}}}}
    assert report_doc(untouched)["text"] == "same"
    changed_no_original = {"id": "c", "text": "t", "metadata": {"refinex": {"exec": {"chars_removed": 3}}}}
    assert report_doc(changed_no_original)["text"] is None
    assert report_doc({"id": "n", "text": "t"})["notes"] == ['no metadata["refinex"] on this document']
    expanded = {"id": "e", "text": "t", "refinex": {"original_text": "tt", "exec": None, "program": None}}
    assert report_doc(expanded)["text"] == "tt"
    assert HOSTILE_TEXT  # the shared fixture module imports cleanly


def test_a_length_bomb_gets_the_executors_verdict_in_the_report():
    text = "Menu\nReal text.\nFooter"
    bomb = "remove_lines(1, " + "1+" * 100_000 + "1)"
    result, calls = attribute_calls(text, [ChunkProgram(Chunk(0, 3), f"remove_lines(1, 1)\n{bomb}")])
    assert result.invalid == {"line_too_long": 1}
    assert [c.status for c in calls] == ["applied", "invalid: line_too_long"]


def test_report_counts_chunks_the_decision_rule_overruled():
    prog = program(TEXT, [(0, 3, "keep_all()"), (3, 2, "remove_lines(1, 2)")])
    prog["chunks"][0].update(status="overruled", overruled_program="remove_lines(1, 3)", margin=0.4)
    page = render_report([{"id": "d1", "text": TEXT, "program": prog}])
    assert "Chunks overruled by the decision rule (drastic programs kept as keep_all()): 1." in page
    assert "1 chunk(s) overruled by the decision rule" in page
    plain = render_report([{"id": "d2", "text": TEXT, "program": program(TEXT, [(0, 5, "keep_all()")])}])
    assert "decision rule (drastic programs kept as keep_all()): 0." in plain
