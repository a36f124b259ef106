from __future__ import annotations

import gzip
import json

import pytest
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.writers import JsonlWriter

from refinex_datatrove.cli import main
from refinex_datatrove.metadata import write_program
from refinex_datatrove.program import Chunk, ChunkProgram
from refinex_datatrove.steps.execute import ProgramExecutor
from tests.eval.report_helpers import walk


NAV = "Home | News | Sport"
BUDGET = "The council approved the budget on Monday."
SHARE = "Share on Facebook"
VOTE = "Councillors voted 7 to 2 in favour."
GOLD = [
    {"id": "a", "noisy": f"{NAV}\n{BUDGET}\n{SHARE}\n{VOTE}", "keep": [0, 1, 0, 1], "page_type": "article"},
    {"id": "b", "noisy": f"{SHARE}\n{VOTE}", "keep": [0, 1], "page_type": "article"},
    {"id": "c", "noisy": f"{NAV}\n{SHARE}", "keep": [0, 0], "page_type": "forum"},
    {"id": "d", "noisy": BUDGET, "keep": [1], "page_type": "forum"},
]
# a: deletes NAV and VOTE (tp 1, fp 1, fn 1); b: perfect (tp 1); c: emptied (tp 2); d: missing -> dropped (fp 1)
REFINED = {"a": f"{BUDGET}\n{SHARE}", "b": VOTE, "c": ""}


def _write_gold(path, records=GOLD):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return path


def _write_refined_folder(folder, logs):
    docs = [Document(text=t, id=i) for i, t in REFINED.items()]
    LocalPipelineExecutor(pipeline=[docs, JsonlWriter(str(folder))], tasks=1, workers=1, logging_dir=str(logs)).run()
    return folder


