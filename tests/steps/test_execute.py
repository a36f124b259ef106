from __future__ import annotations

import copy
import pickle

import pytest
from datatrove.data import Document

from refinex_datatrove.metadata import META_KEY, write_program
from refinex_datatrove.program import Chunk, ChunkProgram, ExecPolicy, is_deletion_of
from refinex_datatrove.steps.execute import ProgramExecutor

TEXT = "Menu | Home\nThe first real sentence.\nThe second one, ad: BUY NOW.\nShare this\nFooter"


def _doc(text: str = TEXT, programs=None, doc_id: str = "d", **metadata) -> Document:
    doc = Document(text=text, id=doc_id, metadata=dict(metadata))
    if programs is not None:
        write_program(doc, programs, source="labels", n_lines=text.count("\n") + 1)
    return doc


def _whole(program: str, text: str = TEXT) -> list[ChunkProgram]:
    return [ChunkProgram(Chunk(0, text.count("\n") + 1), program)]


def _run(step: ProgramExecutor, docs: list[Document]) -> list[Document]:
    return list(step.run(iter(docs)))


def _stat(step, name: str) -> float:
    return step.stats.stats[name].total if name in step.stats.stats else 0


def test_executes_program_and_records_exec():
    step = ProgramExecutor()
    (out,) = _run(
        step, [_doc(programs=_whole('remove_lines(1, 1)\nremove_str(3, " ad: BUY NOW.")\nremove_lines(4, 5)'))]
    )
    assert out.text == "The first real sentence.\nThe second one,"
    ex = out.metadata[META_KEY]["exec"]
    assert ex["status"] == "executed" and ex["reason"] is None
    assert ex["applied"] == {"remove_lines": 2, "remove_str": 1}
    assert ex["skipped"] == {} and ex["invalid"] == {}
    assert ex["lines_removed"] == 3
    assert ex["chars_before"] == len(TEXT) and ex["chars_after"] == len(out.text)
    assert ex["chars_removed"] == len(TEXT) - len(out.text)
    assert out.metadata[META_KEY]["original_text"] is None  # keep_original=False
    assert _stat(step, "total") == 1 and _stat(step, "forwarded") == 1 and _stat(step, "executed") == 1
    assert _stat(step, "applied_remove_lines") == 2 and _stat(step, "applied_remove_str") == 1
    assert _stat(step, "lines_removed") == 3
    assert _stat(step, "chars_removed") == len(TEXT) - len(out.text)
    assert _stat(step, "docs_changed") == 1 and _stat(step, "docs_untouched") == 0


def test_chunk_programs_use_local_numbering():
    programs = [ChunkProgram(Chunk(0, 2), "remove_lines(1, 1)"), ChunkProgram(Chunk(2, 3), "remove_lines(2, 3)")]
    (out,) = _run(ProgramExecutor(), [_doc(programs=programs)])
    assert out.text == "The first real sentence.\nThe second one, ad: BUY NOW."


def test_skipped_and_invalid_calls_are_counted_per_reason():
    program = "\n".join(
        [
            'remove_str(2, "absent")',
            "remove_lines(9, 9)",
            "remove_lines(3, 2)",
            "remove_lines(1, 1)",
            'print("x")',
            "remove_lines(1,",
        ]
    )
    step = ProgramExecutor()
    (out,) = _run(step, [_doc(programs=_whole(program))])
    assert out.text == TEXT.split("\n", 1)[1]
    ex = out.metadata[META_KEY]["exec"]
    assert ex["skipped"]["str_not_found"] == 1
    assert ex["skipped"]["line_out_of_range"] == 1
    assert ex["skipped"]["inverted_range"] == 1
    assert ex["skipped"]["invalid_call"] == 2
    assert ex["invalid"] == {"unknown_function": 1, "syntax_error": 1}
    for name in ("skipped_str_not_found", "skipped_line_out_of_range", "skipped_inverted_range"):
        assert _stat(step, name) == 1
    assert _stat(step, "skipped_invalid_call") == 2
    assert _stat(step, "invalid_unknown_function") == 1 and _stat(step, "invalid_syntax_error") == 1
    assert _stat(step, "applied_remove_lines") == 1


def test_keep_chunk_policy_leaves_chunk_with_invalid_call_unchanged():
    program = "remove_lines(1, 1)\nremove_lines(1 1)"
    (skip_call,) = _run(ProgramExecutor(), [_doc(programs=_whole(program))])
    assert skip_call.text == TEXT.split("\n", 1)[1]
    step = ProgramExecutor(policy=ExecPolicy(on_invalid="keep_chunk"))
    (kept,) = _run(step, [_doc(programs=_whole(program))])
    assert kept.text == TEXT
    assert _stat(step, "skipped_chunk_kept_invalid") == 1 and _stat(step, "docs_untouched") == 1


def test_keep_original_stores_the_text_before_execution():
    (out,) = _run(ProgramExecutor(keep_original=True), [_doc(programs=_whole("remove_lines(5, 5)"))])
    assert out.metadata[META_KEY]["original_text"] == TEXT
    assert out.text == TEXT.rsplit("\n", 1)[0]


