from __future__ import annotations

import pytest

from refinex_datatrove.expert_protocol import (
    DEFAULT_WINDOW,
    ExpertStatus,
    assemble_expert_result,
    build_expert_requests,
    parse_expert_output,
)
from refinex_datatrove.llm.base import Generation
from refinex_datatrove.program import Chunk
from refinex_datatrove.prompts import load_prompt


PROMPT = load_prompt("expert_refine_v1")


def answer(refined: str, reason: str = "Removed the menu.") -> str:
    return f"modification_reason: [doc]{reason}[/doc]\nrefined_text: [doc]{refined}[/doc]"


def window_text(request) -> str:
    user = request.messages[-1]["content"]
    return user.split("Input: [doc]", 1)[1].rsplit("[/doc]", 1)[0]


# --- parse_expert_output -------------------------------------------------------------------------------------


def test_parse_well_formed():
    parsed = parse_expert_output(answer("Body line one.\nBody line two."), "stop")
    assert parsed.status == ExpertStatus.OK
    assert parsed.refined_text == "Body line one.\nBody line two."
    assert parsed.reason == "Removed the menu."


def test_parse_empty_refined_text_is_valid():
    parsed = parse_expert_output(answer("", reason="Only an ad."), "stop")
    assert parsed.status == ExpertStatus.OK
    assert parsed.refined_text == ""


@pytest.mark.parametrize(
    "output",
    [
        "Sure! Here is the result.\n\n" + answer("Kept text."),
        answer("Kept text.") + "\n\nLet me know if you need anything else.",
        "**modification_reason:** [doc]menu[/doc]\n**refined_text:** [doc]Kept text.[/doc]",
        "modification_reason: [doc]menu[/doc] refined_text: [doc]Kept text.[/doc]",
        "Modification_Reason: [doc]menu[/doc]\nRefined_Text:\n[doc]\nKept text.\n[/doc]",
    ],
)
def test_parse_tolerates_chatter_and_formatting(output):
    parsed = parse_expert_output(output, "stop")
    assert parsed.status == ExpertStatus.OK
    assert parsed.refined_text == "Kept text."


def test_parse_keeps_doc_tags_inside_the_document():
    inner = "Use [doc] and [/doc] tags.\nrefined_text: [doc]not a label[/doc] here"
    parsed = parse_expert_output(answer(inner), "stop")
    assert parsed.status == ExpertStatus.OK
    assert parsed.refined_text == inner


def test_parse_reason_mentioning_the_field_name():
    out = "modification_reason: [doc]The refined_text keeps the body.[/doc]\nrefined_text: [doc]Body.[/doc]"
    parsed = parse_expert_output(out, "stop")
    assert parsed.refined_text == "Body."
    assert parsed.reason == "The refined_text keeps the body."


def test_parse_truncated_output():
    out = "modification_reason: [doc]menu[/doc]\nrefined_text: [doc]Body that goes on and o"
    parsed = parse_expert_output(out, "length")
    assert parsed.status == ExpertStatus.TRUNCATED
    assert parsed.refined_text is None
    assert parsed.reason == "menu"


def test_parse_truncated_after_a_doc_tag_inside_the_document():
    out = "refined_text: [doc]Text with a literal [/doc] inside and then the cut happ"
    assert parse_expert_output(out, "length").status == ExpertStatus.TRUNCATED


def test_parse_length_with_complete_answer_is_ok():
    parsed = parse_expert_output(answer("Body."), "length")
    assert parsed.status == ExpertStatus.OK
    assert parsed.refined_text == "Body."


def test_parse_truncated_in_reason():
    assert parse_expert_output("modification_reason: [doc]I removed the na", "length").status == "truncated"


def test_parse_missing_closing_tag_after_normal_stop():
    # e.g. the closing tag was a stop string and is not part of the output
    parsed = parse_expert_output("modification_reason: [doc]x[/doc]\nrefined_text: [doc]Body.\n", "stop")
    assert parsed.status == ExpertStatus.OK
    assert parsed.refined_text == "Body."


def test_parse_missing_opening_tag_with_closing_tag():
    parsed = parse_expert_output("refined_text: Body.[/doc]", "stop")
    assert parsed.status == ExpertStatus.OK
    assert parsed.refined_text == "Body."


@pytest.mark.parametrize(
    "output",
    [
        "",
        "I cannot help with that.",
        "modification_reason: [doc]menu[/doc]",
        "refined_text: Body without any tag",
        "Here is the cleaned text: [doc]Body[/doc]",
    ],
)
def test_parse_unparseable(output):
    parsed = parse_expert_output(output, "stop")
    assert parsed.status == ExpertStatus.UNPARSEABLE
    assert parsed.refined_text is None