def test_eval_on_a_datatrove_output_folder(tmp_path, capsys):
    gold = _write_gold(tmp_path / "gold.jsonl.gz")
    refined = _write_refined_folder(tmp_path / "refined", tmp_path / "logs")
    assert any(p.name.endswith(".jsonl.gz") for p in refined.iterdir())
    out_json = tmp_path / "eval" / "scores.json"
    rc = main(
        ["eval", "--refined", str(refined), "--gold", str(gold), "--json", str(out_json), "--group-key", "page_type"]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "keep-all" in printed and "c4-lines" in printed and "page_type = forum" in printed
    data = json.loads(out_json.read_text())
    ours = data["methods"]["ours"]["corpus"]
    # pooled: tp = 1 + 1 + 2 + 0 = 4, fp = 1 + 0 + 0 + 1 = 2, fn = 1
    assert ours["del_precision"] == pytest.approx(4 / 6)
    assert ours["del_recall"] == pytest.approx(4 / 5)
    assert ours["del_f1"] == pytest.approx(8 / 11)
    assert (ours["emptied"], ours["dropped"], ours["untouched"]) == (0.25, 0.25, 0.0)
    assert ours["new_words_per_1k"] == 0.0
    docs = {d["id"]: d for d in data["methods"]["ours"]["docs"]}
    assert docs["c"]["emptied"] and not docs["c"]["dropped"]  # an empty text is not a dropped doc
    assert data["methods"]["keep-all"]["corpus"]["untouched"] == 1.0
    assert data["methods"]["gold"]["corpus"]["del_f1"] == 1.0
    assert data["methods"]["ours"]["groups"]["forum"]["docs"] == 2


def test_eval_limit_ids_and_bad_lines(tmp_path, capsys):
    gold = _write_gold(tmp_path / "gold.jsonl.gz")
    refined = tmp_path / "refined.jsonl"
    lines = [json.dumps({"id": k, "text": v}) for k, v in REFINED.items()]
    lines += ["{not json", json.dumps({"text": "no id"}), json.dumps({"id": "a", "text": "duplicate"})]
    refined.write_text("\n".join(lines) + "\n")
    ids = tmp_path / "ids.txt"
    ids.write_text("b\n\nc\n")
    out_json = tmp_path / "s.json"
    assert (
        main(
            [
                "eval",
                "--refined",
                str(refined),
                "--gold",
                str(gold),
                "--ids-file",
                str(ids),
                "--json",
                str(out_json),
                "--baselines",
                "keep-all",
                "--no-docs",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "malformed_lines=1" in captured.err and "missing_id=1" in captured.err and "duplicate_ids=1" in captured.err
    data = json.loads(out_json.read_text())
    assert list(data["methods"]) == ["ours", "keep-all"]
    assert data["methods"]["ours"]["corpus"]["docs"] == 2
    assert data["methods"]["ours"]["corpus"]["del_f1"] == 1.0  # b and c are perfect
    assert "docs" not in data["methods"]["ours"]
    assert data["unknown_ids"] == ["a"]
    assert main(["eval", "--refined", str(refined), "--gold", str(gold), "--limit", "1", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["methods"]["ours"]["corpus"]["docs"] == 1


def test_eval_gold_text_key(tmp_path):
    recs = [
        dict(r, gold_projected="\n".join(ln for ln, k in zip(r["noisy"].split("\n"), r["keep"]) if k)) for r in GOLD
    ]
    for r in recs:
        del r["keep"]
    gold = _write_gold(tmp_path / "g.jsonl.gz", recs)
    refined = tmp_path / "r.jsonl"
    refined.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in REFINED.items()))
    out = tmp_path / "s.json"
    assert (
        main(
            [
                "eval",
                "--refined",
                str(refined),
                "--gold",
                str(gold),
                "--gold-text-key",
                "gold_projected",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["methods"]["ours"]["corpus"]["del_f1"] == pytest.approx(8 / 11)


@pytest.mark.parametrize(
    ("gold_lines", "extra", "message"),
    [
        (["{oops"], [], "not valid JSON"),
        ([json.dumps({"id": "a", "noisy": "x\ny", "keep": [1]})], [], "1 'keep' labels for 2 lines"),
        ([json.dumps(GOLD[0])], ["--baselines", "nope"], "unknown baseline"),
        ([json.dumps(GOLD[0])], ["--ids-file", "/nonexistent/ids"], "does not exist"),
        ([json.dumps(GOLD[0])], ["--ids-file", "EMPTY"], "no gold documents selected"),
    ],
)
def test_eval_input_errors_exit_2(tmp_path, capsys, gold_lines, extra, message):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(gold_lines) + "\n")
    refined = tmp_path / "r.jsonl"
    refined.write_text(json.dumps({"id": "a", "text": "x"}) + "\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("zzz\n")
    extra = [str(empty) if e == "EMPTY" else e for e in extra]
    assert main(["eval", "--refined", str(refined), "--gold", str(gold), *extra]) == 2
    assert message in capsys.readouterr().err


def test_eval_missing_refined_path(tmp_path, capsys):
    gold = _write_gold(tmp_path / "gold.jsonl.gz")
    assert main(["eval", "--refined", str(tmp_path / "nope"), "--gold", str(gold)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "emptydir").mkdir()
    assert main(["eval", "--refined", str(tmp_path / "emptydir"), "--gold", str(gold)]) == 2
    assert "no .jsonl" in capsys.readouterr().err


def test_report_command_on_a_real_pipeline_output(tmp_path, capsys):
    text = "Menu | Home\nThe real sentence.\nBuy now! Click here.\nFooter"
    doc = Document(text=text, id="<doc&1>")
    write_program(
        doc,
        [ChunkProgram(Chunk(0, 4), 'remove_lines(1, 1)\nremove_str(3, "Buy now! ")\nremove_lines(4, 4)')],
        source="labels",
        n_lines=4,
    )
    untouched = Document(text="Nothing to remove.", id="u")
    write_program(untouched, [ChunkProgram(Chunk(0, 1), "keep_all()")], source="labels", n_lines=1)
    out, logs = tmp_path / "out", tmp_path / "logs"
    LocalPipelineExecutor(
        pipeline=[[doc, untouched], ProgramExecutor(keep_original=True), JsonlWriter(str(out))],
        tasks=1,
        workers=1,
        logging_dir=str(logs),
    ).run()
    html_path = tmp_path / "report.html"
    assert main(["report", "--input", str(out), "--out", str(html_path), "--stats", str(logs / "stats.json")]) == 0
    page = html_path.read_text(encoding="utf-8")
    w = walk(page)
    assert w.dels == ["Menu | Home\n", "Buy now! ", "\n", "Footer"]  # label splits the last run after its "\n"
    assert "&lt;doc&amp;1&gt;" in page
    assert "RefineX execute" in page  # the stats table
    assert "2 documents; 1 changed" in page
    assert main(["report", "--input", str(out), "--out", str(html_path), "--stats", str(tmp_path / "nostats")]) == 2


def test_eval_accepts_the_refine_input_format_as_gold(tmp_path):
    """Gold in the refine input format (``text`` + ``keep``, like ``examples/data/demo_web.jsonl``) scores the same
    as the WCXB format (``noisy`` + ``keep``): found by itself, or named with ``--text-key text``."""
    wcxb = _write_gold(tmp_path / "wcxb.jsonl.gz")
    refine_format = [{"id": g["id"], "text": g["noisy"], "keep": g["keep"]} for g in GOLD]
    plain = _write_gold(tmp_path / "plain.jsonl.gz", refine_format)
    refined = _write_refined_folder(tmp_path / "refined", tmp_path / "logs")
    scores = {}
    for name, gold, extra in [("wcxb", wcxb, []), ("auto", plain, []), ("named", plain, ["--text-key", "text"])]:
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--refined", str(refined), "--gold", str(gold), "--json", str(out), *extra]) == 0
        data = json.loads(out.read_text())
        scores[name] = data["methods"]["ours"]["corpus"]
        assert data["settings"]["text_key"] == ("noisy" if name == "wcxb" else "text")
    assert scores["auto"] == scores["named"] == scores["wcxb"]
    assert scores["wcxb"]["del_f1"] == pytest.approx(8 / 11)


def test_eval_reports_lost_documents_and_wiped_chunks(tmp_path, capsys):
    """d is dropped while its gold keeps a line (lost); c is emptied but its gold keeps nothing (not lost). At a
    50-character window, a is 4 chunks (VOTE's deleted whole, gold content: wiped), b 2, c 1 (gold noise), d 1
    (dropped, gold content: wiped): 2 of 8."""
    gold = _write_gold(tmp_path / "gold.jsonl.gz")
    refined = tmp_path / "refined.jsonl"
    refined.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in REFINED.items()))
    out_json = tmp_path / "scores.json"
    argv = ["eval", "--refined", str(refined), "--gold", str(gold), "--json", str(out_json), "--group-key", "page_type"]
    assert main([*argv, "--window", "50"]) == 0
    printed = capsys.readouterr().out
    assert "lost docs" in printed and "wiped chunks" in printed
    data = json.loads(out_json.read_text())
    assert (data["settings"]["window"], data["settings"]["unit"]) == (50, "chars")
    ours = data["methods"]["ours"]
    assert ours["corpus"]["lost_docs"] == 1
    assert ours["corpus"]["chunks_wiped"] == pytest.approx(2 / 8)
    assert ours["corpus"]["totals"]["chunks"] == 8
    assert ours["groups"]["forum"]["lost_docs"] == 1 and ours["groups"]["article"]["lost_docs"] == 0
    assert ours["groups"]["article"]["chunks_wiped"] == pytest.approx(1 / 6)
    docs = {d["id"]: d for d in ours["docs"]}
    assert docs["d"]["lost"] and not docs["c"]["lost"]
    assert data["methods"]["keep-all"]["corpus"]["lost_docs"] == 0
    assert data["methods"]["keep-all"]["corpus"]["chunks_wiped"] == 0
    # by default the chunking is the default refine model's (its refinex.json)
    from refinex_datatrove.refine_model.card import model_chunking, resolve_model

    assert main(argv) == 0
    data = json.loads(out_json.read_text())
    assert (data["settings"]["window"], data["settings"]["unit"]) == model_chunking(resolve_model("default"))
    assert data["methods"]["ours"]["corpus"]["totals"]["chunks"] == 4  # one chunk per document at 1,200 chars
