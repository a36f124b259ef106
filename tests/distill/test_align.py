import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refinex_datatrove.distill.align import (
    align,
    apply_opcodes,
    deletion_spans,
    rewrite_opcodes,
    rewrite_span_length,
    span_overlap,
)
from refinex_datatrove.program import delete_spans, merge_spans


def only_deletions(ops):
    return all(tag in ("equal", "delete") for tag, *_ in ops)


# ---- hand-made cases ------------------------------------------------------------------------------------------


def test_identical_and_empty():
    assert align("", "") == []
    assert align("abc\ndef", "abc\ndef") == [("equal", 0, 7, 0, 7)]
    assert align("", "xy") == [("insert", 0, 0, 0, 2)]
    assert align("xy", "") == [("delete", 0, 2, 0, 0)]


def test_middle_line_deleted_with_its_trailing_break():
    a = "first line\nNAV | HOME | ABOUT\nlast line"
    b = "first line\nlast line"
    # "NAV | HOME | ABOUT\n" starts at 11 and is 19 characters long
    assert deletion_spans(align(a, b)) == [(11, 30)]


def test_first_line_deleted_with_its_trailing_break():
    a = "Skip to content\nBody text."
    assert deletion_spans(align(a, "Body text.")) == [(0, 16)]


def test_last_lines_deleted_with_the_break_before_them():
    a = "Body text.\nShare on X\nCopyright"
    # the break after "Body text." (offset 10) and everything after it
    assert align(a, "Body text.") == [("equal", 0, 10, 0, 10), ("delete", 10, len(a), 10, 10)]


def test_insertion_at_the_end_borrows_the_break_too():
    assert align("a", "a\nb") == [("equal", 0, 1, 0, 1), ("insert", 1, 1, 1, 3)]


def test_deleted_line_ending_like_its_neighbour_stays_a_whole_line():
    # "A.\n" + "B.\n" -> deleting "B.\n" or ".\nB" gives the same text; whole lines are preferred
    a = "A.\nB.\nC"
    assert deletion_spans(align(a, "A.\nC")) == [(3, 6)]


def test_partial_deletion_inside_a_line():
    a = "Title\nShare this: Facebook Twitter\nBody"
    b = "Title\nFacebook Twitter\nBody"
    assert deletion_spans(align(a, b)) == [(6, 18)]
    assert a[6:18] == "Share this: "


def test_edit_of_one_of_two_identical_lines_is_not_split_into_insert_and_delete():
    # the line LCS may match b's unchanged copy with a's *first* copy; the aligner must still find the deletion
    line = "    Address(email_address='someone@example.com'),"
    a = f"x = [\n{line}\n{line}\n]"
    edited = line.replace("email_address=", "")
    b = f"x = [\n{edited}\n{line}\n]"
    ops = align(a, b)
    assert only_deletions(ops)
    assert [a[s:e] for s, e in deletion_spans(ops)] == ["email_address="]


def test_ascii_table_with_repeated_borders():
    # repetitive text where difflib's longest-match-first alignment of the whole block is far from minimal
    border = " " * 37 + "+" + "-" * 24 + "+"
    label = " " * 37 + "| Current-thread Runtime |"
    a = "\n".join([" " * 49 + "v", border, label, border, "The tree is not exhaustive. there are other factors."])
    b_lines = [
        " " * 49 + "v",
        border[:20] + border[43:],
        label.replace("ent-t", ""),
        border,
        "The tree is not exhaustive. there are other .",
    ]
    b = "\n".join(b_lines)
    ops = align(a, b)
    assert apply_opcodes(a, b, ops) == b
    assert only_deletions(ops)
    assert sum(e - s for s, e in deletion_spans(ops)) == len(a) - len(b)
    assert not rewrite_opcodes(ops)


def test_rewrites_are_reported_as_insert_or_replace():
    a = "keep this\nThe year 1999 was good.\nnav"
    b = "keep this\nThe year 2000 was good."
    ops = align(a, b)
    assert apply_opcodes(a, b, ops) == b
    rewrites = rewrite_opcodes(ops)
    assert rewrites and all(tag in ("insert", "replace") for tag, *_ in rewrites)
    # the replaced year is not a deletion; the deleted line is
    dels = deletion_spans(ops)
    assert [a[s:e] for s, e in dels] == ["\nnav"]