def test_parse_transport_error():
    assert parse_expert_output("", "error").status == ExpertStatus.FAILED


# --- build_expert_requests ------------------------------------------------------------------------------------


def test_short_document_is_one_window_with_the_rendered_prompt():
    text = "Home | About\nA {braced} $dollar paragraph."
    pairs = build_expert_requests(text, PROMPT)
    assert len(pairs) == 1
    chunk, request = pairs[0]
    assert chunk == Chunk(0, 2)
    assert request.messages == PROMPT.render(DOCUMENT=text)
    assert window_text(request) == text
    assert DEFAULT_WINDOW == 48_000


def test_long_document_is_split_into_line_aligned_windows():
    lines = [f"line {i:03d} " + "x" * 40 for i in range(100)]
    text = "\n".join(lines)
    pairs = build_expert_requests(text, PROMPT, window=1000, unit="chars")
    assert len(pairs) > 1
    rebuilt = "\n".join(window_text(req) for _, req in pairs)
    assert rebuilt == text
    starts = [c.start for c, _ in pairs]
    assert starts == sorted(starts) and starts[0] == 0
    for chunk, request in pairs:
        assert window_text(request) == "\n".join(lines[chunk.start : chunk.end])
        assert sum(len(line) + 1 for line in lines[chunk.start : chunk.end]) <= 1000


def test_overlong_line_gets_no_request():
    text = "short\n" + "y" * 50 + "\nshort again"
    pairs = build_expert_requests(text, PROMPT, window=20)
    sent = [window_text(req) for _, req in pairs]
    assert "y" * 50 not in "".join(sent)
    assert sent == ["short", "short again"]


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_empty_document_gets_no_request(text):
    assert build_expert_requests(text, PROMPT) == []
    assert assemble_expert_result(text, []).status == ExpertStatus.EMPTY_INPUT


# --- assemble_expert_result -----------------------------------------------------------------------------------


def _gen(text: str, finish: str = "stop", p: int = 10, c: int = 5, error: str | None = None) -> Generation:
    return Generation(text=text, finish_reason=finish, prompt_tokens=p, completion_tokens=c, error=error)


def test_assemble_multi_window_document():
    text = "nav a\nkeep 1\nkeep 2\nnav b\nkeep 3"
    windows = [Chunk(0, 3), Chunk(3, 2)]
    result = assemble_expert_result(
        text, [(windows[0], _gen(answer("keep 1\nkeep 2"))), (windows[1], _gen(answer("keep 3", "footer")))]
    )
    assert result.status == ExpertStatus.OK
    assert result.text == "keep 1\nkeep 2\nkeep 3"
    assert result.prompt_tokens == 20 and result.completion_tokens == 10
    assert result.n_windows == 2
    assert result.reason == "Removed the menu.\n\nfooter"
    assert result.finish_reason == "stop"


def test_assemble_drops_fully_deleted_windows_without_blank_lines():
    text = "a\nb\nc"
    result = assemble_expert_result(
        text, [(Chunk(0, 1), _gen(answer("a"))), (Chunk(1, 1), _gen(answer(""))), (Chunk(2, 1), _gen(answer("c")))]
    )
    assert result.text == "a\nc"


def test_assemble_keeps_skipped_lines_verbatim():
    long_line = "z" * 50
    text = f"nav\n{long_line}\nbody"
    pairs = build_expert_requests(text, PROMPT, window=20)
    result = assemble_expert_result(
        text, [(c, _gen(answer("" if window_text(r) == "nav" else "body"))) for c, r in pairs]
    )
    assert result.status == ExpertStatus.OK
    assert result.text == f"{long_line}\nbody"
    assert result.n_skipped_windows == 1


@pytest.mark.parametrize(
    ("second", "status", "finish"),
    [
        (_gen("refined_text: [doc]cut", finish="length"), ExpertStatus.TRUNCATED, "length"),
        (_gen("no fields here"), ExpertStatus.UNPARSEABLE, "stop"),
        (_gen("", finish="error", error="HTTP 500"), ExpertStatus.FAILED, "error"),
    ],
)
def test_assemble_worst_window_wins(second, status, finish):
    result = assemble_expert_result("a\nb", [(Chunk(0, 1), _gen(answer("a"))), (Chunk(1, 1), second)])
    assert result.status == status
    assert result.text is None
    assert result.finish_reason == finish
    if status == ExpertStatus.FAILED:
        assert result.error == "HTTP 500"
