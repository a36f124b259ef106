import dataclasses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refinex_datatrove.distill import to_program
from refinex_datatrove.distill.align import align, deletion_spans
from refinex_datatrove.distill.to_program import (
    DistillConfig,
    RejectReason,
    distill_document,
    distill_program,
    format_chunk_programs,
)
from refinex_datatrove.program import Chunk, ExecResult, delete_spans, execute_document, parse_program


def programs(result):
    return [cp.program for cp in result.chunk_programs]


def executed(original, result):
    return execute_document(original, result.chunk_programs).text


# ---- Algorithm 1 on hand-made pairs ------------------------------------------------------------------------------


def test_navigation_line_deleted():
    a = "Home | About | Contact\nThe real text is here.\nMore real text."
    b = "The real text is here.\nMore real text."
    res = distill_program(a, b)
    assert res.ok and res.rejection is None
    assert programs(res) == ["remove_lines(1, 1)"]
    assert res.op_counts == {"remove_lines": 1, "remove_str": 0, "keep_all": 0}
    assert res.deleted_spans == [(0, 23)]  # the 22 characters of line 1 and its line break
    assert res.deleted_chars == 23 and res.lines_removed == 1
    assert executed(a, res) == b


def test_consecutive_deleted_lines_are_grouped():
    a = "Menu\nHome\nProducts\nArticle text stays.\nFooter links\nCopyright 2024"
    b = "Article text stays."
    res = distill_program(a, b)
    assert programs(res) == ["remove_lines(1, 3)\nremove_lines(5, 6)"]
    assert res.op_counts["remove_lines"] == 2
    assert executed(a, res) == b


def test_partial_string_deleted():
    a = "Title line\nShare this: Facebook Twitter\nBody text here."
    b = "Title line\nFacebook Twitter\nBody text here."
    res = distill_program(a, b)
    assert programs(res) == ['remove_str(2, "Share this: ")']
    assert res.op_counts == {"remove_lines": 0, "remove_str": 1, "keep_all": 0}
    assert res.deleted_spans == [(11, 23)]
    assert executed(a, res) == b


def test_partial_deletion_spanning_two_lines_is_clipped_per_line():
    a = "Intro text kept. Read more >>\n<< Back to top and more\nBody."
    # deletes " Read more >>", the line break, and "<< Back to top " : one span over two lines
    b = "Intro text kept.and more\nBody."
    res = distill_program(a, b)
    # line 1 and 2 both keep content, so the deleted break (a line join) is dropped, not emitted
    assert programs(res) == ['remove_str(1, " Read more >>")\nremove_str(2, "<< Back to top ")']
    assert res.dropped_chars == 1
    assert executed(a, res) == "Intro text kept.\nand more\nBody."


def test_nav_text_deleted_but_blank_line_kept():
    a = "Nav links here\n\nReal content\n\nMore content"
    b = "\nReal content\n\nMore content"
    res = distill_program(a, b)
    assert programs(res) == ["remove_lines(1, 1)"]
    assert executed(a, res) == b


def test_nav_line_and_following_blank_line_deleted():
    a = "Nav links here\n\nReal content\n\nMore content"
    b = "Real content\n\nMore content"
    res = distill_program(a, b)
    assert programs(res) == ["remove_lines(1, 2)"]
    assert executed(a, res) == b


def test_line_text_deleted_but_its_break_left_is_a_whole_line_deletion():
    a = "A line of text\nNav nav nav\nB line of text"
    b = "A line of text\n\nB line of text"  # the expert left an empty line behind
    res = distill_program(a, b)
    assert programs(res) == ["remove_lines(2, 2)"]
    assert res.residue_chars == 1  # the left-over line break is absorbed
    assert executed(a, res) == "A line of text\nB line of text"


def test_whitespace_residue_counts_as_deleted_line_if_configured():
    a = "Title here\n   Subscribe now!\nBody text"
    b = "Title here\n   \nBody text"
    res = distill_program(a, b)
    assert programs(res) == ["remove_lines(2, 2)"]
    assert res.residue_chars == 4  # three spaces and a line break
    strict = distill_program(a, b, DistillConfig(whitespace_residue_deleted=False))
    assert programs(strict) == ['remove_str(2, "Subscribe now!")']
    assert executed(a, strict) == b


def test_last_line_deleted():
    a = "Body paragraph one.\nShare on Facebook"
    res = distill_program(a, "Body paragraph one.")
    assert programs(res) == ["remove_lines(2, 2)"]
    assert res.deleted_spans == [(19, 37)]  # the break before the last line, then the line


