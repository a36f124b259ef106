from __future__ import annotations

import math

import pytest

from refinex_datatrove.eval.metrics import (
    GoldDoc,
    GoldFormatError,
    align_lines,
    evaluate,
    format_table,
    keep_from_gold_text,
    load_gold,
    new_words,
    score_document,
)
from refinex_datatrove.program import execute_document, whole_document


NAV = "Home | News | Sport"
BUDGET = "The council approved the budget on Monday."
SHARE = "Share on Facebook"
VOTE = "Councillors voted 7 to 2 in favour."
RELATED = "Related: Budget 2023"
COOKIES = "Cookies help us deliver our services."
DOC_A = f"{NAV}\n{BUDGET}\n{SHARE}\n{VOTE}\n{RELATED}\n{COOKIES}"
KEEP_A = (False, True, False, True, False, False)
# the refiner deletes lines 1, 4 (a mistake) and 6; it keeps 2, 3 and 5
REFINED_A = f"{BUDGET}\n{SHARE}\n{RELATED}"

DOC_B = "Subscribe now\nAdvertisement"
KEEP_B = (False, False)
REFINED_B = "Advertisement"


def gold_a() -> GoldDoc:
    return GoldDoc("a", DOC_A, KEEP_A, "article")


def gold_b() -> GoldDoc:
    return GoldDoc("b", DOC_B, KEEP_B, "forum")


def test_line_confusion_by_hand():
    s = score_document(gold_a(), REFINED_A)
    # deleted {1, 4, 6}; gold deletes {1, 3, 5, 6}
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 1, 2, 1)
    assert s.del_precision == pytest.approx(2 / 3)
    assert s.del_recall == pytest.approx(2 / 4)
    assert s.del_f1 == pytest.approx(4 / 7)
    # kept lines {2, 3, 5}; gold keeps {2, 4}
    assert s.keep_precision == pytest.approx(1 / 3)
    assert s.keep_recall == pytest.approx(1 / 2)
    assert s.keep_f1 == pytest.approx(2 / 5)


def test_character_figures_by_hand():
    s = score_document(gold_a(), REFINED_A)
    assert s.gold_keep_chars == len(BUDGET) + len(VOTE)
    assert s.char_keep == pytest.approx(len(BUDGET) / (len(BUDGET) + len(VOTE)))
    noise = len(NAV) + len(SHARE) + len(RELATED) + len(COOKIES)
    assert s.noise_removal == pytest.approx((len(NAV) + len(COOKIES)) / noise)


