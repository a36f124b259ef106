"""WCXB SFT records: the fixed dev split, label-exact programs, sampling."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from refinex_datatrove.program import REFINE_INSTRUCTION, execute_document, whole_document
from refinex_datatrove.train.wcxb import build_wcxb_records, iter_pairs, sample_dev_pairs, wcxb_split


def _pair(num: int, lines: list[str], keep: list[int], coverage: float = 1.0, page_type: str = "article") -> dict:
    return {
        "id": f"wcxb/{num:04d}",
        "noisy": "\n".join(lines),
        "keep": keep,
        "gold_projected": "\n".join(line for line, k in zip(lines, keep) if k),
        "gold_coverage": coverage,
        "n_keep_lines": sum(keep),
        "page_type": page_type,
    }


def _pairs_file(tmp_path: Path) -> Path:
    pairs = []
    for num in range(1, 31):
        lines, keep = [], []
        for i in range(12):
            noise = (i + num) % 4 == 0 or i == 0
            lines.append(f"Menu item {i} | Login" if noise else f"Paragraph {i} of document {num} says something.")
            keep.append(0 if noise else 1)
        pairs.append(_pair(num, lines, keep))
    pairs.append(_pair(31, ["Only noise", "More noise"], [0, 0]))  # no keep line: left out
    pairs.append(_pair(33, ["Lost content", "Kept line here."], [0, 1], coverage=0.3))  # low coverage: left out
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p) + "\n")
    return path


def _read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_split_rule() -> None:
    assert wcxb_split("wcxb/0420") == "dev"
    assert wcxb_split("wcxb/0010") == "dev"
    assert wcxb_split("wcxb/0421") == "train"
    with pytest.raises(ValueError, match="not a WCXB id"):
        wcxb_split("wcxb/abc")


def test_records_hold_only_train_documents_and_delete_exactly_the_noise(tmp_path: Path) -> None:
    pairs_path = _pairs_file(tmp_path)
    out = tmp_path / "train.jsonl.gz"
    counts = build_wcxb_records(pairs_path, out, window=200, unit="chars", keep_all_share=None)
    records = _read(out)
    assert counts["records"] == len(records) > 0
    assert counts["documents_left_out"] == 2
    assert {wcxb_split(r["id"]) for r in records} == {"train"}
    assert {r["id"] for r in records}.isdisjoint({"wcxb/0010", "wcxb/0020", "wcxb/0030"})
    assert all(r["window"] == 200 and r["unit"] == "chars" for r in records)

    pairs = {p["id"]: p for p in iter_pairs(pairs_path)}
    for rec in records:
        assert rec["prompt"].startswith(REFINE_INSTRUCTION + "\n") and rec["prompt"].endswith("\n")
        prompt_lines = rec["prompt"].split("\n")[1:-1]  # between the instruction line and the final break
        chunk = [line.split("] ", 1)[1] for line in prompt_lines]
        pair = pairs[rec["id"]]
        doc_lines = pair["noisy"].split("\n")
        start = rec["chunk_start"]
        assert doc_lines[start : start + len(chunk)] == chunk
        keep = pair["keep"][start : start + len(chunk)]
        chunk_text = "\n".join(chunk)
        program = rec["completion"]
        refined = execute_document(chunk_text, whole_document(chunk_text, program)).text
        assert refined == "\n".join(line for line, k in zip(chunk, keep) if k)


def test_keep_all_chunks_are_sampled_down_not_dropped(tmp_path: Path) -> None:
    pairs_path = _pairs_file(tmp_path)
    natural = build_wcxb_records(pairs_path, tmp_path / "a.jsonl.gz", window=90, unit="chars", keep_all_share=None)
    assert natural["records_keep_all"] > natural["records_edit"] / 3  # the test data have many keep_all chunks
    counts = build_wcxb_records(pairs_path, tmp_path / "b.jsonl.gz", window=90, unit="chars", keep_all_share=0.2)
    records = _read(tmp_path / "b.jsonl.gz")
    n_keep = sum(r["completion"] == "keep_all()" for r in records)
    assert n_keep == counts["records_keep_all"] > 0
    assert counts["records_edit"] == natural["records_edit"]  # every edit chunk stays
    assert n_keep / len(records) == pytest.approx(0.2, abs=0.05)
    capped = build_wcxb_records(pairs_path, tmp_path / "c.jsonl.gz", window=90, unit="chars", max_records=7)
    assert capped["records"] == len(_read(tmp_path / "c.jsonl.gz")) == 7


def test_dev_sample_is_seeded_and_dev_only(tmp_path: Path) -> None:
    pairs_path = _pairs_file(tmp_path)
    sample = sample_dev_pairs(pairs_path, n_docs=2, seed=1)
    assert len(sample) == 2 and {wcxb_split(p["id"]) for p in sample} == {"dev"}
    assert [p["id"] for p in sample] == [p["id"] for p in sample_dev_pairs(pairs_path, n_docs=2, seed=1)]
    assert len(sample_dev_pairs(pairs_path, n_docs=None)) == 3


def test_evaluate_on_dev_scores_a_real_model_and_saves_its_programs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from datatrove.data import Document

    from refinex_datatrove.eval.metrics import load_gold
    from refinex_datatrove.eval.dev import evaluate_on_dev, execute_annotated
    from tests.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    model = build_tiny_model(tmp_path / "tiny")
    pairs_path = _pairs_file(tmp_path)
    programs = tmp_path / "programs.jsonl"
    result = evaluate_on_dev(pairs_path, model, n_docs=None, max_new_tokens=6, batch_size=2, programs_out=programs)
    sample = sample_dev_pairs(pairs_path, n_docs=None)
    assert set(result.methods) == {"tiny", "keep-all", "c4-lines", "gold"}
    assert result.methods["tiny"].corpus["docs"] == len(sample) == 3
    assert result.methods["gold"].corpus["del_f1"] == 1.0

    rows = [json.loads(line) for line in programs.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p["id"] for p in sample]
    assert all(r["metadata"]["refinex"]["program"]["chunks"] for r in rows)
    assert [r["text"] for r in rows] == [p["noisy"] for p in sample]  # saved before execution

    # the saved programs re-execute to the texts that were scored, and executing leaves its input unchanged
    docs = [Document(text=r["text"], id=r["id"], metadata=r["metadata"]) for r in rows]
    refined = execute_annotated(docs)
    assert [d.text for d in docs] == [p["noisy"] for p in sample]
    from refinex_datatrove.eval.metrics import evaluate
    from refinex_datatrove.refine_model.card import model_chunking, resolve_model

    window, unit = model_chunking(resolve_model(model))  # the wiped-chunks figure chunks as the model does
    again = evaluate(refined, load_gold(sample, group_key="page_type"), name="tiny", window=window, unit=unit)
    assert again.methods["tiny"].corpus == result.methods["tiny"].corpus


def test_dev_evaluation_chunks_at_the_window_it_is_given(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from refinex_datatrove.eval.dev import annotate_pairs, evaluate_on_dev
    from tests.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    model = build_tiny_model(tmp_path / "tiny")
    sample = sample_dev_pairs(_pairs_file(tmp_path), n_docs=None)

    def chunks(docs) -> int:
        return sum(len(d.metadata["refinex"]["program"]["chunks"]) for d in docs)

    own = annotate_pairs(sample, model, max_new_tokens=2, batch_size=3)
    small = annotate_pairs(sample, model, max_new_tokens=2, batch_size=3, window=20)
    assert chunks(small) > chunks(own)
    # the wiped-chunks figure counts over the chunks the model was given
    scored = [evaluate_on_dev(_pairs_file(tmp_path), model, n_docs=None, max_new_tokens=2, window=w) for w in (None, 20)]
    assert scored[1].methods["tiny"].corpus["totals"]["chunks"] > scored[0].methods["tiny"].corpus["totals"]["chunks"]