def test_whole_document_deleted():
    a = "Cookie banner text\nAccept all cookies"
    res = distill_program(a, "")
    assert programs(res) == ["remove_lines(1, 2)"]
    assert executed(a, res) == ""


def test_whitespace_only_partial_deletion_is_dropped_not_emitted():
    a = "foo  bar baz qux quux corge\nSubscribe to our newsletter"
    b = "foo bar baz qux quux corge"
    res = distill_program(a, b)
    assert programs(res) == ["remove_lines(2, 2)"]
    assert res.dropped_chars == 1
    kept = distill_program(a, b, DistillConfig(drop_whitespace_str=False))
    assert kept.rejection == RejectReason.STR_NOT_UNIQUE  # a lone space is never unique on this line


def test_non_unique_remove_str_rejects_the_pair():
    a = "Text[1] more text[1] end.\nsecond line of the doc"
    b = "Text more text[1] end."
    res = distill_program(a, b)
    assert res.rejection == RejectReason.STR_NOT_UNIQUE
    assert "[1]" in res.detail and "line 1" in res.detail
    assert res.chunk_programs == [] and not res.ok


# ---- filters ------------------------------------------------------------------------------------------------


NAV = "Navigation menu links here"  # 26 characters, deleted in the filter tests


@pytest.mark.parametrize("n, rejected", [(19, False), (20, True)])
def test_insertion_limit(n, rejected):
    a = f"The original sentence stays.\n{NAV}\nEnd."
    b = "The original sentence stays." + "Z" * n + "\nEnd."
    res = distill_program(a, b)
    if rejected:
        assert res.rejection == RejectReason.INSERTION_TOO_LONG
        assert res.chunk_programs == []
    else:
        assert res.ok and programs(res) == ["remove_lines(2, 2)"]
        assert res.max_rewrite_span == 19 and res.inserted_chars == 19
        # insertions are discarded: the program only deletes
        assert executed(a, res) == "The original sentence stays.\nEnd."


@pytest.mark.parametrize("n, rejected", [(19, False), (20, True)])
def test_replacement_limit_and_replaced_text_is_kept(n, rejected):
    digits = ("0123456789" * 2)[:n]
    a = f"Order {digits} is ready.\n{NAV}\nEnd."
    b = f"Order {'Q' * n} is ready.\nEnd."
    res = distill_program(a, b)
    if rejected:
        assert res.rejection == RejectReason.REPLACEMENT_TOO_LONG
    else:
        assert programs(res) == ["remove_lines(2, 2)"]
        assert executed(a, res) == f"Order {digits} is ready.\nEnd."  # the original characters stay


def test_replacement_length_is_the_longer_side():
    a = f"Price abcde today.\n{NAV}"
    b = "Price " + "Q" * 20 + " today."  # 5 characters replaced by 20
    assert distill_program(a, b).rejection == RejectReason.REPLACEMENT_TOO_LONG
    assert distill_program(a, b, DistillConfig(rewrite_span_limit=None)).ok


@pytest.mark.parametrize("k", range(1, 11))
def test_minimum_deleted_characters(k):
    a = "start ABCDEFGHIJKLMNOP end"
    b = a.replace("ABCDEFGHIJ"[:k], "", 1)
    res = distill_program(a, b)
    if k < 10:
        assert res.rejection == RejectReason.TOO_FEW_DELETED_CHARS
        assert res.deleted_chars == k
    else:
        assert programs(res) == ['remove_str(1, "ABCDEFGHIJ")']


def test_minimum_is_configurable():
    res = distill_program("start ABCDEFG end", "start BCDEFG end", DistillConfig(min_deleted_chars=1))
    assert programs(res) == ['remove_str(1, "A")']


def test_no_deletion_gives_keep_all():
    a = "Nothing to delete here.\nSecond line."
    res = distill_program(a, a)
    assert res.ok and programs(res) == ["keep_all()"]
    assert res.op_counts == {"remove_lines": 0, "remove_str": 0, "keep_all": 1}
    assert res.deleted_chars == 0 and res.deleted_spans == []
    # a small insertion only: still nothing deleted
    assert programs(distill_program(a, a.replace("here", "here, really"))) == ["keep_all()"]
    off = distill_program(a, a, DistillConfig(zero_deletions_keep_all=False))
    assert off.rejection == RejectReason.NO_DELETIONS


def test_config_is_frozen_and_validated():
    cfg = DistillConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.min_deleted_chars = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        DistillConfig(min_deleted_chars=-1)
    with pytest.raises(ValueError):
        DistillConfig(rewrite_span_limit=0)