def test_micro_and_macro():
    res = evaluate({"a": REFINED_A, "b": REFINED_B}, [gold_a(), gold_b()], baselines=())
    c = res.methods["ours"].corpus
    # pooled: tp = 2 + 1, fp = 1 + 0, fn = 2 + 1
    assert c["del_precision"] == pytest.approx(3 / 4)
    assert c["del_recall"] == pytest.approx(3 / 6)
    assert c["del_f1"] == pytest.approx(6 / 10)
    # doc b: P = 1, R = 1/2, F1 = 2/3
    assert c["del_precision_macro"] == pytest.approx((2 / 3 + 1) / 2)
    assert c["del_f1_macro"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert res.methods["ours"].groups["forum"]["del_f1"] == pytest.approx(2 / 3)


def test_partly_edited_line_counts_as_kept_and_its_chars_are_counted():
    text = f"{NAV}\n{BUDGET}"
    program = 'remove_lines(1, 1)\nremove_str(2, " on Monday")'
    refined = execute_document(text, whole_document(text, program)).text
    assert refined == "The council approved the budget."
    s = score_document(GoldDoc("x", text, (False, True)), refined)
    assert (s.tp, s.fp, s.fn, s.tn) == (1, 0, 0, 1)
    assert s.gold_keep_chars_kept == len("The council approved the budget.")
    assert s.char_keep == pytest.approx(len("The council approved the budget.") / len(BUDGET))


def test_line_emptied_by_remove_str_counts_as_deleted():
    text = f"{SHARE}\n{BUDGET}"
    refined = execute_document(text, whole_document(text, f'remove_str(1, "{SHARE}")')).text
    assert refined == "\n" + BUDGET
    s = score_document(GoldDoc("x", text, (False, True)), refined)
    assert (s.tp, s.fp, s.fn, s.tn) == (1, 0, 0, 1)


def test_undefined_figures_are_none_not_zero():
    keep_all = score_document(gold_a(), DOC_A)
    assert keep_all.del_precision is None  # nothing deleted
    assert keep_all.del_recall == 0.0
    assert keep_all.del_f1 == 0.0
    clean = score_document(GoldDoc("c", BUDGET, (True,)), BUDGET)
    assert clean.del_precision is None and clean.del_recall is None and clean.del_f1 is None
    res = evaluate({"c": BUDGET}, [GoldDoc("c", BUDGET, (True,))], baselines=())
    assert res.methods["ours"].corpus["del_f1_macro"] is None


def test_new_words_catch_an_inserted_word_and_deletions_add_none():
    assert new_words(DOC_A, REFINED_A) == (0, 7 + 3 + 3)
    inserted = REFINED_A.replace("approved", "quickly approved")
    n_new, n_out = new_words(DOC_A, inserted)
    assert n_new == 1
    s = score_document(gold_a(), inserted)
    assert s.new_words == 1
    res = evaluate({"a": inserted}, [gold_a()], baselines=("gold",))
    assert res.methods["ours"].corpus["new_words_per_1k"] == pytest.approx(1000 / n_out)
    assert res.methods["gold"].corpus["new_words_per_1k"] == 0.0


def test_token_ratio_whitespace_and_custom_tokenizer():
    g = GoldDoc("t", "a b c d\ne f", (True, False))
    assert score_document(g, "a b c d").out_in_ratio == pytest.approx(4 / 6)
    s = score_document(g, "a b c d", tokenizer=len)
    assert (s.in_tokens, s.out_tokens) == (len("a b c d\ne f"), len("a b c d"))


def test_untouched_emptied_dropped_shares():
    gold = [GoldDoc("u", "one line here.", (True,)), GoldDoc("e", "x\ny", (False, False)), GoldDoc("d", "z", (False,))]
    res = evaluate({"u": "one line here.", "e": "", "extra": "not gold"}, gold, baselines=())
    c = res.methods["ours"].corpus
    assert (c["untouched"], c["emptied"], c["dropped"]) == (pytest.approx(1 / 3),) * 3
    docs = {d.id: d for d in res.methods["ours"].docs}
    assert docs["d"].dropped and not docs["d"].emptied
    assert docs["d"].tp == 1  # a dropped document deleted everything
    assert docs["e"].emptied and not docs["e"].dropped
    assert res.unknown_ids == ["extra"]


def test_duplicate_lines_credit_the_labelled_copy():
    lines = ["Menu", "Intro text.", "Menu", "Body text."]
    keep = (False, True, True, True)  # the second "Menu" is content
    text = "\n".join(lines)
    refined = "\n".join(lines[1:])
    assert align_lines(lines, refined.split("\n")) == [None, 0, 1, 2]
    assert align_lines(lines, ["Menu", "Body text."], prefer=keep) == [None, None, 0, 1]
    s = score_document(GoldDoc("m", text, keep), refined)
    assert (s.tp, s.fp, s.fn, s.tn) == (1, 0, 0, 3)


def test_repeated_block_moves_as_a_whole():
    lines = ["A", "B", "x", "y", "A", "B", "end"]
    keep = (False, False, False, False, True, True, True)
    assert align_lines(lines, ["A", "B", "end"], prefer=keep) == [None, None, None, None, 0, 1, 2]


def test_rewritten_line_kept_when_half_its_tokens_survive():
    lines = ["the quick brown fox jumps", "over the lazy dog today"]
    refined = ["The quick brown cat jumps", "completely different words"]
    assert align_lines(lines, refined) == [0, None]


def test_greedy_fallback_agrees_on_deletions():
    lines = [f"line {i} with text" for i in range(30)]
    refined = [ln.replace(" with", "") for ln in lines[::3]]
    full = align_lines(lines, refined)
    greedy = align_lines(lines, refined, max_block_cells=0)
    assert full == greedy
    assert [j for j in full if j is not None] == list(range(10))
    assert all(full[i] is not None for i in range(0, 30, 3))


def test_gold_baseline_is_perfect_and_keep_all_matches_keep_share():
    res = evaluate({}, [gold_a(), gold_b()])
    gold = res.methods["gold"].corpus
    assert gold["del_f1"] == 1.0 and gold["char_keep"] == 1.0 and gold["noise_removal"] == 1.0
    keep_all = res.methods["keep-all"].corpus
    assert keep_all["keep_precision"] == pytest.approx(2 / 8)
    assert keep_all["untouched"] == 1.0
    assert list(res.methods) == ["ours", "keep-all", "c4-lines", "gold"]


def test_keep_from_gold_text_and_load_gold():
    gold_text = f"{BUDGET}\n{VOTE}"
    assert keep_from_gold_text(DOC_A, gold_text) == KEEP_A
    recs = [
        {"id": "a", "noisy": DOC_A, "keep": [int(k) for k in KEEP_A], "gold_projected": gold_text, "page_type": "x"},
        {"id": "b", "noisy": DOC_B, "keep": [0, 0], "gold_projected": ""},
    ]
    by_labels = load_gold(recs, group_key="page_type")
    by_text = load_gold(recs, gold_text_key="gold_projected")
    assert [g.keep for g in by_labels] == [g.keep for g in by_text] == [KEEP_A, KEEP_B]
    assert by_labels[0].group == "x" and by_labels[1].group is None
    assert [g.id for g in load_gold(recs, ids=["b"])] == ["b"]
    assert [g.id for g in load_gold(recs, limit=1)] == ["a"]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"noisy": "x", "keep": [1]}, "no usable 'id'"),
        ({"id": "a", "keep": [1]}, "'noisy' is missing"),
        ({"id": "a", "noisy": "x\ny", "keep": [1]}, "1 'keep' labels for 2 lines"),
        ({"id": "a", "noisy": "x", "keep": [2]}, "must be 0 or 1"),
        ({"id": "a", "noisy": "x", "keep": "1"}, "expected a list"),
        ({"id": "a", "noisy": "x"}, "no 'keep' labels"),
    ],
)
def test_bad_gold_records_are_named(record, message):
    with pytest.raises(GoldFormatError, match=message):
        load_gold([record])