def test_keep_original_not_stored_when_nothing_changed():
    (out,) = _run(ProgramExecutor(keep_original=True), [_doc(programs=_whole("keep_all()"))])
    assert out.text == TEXT and out.metadata[META_KEY]["original_text"] is None
    assert out.metadata[META_KEY]["exec"]["applied"] == {"keep_all": 1}


def test_document_without_program_passes_unchanged():
    step = ProgramExecutor()
    docs = [_doc(url="u"), _doc(refinex={"program": None})]
    out = _run(step, docs)
    assert [d.text for d in out] == [TEXT, TEXT]
    assert out[0].metadata["url"] == "u"
    for d in out:
        ex = d.metadata[META_KEY]["exec"]
        assert ex["status"] == "no_program" and ex["chars_removed"] == 0
    assert _stat(step, "no_program") == 2 and _stat(step, "forwarded") == 2 and _stat(step, "docs_untouched") == 2


def _malformed(mutate) -> Document:
    doc = _doc(programs=_whole("remove_lines(1, 2)"))
    mutate(doc.metadata[META_KEY])
    return doc


MALFORMED = [
    ("program_not_a_dict", lambda m: m.update(program="remove_lines(1, 2)"), "program_not_a_dict"),
    ("chunks_not_a_list", lambda m: m["program"].update(chunks="remove_lines(1, 2)"), "chunks_not_a_list"),
    ("numbers_as_strings", lambda m: m["program"]["chunks"][0].update(start="0", n_lines="5"), "wrong_type"),
    ("negative_start", lambda m: m["program"]["chunks"][0].update(start=-1), "negative_number"),
    ("bool_n_lines", lambda m: m["program"].update(n_lines=True), "bool_as_int"),
    ("program_text_not_str", lambda m: m["program"]["chunks"][0].update(program=None), "wrong_type"),
    ("chunk_not_a_dict", lambda m: m["program"].update(chunks=[None]), "chunk_not_a_dict"),
    ("missing_render", lambda m: m["program"].pop("render"), "missing_key"),
]


@pytest.mark.parametrize(("case", "mutate", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_program_never_crashes_and_is_a_named_stat(case, mutate, reason):
    step = ProgramExecutor()
    good = _doc(programs=_whole("remove_lines(1, 1)"), doc_id="good")
    out = _run(step, [_malformed(mutate), good])
    assert out[0].text == TEXT  # passes unchanged
    assert out[1].text == TEXT.split("\n", 1)[1]  # the shard carries on
    ex = out[0].metadata[META_KEY]["exec"]
    assert ex["status"] == "malformed_program" and ex["reason"].startswith(reason)
    assert _stat(step, "malformed_program") == 1 and _stat(step, f"malformed_program_{reason}") == 1
    assert _stat(step, "forwarded") == 2


def test_refinex_metadata_not_a_dict_is_a_named_stat():
    step = ProgramExecutor()
    (out,) = _run(step, [_doc(refinex="garbage")])
    assert out.text == TEXT and out.metadata[META_KEY] == "garbage"
    assert _stat(step, "malformed_program_refinex_not_a_dict") == 1 and _stat(step, "forwarded") == 1


@pytest.mark.parametrize("new_text", [TEXT + "\nextra line", TEXT.split("\n", 1)[1]])
def test_line_count_mismatch_is_program_mismatch(new_text):
    doc = _doc(programs=_whole("remove_lines(1, 1)"))
    doc.text = new_text  # something edited the text after the program was written
    step = ProgramExecutor()
    (out,) = _run(step, [doc])
    assert out.text == new_text
    assert out.metadata[META_KEY]["exec"]["status"] == "program_mismatch"
    assert _stat(step, "program_mismatch") == 1 and _stat(step, "malformed_program") == 0


def test_second_execution_is_not_applied_twice():
    step = ProgramExecutor()
    (once,) = _run(step, [_doc(programs=_whole('remove_str(2, "first ")'))])
    assert once.text == TEXT.replace("first ", "")
    (twice,) = _run(step, [once])
    assert twice.text == once.text
    assert _stat(step, "already_executed") == 1 and _stat(step, "executed") == 1


def test_output_is_always_a_deletion_of_the_input():
    programs = ['remove_str(1, "Home")\nremove_lines(2, 3)', "remove_lines(1, 5)", "keep_all()", "nonsense((("]
    docs = [_doc(programs=_whole(p), doc_id=str(i)) for i, p in enumerate(programs)]
    out = _run(ProgramExecutor(), copy.deepcopy(docs))
    assert [d.id for d in out] == [d.id for d in docs]
    for before, after in zip(docs, out, strict=True):
        assert is_deletion_of(before.text, after.text)
    assert out[1].text == ""  # emptied documents are forwarded; QualityFilter drops them


def test_step_is_picklable_and_validates_policy():
    step = ProgramExecutor(policy=ExecPolicy(on_invalid="keep_chunk"), keep_original=True)
    clone = pickle.loads(pickle.dumps(step))
    assert clone.policy == step.policy and clone.keep_original
    with pytest.raises(TypeError):
        ProgramExecutor(policy="keep_chunk")
    with pytest.raises(TypeError):
        ProgramExecutor(ExecPolicy())  # keyword-only