def test_roundtrip_failure_is_rejected_never_emitted(monkeypatch):
    a = "Home | About | Contact\nThe real text is here."
    b = "The real text is here."
    monkeypatch.setattr(to_program, "execute_document", lambda text, progs, policy=None: ExecResult(text=text))
    res = distill_program(a, b)
    assert res.rejection == RejectReason.ROUNDTRIP_MISMATCH
    assert res.chunk_programs == [] and res.op_counts == {}


# ---- chunks ---------------------------------------------------------------------------------------------------


ROWS = [f"row{i} alpha beta gamma{i}" for i in range(9)]  # 22 characters each: 23 units with the break
DOC = "\n".join(ROWS)
WINDOW = 69  # exactly three rows per chunk: lines 1-3, 4-6, 7-9


def test_multi_chunk_programs_use_local_numbering():
    kept = [row for i, row in enumerate(ROWS) if i not in (2, 3, 4)]
    b = "\n".join(kept).replace("row7 ", "")
    res = distill_document(DOC, b, WINDOW, "chars")
    assert res.ok
    assert [cp.chunk for cp in res.chunk_programs] == [Chunk(0, 3), Chunk(3, 3), Chunk(6, 3)]
    # document lines 3-5 straddle chunks 1 and 2; "row7 " is on local line 2 of chunk 3
    assert programs(res) == ["remove_lines(3, 3)", "remove_lines(1, 2)", 'remove_str(2, "row7 ")']
    assert res.op_counts == {"remove_lines": 2, "remove_str": 1, "keep_all": 0}
    assert executed(DOC, res) == b
    text = format_chunk_programs(res.chunk_programs)
    assert text == (
        "# chunk lines 1-3\nremove_lines(3, 3)\n# chunk lines 4-6\nremove_lines(1, 2)\n"
        '# chunk lines 7-9\nremove_str(2, "row7 ")'
    )
    assert not parse_program(text).invalid


def test_chunk_without_deletions_gets_keep_all():
    b = "\n".join(ROWS[1:])
    res = distill_document(DOC, b, WINDOW, "chars")
    assert programs(res) == ["remove_lines(1, 1)", "keep_all()", "keep_all()"]
    assert res.op_counts["keep_all"] == 2


def test_words_unit():
    b = "\n".join(ROWS[:8])
    res = distill_document(DOC, b, 8, "words")  # 4 words a row: two rows per chunk
    assert [cp.chunk.start for cp in res.chunk_programs] == [0, 2, 4, 6, 8]
    assert programs(res)[-1] == "remove_lines(1, 1)"


def test_deletion_in_a_skipped_line_rejects_but_elsewhere_is_fine():
    long_line = "x" * 100 + " tracking pixel junk"
    a = f"short intro line\n{long_line}\nNavigation menu here"
    res = distill_document(a, f"short intro line\n{'x' * 100}", 50, "chars")
    assert res.rejection == RejectReason.EDIT_IN_SKIPPED_CHUNK
    ok = distill_document(a, f"short intro line\n{long_line}", 50, "chars")
    assert ok.ok
    assert [cp.chunk.skipped for cp in ok.chunk_programs] == [False, True, False]
    assert programs(ok) == ["keep_all()", "keep_all()", "remove_lines(1, 1)"]
    assert ok.op_counts["keep_all"] == 1  # skipped chunks are not counted


def test_single_chunk_entry_point_matches_a_huge_window():
    kept = [row for i, row in enumerate(ROWS) if i % 2]
    b = "\n".join(kept)
    one = distill_program(DOC, b)
    huge = distill_document(DOC, b, 10_000, "chars")
    expected = "remove_lines(1, 1)\nremove_lines(3, 3)\nremove_lines(5, 5)\nremove_lines(7, 7)\nremove_lines(9, 9)"
    assert programs(one) == programs(huge) == [expected]


# ---- property: reject with a reason, or round-trip exactly -------------------------------------------------------


WORDS = ["Home", "the", "the", "cat", "sat", "|", ".", "Share", "x", " ", "  ", "é", "\t", '"q"', "'", "\\", "\r"]


@st.composite
def documents(draw):
    lines = draw(st.lists(st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join), min_size=1, max_size=14))
    return "\n".join(lines)


@st.composite
def char_deletions(draw, text):
    n = len(text)
    spans = draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, 12)), max_size=6))
    drop = bytearray(n)
    for start, size in spans:
        drop[start : start + size] = b"\x01" * len(drop[start : start + size])
    return "".join(ch for ch, d in zip(text, drop) if not d)