def test_duplicate_gold_id_is_an_error():
    with pytest.raises(GoldFormatError, match="duplicate id"):
        load_gold([{"id": "a", "noisy": "x", "keep": [1]}] * 2)


def test_unknown_baseline_and_name_collision():
    with pytest.raises(ValueError, match="unknown baseline"):
        evaluate({}, [gold_a()], baselines=("nope",))
    with pytest.raises(ValueError, match="collides"):
        evaluate({}, [gold_a()], name="gold")


def test_table_shows_methods_and_percentages():
    res = evaluate({"a": REFINED_A}, [gold_a()])
    table = format_table(res)
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert set(rows) == {"ours", "keep-all", "c4-lines", "gold"}
    assert rows["ours"][2:5] == [f"{100 * 2 / 3:.1f}", "50.0", f"{100 * 4 / 7:.1f}"]
    assert rows["keep-all"][2] == "-"


def test_result_to_dict_is_json_ready():
    import json

    res = evaluate({"a": REFINED_A}, [gold_a()])
    d = json.loads(json.dumps(res.to_dict()))
    assert d["methods"]["ours"]["docs"][0]["del_f1"] == pytest.approx(4 / 7)
    assert math.isclose(d["methods"]["ours"]["corpus"]["del_recall"], 0.5)


def test_metrics_baselines_and_report_import_no_datatrove():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import refinex_datatrove.eval.metrics, refinex_datatrove.eval.baselines, refinex_datatrove.eval.report\n"
        "print(','.join(sorted(m for m in ('datatrove', 'torch', 'transformers', 'vllm') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_wiped_chunks_needs_every_content_line_deleted_and_half_of_them_gold_content() -> None:
    from refinex_datatrove.eval.metrics import wiped_chunks

    lines = ["a" * 8, "b" * 8, "", "c" * 8, "d" * 8, "e" * 8]
    # window 18 (a line costs its characters and its line break): [a, b], [blank, c], [d, e]
    keep = [True, False, False, True, True, False]
    assert wiped_chunks(lines, keep, [True] * 6, 18) == (3, 3)  # half of a chunk kept by the gold is enough
    assert wiped_chunks(lines, keep, [True, False, True, True, True, True], 18) == (3, 2)  # b survives
    assert wiped_chunks(lines, [False, False, False, True, False, False], [True] * 6, 18) == (3, 1)  # < half
    assert wiped_chunks(lines, [False] * 6, [True] * 6, 18) == (3, 0)  # gold deletes everything: not content lost
    assert wiped_chunks(["", " "], [True, True], [True, True], 16) == (0, 0)  # blank chunks are not counted


def test_lost_documents_only_where_the_gold_keeps_a_line() -> None:
    from refinex_datatrove.eval.metrics import GoldDoc, score_document

    content = GoldDoc("x", "nav\nbody text", (False, True))
    noise = GoldDoc("y", "nav\n   ", (False, True))  # the kept line is blank
    assert score_document(content, "").lost and score_document(content, None).lost
    assert not score_document(content, "body text").lost
    assert not score_document(noise, "").lost
    assert score_document(content, "").chunks == 0  # no window: no chunk figure
    s = score_document(content, "nav", window=4)
    assert (s.chunks, s.chunks_wiped) == (2, 1)