def test_rewrite_span_length():
    assert rewrite_span_length(("insert", 5, 5, 3, 23)) == 20
    assert rewrite_span_length(("replace", 0, 4, 0, 19)) == 19
    assert rewrite_span_length(("replace", 0, 25, 0, 2)) == 25
    assert rewrite_span_length(("delete", 0, 30, 0, 0)) == 0


def test_large_blocks_use_the_linear_memory_fallback_and_still_reconstruct():
    a = "\n".join(f"line {i} with some words" for i in range(50))
    b = a.replace("some", "many")  # every line changes: one big change block
    for max_block_chars in (10, 20_000):
        ops = align(a, b, max_block_chars=max_block_chars)
        assert apply_opcodes(a, b, ops) == b


def test_line_stage_fallback_for_huge_line_products():
    a = "\n".join(str(i) for i in range(100))
    b = "\n".join(str(i) for i in range(100) if i % 7)
    ops = align(a, b, max_matrix_cells=0)
    assert apply_opcodes(a, b, ops) == b
    assert only_deletions(ops)


def test_apply_opcodes_rejects_inconsistent_scripts():
    with pytest.raises(ValueError):
        apply_opcodes("abc", "abc", [("equal", 0, 2, 0, 2)])  # does not reach the end
    with pytest.raises(ValueError):
        apply_opcodes("abc", "abd", [("equal", 0, 3, 0, 3)])  # equal over different text
    with pytest.raises(ValueError):
        apply_opcodes("abc", "ab", [("equal", 0, 1, 0, 1), ("delete", 2, 3, 1, 1)])  # gap


def test_span_helpers():
    assert merge_spans([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == [(0, 3), (5, 9)]
    assert delete_spans("0123456789", [(1, 3), (8, 10)]) == "034567"
    assert span_overlap([(0, 5), (10, 20)], [(3, 12), (15, 16)]) == 2 + 2 + 1


# ---- properties -----------------------------------------------------------------------------------------------


texts = st.text(alphabet="ab \n.x", max_size=40)


@settings(max_examples=400, deadline=None)
@given(a=texts, b=texts, max_block=st.sampled_from([0, 8, 20_000]), join=st.sampled_from([0, 2]))
def test_opcodes_reconstruct_the_rewrite(a, b, max_block, join):
    ops = align(a, b, max_block_chars=max_block, join_equal_lines=join)
    assert apply_opcodes(a, b, ops) == b
    assert all(i1 < i2 or j1 < j2 for _t, i1, i2, j1, j2 in ops)  # no empty opcode


@st.composite
def deletion_pairs(draw):
    words = st.sampled_from(["Home", "the", "the", "a", "cat", " ", "  ", "|", ".", "Share", "x"])
    lines = draw(st.lists(st.lists(words, max_size=6).map("".join), min_size=1, max_size=12))
    a = "\n".join(lines)
    keep = draw(st.lists(st.booleans(), min_size=len(a), max_size=len(a)))
    b = "".join(ch for ch, k in zip(a, keep) if k)
    return a, b


@settings(max_examples=400, deadline=None)
@given(pair=deletion_pairs())
def test_a_deletion_only_rewrite_aligns_as_deletions_only(pair):
    a, b = pair
    ops = align(a, b)
    assert apply_opcodes(a, b, ops) == b
    assert only_deletions(ops)
    assert delete_spans(a, deletion_spans(ops)) == b


def test_pure_line_deletion_agrees_with_whole_text_difflib():
    a = "\n".join(f"paragraph {i}: " + "lorem ipsum " * (i % 5) for i in range(40))
    lines = a.split("\n")
    b = "\n".join(line for i, line in enumerate(lines) if i % 4)
    ref = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    assert delete_spans(a, deletion_spans(align(a, b))) == delete_spans(a, deletion_spans(ref)) == b
