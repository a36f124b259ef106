from __future__ import annotations

import json
import pickle

import pytest
from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter

from refinex_datatrove.metadata import META_KEY, ExecStatus, exec_record
from refinex_datatrove.steps.quality_filter import QualityFilter


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def _doc(text: str, doc_id: str = "d", **refinex) -> Document:
    metadata = {META_KEY: dict(refinex)} if refinex else {}
    return Document(text=text, id=doc_id, metadata=metadata)


def _executed(text: str, chars_before: int, doc_id: str = "d") -> Document:
    return _doc(text, doc_id, exec=exec_record(ExecStatus.EXECUTED, chars_before=chars_before, chars_after=len(text)))


def _stat(step, name: str) -> float:
    return step.stats.stats[name].total if name in step.stats.stats else 0


def _kept_ids(step, docs) -> list[str]:
    return [d.id for d in step.run(iter(docs))]


@pytest.mark.parametrize(("n_words", "kept"), [(10, False), (11, True)])
def test_default_min_words_drops_ten_words_or_fewer(n_words, kept):
    step = QualityFilter()
    assert _kept_ids(step, [_doc(_words(n_words))]) == (["d"] if kept else [])
    assert _stat(step, "dropped_refinex_min_words") == (0 if kept else 1)


@pytest.mark.parametrize(("chars_before", "kept"), [(1000, False), (999, True)])
def test_default_removed_frac_drops_at_95_percent(chars_before, kept):
    text = _words(11).ljust(50, "y")
    assert len(text) == 50 and len(text.split()) == 11
    # 950 of 1000 chars removed = exactly 0.95 -> dropped; 949 of 999 -> 0.94995 -> kept
    step = QualityFilter()
    assert _kept_ids(step, [_executed(text, chars_before)]) == (["d"] if kept else [])
    assert _stat(step, "dropped_refinex_removed_frac") == (0 if kept else 1)


def test_quality_measurements_are_written_before_deciding():
    text = _words(3)
    doc = _executed(text, chars_before=4 * len(text))
    step = QualityFilter()
    assert _kept_ids(step, [doc]) == []
    quality = doc.metadata[META_KEY]["quality"]
    assert quality == {"words": 3, "chars": len(text), "removed_frac": pytest.approx(0.75)}


def test_never_executed_documents_are_judged_on_text_only():
    step = QualityFilter(min_words=2)
    no_meta = _doc("two words")
    no_program = _doc("two words", "np", exec=exec_record(ExecStatus.NO_PROGRAM, chars_before=9))
    mismatch = _doc("two words", "mm", exec=exec_record(ExecStatus.PROGRAM_MISMATCH, chars_before=900))
    assert _kept_ids(step, [no_meta, no_program, mismatch]) == ["d", "np", "mm"]
    for d in (no_meta, no_program, mismatch):
        assert d.metadata[META_KEY]["quality"]["removed_frac"] is None


def test_original_text_is_used_when_there_is_no_exec_record():
    step = QualityFilter(min_words=None)
    doc = _doc("ab", original_text="a" * 100)
    assert _kept_ids(step, [doc]) == []
    assert doc.metadata[META_KEY]["quality"]["removed_frac"] == pytest.approx(0.98)
    assert _stat(step, "dropped_refinex_removed_frac") == 1


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_empty_documents(text):
    step = QualityFilter()
    assert _kept_ids(step, [_executed(text, chars_before=100)]) == []
    assert _stat(step, "dropped_refinex_empty") == 1
    lenient = QualityFilter(drop_empty=False, min_words=None, max_removed_frac=None)
    assert _kept_ids(lenient, [_executed(text, chars_before=100)]) == ["d"]


def test_min_chars():
    step = QualityFilter(min_words=None, min_chars=10)
    assert _kept_ids(step, [_doc("123456789", "short"), _doc("1234567890", "ok")]) == ["ok"]
    assert _stat(step, "dropped_refinex_min_chars") == 1


def test_disabled_rules_keep_everything_non_empty():
    step = QualityFilter(min_words=None, min_chars=None, max_removed_frac=None)
    assert _kept_ids(step, [_executed("a", chars_before=1000)]) == ["d"]


def test_malformed_exec_record_is_counted_and_judged_on_text():
    step = QualityFilter()
    doc = _doc(_words(20), exec={"status": "executed", "chars_before": "100", "chars_after": 5})
    garbage = Document(text=_words(20), id="g", metadata={META_KEY: 42})
    assert _kept_ids(step, [doc, garbage]) == ["d", "g"]
    assert doc.metadata[META_KEY]["quality"]["removed_frac"] is None
    assert _stat(step, "malformed_metadata") == 2


def test_exclusion_writer_gets_dropped_docs_with_reason(tmp_path):
    docs = [
        _doc(_words(20), "kept"),
        _doc(_words(3), "short"),
        _doc("", "empty"),
        _executed(_words(12), 10_000, "cut"),
    ]
    step = QualityFilter(exclusion_writer=JsonlWriter(str(tmp_path), compression=None))
    assert _kept_ids(step, docs) == ["kept"]
    rows = [json.loads(line) for f in tmp_path.glob("*.jsonl") for line in f.read_text().splitlines()]
    reasons = {r["id"]: r["metadata"]["filter_reason"] for r in rows}
    assert reasons == {"short": "refinex_min_words", "empty": "refinex_empty", "cut": "refinex_removed_frac"}
    assert _stat(step, "total") == 4 and _stat(step, "forwarded") == 1 and _stat(step, "dropped") == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"min_words": -1}, {"min_words": 2.5}, {"min_chars": True}, {"max_removed_frac": 0}, {"max_removed_frac": 1.5}],
)
def test_constructor_validates(kwargs):
    with pytest.raises(ValueError):
        QualityFilter(**kwargs)


def test_keyword_only_and_picklable():
    with pytest.raises(TypeError):
        QualityFilter(5)
    clone = pickle.loads(pickle.dumps(QualityFilter(min_words=3, max_removed_frac=0.5)))
    assert clone.min_words == 3 and clone.max_removed_frac == 0.5
