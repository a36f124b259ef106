from __future__ import annotations

import json
from pathlib import Path

import pytest

from refinex_datatrove.eval import baselines
from refinex_datatrove.eval.baselines import C4LineRules, apply_keep_mask, c4_lines, keep_all
from refinex_datatrove.program import is_deletion_of


SAMPLE = Path("/work/shared/data/wcxb-dev/sample.jsonl")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("The council approved the budget.", None),
        ('He said "it works."', None),
        ("  Indented but fine sentence here!  ", None),
        ("Read more about it", "no_terminal_punc"),
        ("And then it stopped...", "no_terminal_punc"),
        ("Too short.", "too_few_words"),
        ("Please enable JavaScript in your browser.", "javascript"),
        ("This site uses cookies to improve things.", "policy"),
        ("By continuing you accept our Privacy Policy.", "policy"),
        ("Lorem ipsum dolor sit amet.", "lorem_ipsum"),
        ("function f() { return 1; } is code.", "curly_bracket"),
        ("It was shown before [1] in the paper [citation needed]", "no_terminal_punc"),
        ("It was shown before in the paper.[1]", None),
        ("a " + "x" * 1001 + " b c.", "too_long_word"),
        ("", "no_terminal_punc"),
    ],
)
def test_c4_line_reasons(line, reason):
    assert c4_lines.reason(line) == reason


def test_c4_rules_can_be_switched_off():
    relaxed = C4LineRules(filter_no_terminal_punct=False, min_words_per_line=-1, filter_javascript=False)
    assert relaxed.reason("Menu") is None
    assert relaxed.reason("Enable JavaScript") is None
    assert relaxed.reason("We use cookies") == "policy"


def test_c4_filter_keeps_lines_verbatim_and_only_deletes():
    text = "Home | About\nThe first real sentence is here.[2]\n  Another full sentence, indented.\n{json: 1}"
    out = c4_lines(text)
    assert out == "The first real sentence is here.[2]\n  Another full sentence, indented."
    assert is_deletion_of(text, out)
    assert keep_all(text) == text


def test_apply_keep_mask():
    assert apply_keep_mask("a\nb\nc", [1, 0, 1]) == "a\nc"
    assert apply_keep_mask("a\nb", [0, 0]) == ""
    with pytest.raises(ValueError, match="2 flags for 3 lines"):
        apply_keep_mask("a\nb\nc", [1, 1])


def test_constants_match_datatrove():
    from datatrove.pipeline.filters import c4_filters

    assert baselines.C4_END_PUNCTUATION == c4_filters.END_PUNCTUATION
    assert baselines.C4_ELLIPSIS == c4_filters.ELLIPSIS
    assert list(baselines.C4_POLICY_SUBSTRINGS) == c4_filters.POLICY_SUBSTRINGS
    assert baselines.C4_CITATION_REGEX.pattern == c4_filters.CITATION_REGEX.pattern


@pytest.mark.skipif(not SAMPLE.exists(), reason="WCXB sample not available")
def test_same_lines_as_datatrove_c4_quality_filter():
    """Where datatrove's filter keeps the document, it keeps exactly our lines (after its own normalisation)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters.c4_filters import C4QualityFilter

    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    compared = 0
    for rec in records:
        text = rec["noisy"]
        if text.splitlines() != text.split("\n"):
            continue  # datatrove splits on more than "\n"
        doc = Document(text=text, id=rec["id"])
        step = C4QualityFilter(min_num_sentences=-1)
        if step.filter(doc) is not True:
            continue  # a document-level drop (lorem ipsum / curly bracket), which our line filter does not do
        ours = [baselines.C4_CITATION_REGEX.sub("", ln.strip()) for ln in c4_lines(text).split("\n") if c4_lines(text)]
        assert doc.text == "\n".join(ours).strip(), rec["id"]
        compared += 1
    assert compared >= 20