ALLOWED = {None, RejectReason.TOO_FEW_DELETED_CHARS, RejectReason.STR_NOT_UNIQUE, RejectReason.EDIT_IN_SKIPPED_CHUNK}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), window=st.one_of(st.none(), st.integers(1, 60)), unit=st.sampled_from(["chars", "words"]))
def test_deletion_only_rewrites_reject_with_a_reason_or_round_trip(data, window, unit):
    original = data.draw(documents())
    refined = data.draw(char_deletions(original))
    if window is None:
        res = distill_program(original, refined)
    else:
        res = distill_document(original, refined, window, unit)
    assert res.rejection in ALLOWED, res.detail
    if not res.ok:
        assert res.chunk_programs == [] and res.detail
        return
    # chunk programs cover the document in order and parse cleanly
    starts = [cp.chunk.start for cp in res.chunk_programs]
    assert starts == sorted(starts) and starts[0] == 0
    assert res.chunk_programs[-1].chunk.end == original.count("\n") + 1
    assert all(not parse_program(cp.program).invalid for cp in res.chunk_programs)
    run = execute_document(original, res.chunk_programs)
    assert not run.skipped
    assert run.text == delete_spans(original, res.deleted_spans)
    # the tolerance rules only ever move whitespace between "deleted" and "kept"
    aligned = set()
    for s, e in deletion_spans(align(original, refined)):
        aligned.update(range(s, e))
    program = set()
    for s, e in res.deleted_spans:
        program.update(range(s, e))
    assert all(original[i].isspace() for i in aligned ^ program)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_whole_line_deletions_are_reproduced_exactly(data):
    original = data.draw(documents())
    lines = original.split("\n")
    keep = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    assume(not all(keep))
    refined = "\n".join(line for line, k in zip(lines, keep) if k)
    res = distill_program(original, refined)
    if res.rejection == RejectReason.TOO_FEW_DELETED_CHARS:
        assert len(original) - len(refined) < 10
        return
    assert res.ok, res.detail
    assert executed(original, res) == refined
    assert res.op_counts["remove_str"] == 0


@st.composite
def rewrites(draw, text):
    """Deletions plus insertions of short random strings anywhere."""
    out = draw(char_deletions(text))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(out)))
        out = out[:at] + draw(st.text(alphabet="catZ \n", max_size=25)) + out[at:]
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data(), window=st.one_of(st.none(), st.integers(5, 60)))
def test_any_rewrite_rejects_with_a_reason_or_round_trips(data, window):
    original = data.draw(documents())
    refined = data.draw(rewrites(original))
    if window is None:
        res = distill_program(original, refined)
    else:
        res = distill_document(original, refined, window, "chars")
    assert res.rejection != RejectReason.ROUNDTRIP_MISMATCH
    if res.ok:
        run = execute_document(original, res.chunk_programs)
        assert not run.skipped and run.text == delete_spans(original, res.deleted_spans)
        assert res.max_rewrite_span < 20
    else:
        assert isinstance(res.rejection, RejectReason) and res.detail


# ---- an expert that writes new text ------------------------------------------------------------------------------

CLAUSES = (
    ", and a brand new clause the expert invented",
    " This sentence was written by the expert.",
    " (according to sources the editor made up)",
    "; moreover the city will host the event again next year",
    " Read more about it in our weekly newsletter.",
    "the expert invented this",
)


def _bundled_rewrites() -> list[tuple[str, str, str]]:
    """(id, original, rewrite) for the bundled WCXB excerpts: the rewrite keeps the lines labelled main content."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "data" / "demo_web.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        lines = doc["text"].split("\n")
        out.append((doc["id"], doc["text"], "\n".join(x for x, k in zip(lines, doc["keep"], strict=True) if k)))
    return out


def test_invented_clauses_spliced_into_real_rewrites_at_random_places_are_rejected():
    import random

    rng = random.Random(20250703)
    checked = 0
    for doc_id, original, rewrite in _bundled_rewrites():
        if not distill_program(original, rewrite).ok:  # e.g. too few deleted characters: nothing to test here
            continue
        for _ in range(4):
            clause, pos = rng.choice(CLAUSES), rng.randrange(len(rewrite) + 1)
            res = distill_program(original, rewrite[:pos] + clause + rewrite[pos:])
            assert res.rejection in (RejectReason.INSERTION_TOO_LONG, RejectReason.INSERTED_TEXT), (
                doc_id, pos, clause, res.rejection, res.detail)
            checked += 1
    assert checked >= 100


def test_short_kept_lines_between_deleted_lines_are_carried_over_not_inserted():
    original = "\n".join(f"{i}\nnavigation link number {i}" for i in range(1, 16))
    rewrite = "\n".join(str(i) for i in range(1, 16))  # 1..15 kept, every other line deleted
    res = distill_program(original, rewrite)
    assert res.ok, (res.rejection, res.detail)
    assert res.max_inserted_run == 0
