"""The conservative decision rule: the pure function pinned on crafted inputs, then its path through the annotator
(stats, chunk status, metadata) with the scripted backend, and through the rollout (no likelihoods there)."""

from __future__ import annotations

import asyncio

import pytest
from datatrove.data import Document

from refinex_datatrove.llm.base import FIRST_TOP_LOGPROBS, TOKEN_LOGPROBS, Generation
from refinex_datatrove.llm.scripted import ScriptedBackend
from refinex_datatrove.metadata import META_KEY
from refinex_datatrove.refine_model.decision import (
    RULE_OFF,
    DecisionRule,
    Likelihood,
    Verdict,
    decide,
    deleted_share,
    keep_all_first_logprob,
    likelihood_from_extra,
    margin,
)
from refinex_datatrove.refine_model.requests import ChunkStatus
from refinex_datatrove.steps.annotate import AnnotateStat, RefineModelAnnotator, make_annotate_rollout
from refinex_datatrove.steps.execute import ProgramExecutor

LINES = ["Home | News", "", "The river rose by two metres.", "Shelters opened.", "Share this"]


def test_deleted_share_counts_non_blank_lines_within_the_chunk() -> None:
    assert deleted_share("keep_all()", LINES) == 0
    assert deleted_share("remove_lines(1, 5)", LINES) == 1
    assert deleted_share("remove_lines(1, 2)", LINES) == 0.25  # line 2 is blank: 1 of 4 content lines
    assert deleted_share("remove_lines(1, 1)\nremove_lines(1, 3)", LINES) == 0.5  # overlaps count once
    assert deleted_share("remove_lines(4, 99)", LINES) == 0.5  # clipped to the chunk
    assert deleted_share("remove_lines(3, 1)", LINES) == 0  # inverted: the executor skips it
    assert deleted_share('remove_str(3, "two")\nnot a call', LINES) == 0
    assert deleted_share("remove_lines(1, 2)", ["", "  "]) == 0


def test_keep_all_first_token_from_the_top_tokens() -> None:
    assert keep_all_first_logprob({"remove": -0.1, "keep": -2.5, " keep": -3.0, "k": -4.0}) == -2.5
    assert keep_all_first_logprob({" keep_": -1.0}) == -1.0  # leading whitespace aside
    # not among the top tokens: the least likely of them bounds it from above
    assert keep_all_first_logprob({"remove": -0.1, "re": -2.0}) == -2.0
    assert keep_all_first_logprob({}) is None
    assert keep_all_first_logprob({"": -0.5, "remove": -1.0}) == -1.0  # an empty token matches nothing


def test_likelihood_from_extra() -> None:
    extra = {TOKEN_LOGPROBS: [-1.0, -0.5, -0.25], FIRST_TOP_LOGPROBS: {"remove": -1.0, "keep": -0.75}}
    assert likelihood_from_extra(extra) == Likelihood(first=-1.0, program=-1.75, keep_all=-0.75)
    assert likelihood_from_extra({}) is None
    assert likelihood_from_extra({TOKEN_LOGPROBS: [], FIRST_TOP_LOGPROBS: {"keep": -1.0}}) is None
    assert likelihood_from_extra({TOKEN_LOGPROBS: [-1.0], FIRST_TOP_LOGPROBS: {}}) is None
    assert likelihood_from_extra({TOKEN_LOGPROBS: [float("nan")], FIRST_TOP_LOGPROBS: {"keep": -1.0}}) is None


def test_margin_by_score() -> None:
    lk = Likelihood(first=-0.5, program=-3.0, keep_all=-2.0)
    assert margin(lk, "first") == 1.5
    assert margin(lk, "program") == -1.0


@pytest.mark.parametrize(
    ("program", "likelihood", "rule", "verdict", "kept"),
    [
        # not drastic (1 of 4 content lines): accepted whatever the likelihood
        ("remove_lines(1, 1)", Likelihood(-5.0, -9.0, -0.1), DecisionRule(margin=2.0), Verdict.NOT_DRASTIC, True),
        # drastic, the model prefers it to keep_all() by 3 nats: accepted
        ("remove_lines(1, 5)", Likelihood(-0.05, -0.3, -3.05), DecisionRule(margin=2.0), Verdict.CONFIDENT, True),
        # drastic, only 1 nat ahead: overruled
        ("remove_lines(1, 5)", Likelihood(-0.3, -0.6, -1.3), DecisionRule(margin=2.0), Verdict.OVERRULED, False),
        # exactly on the margin: accepted
        ("remove_lines(1, 5)", Likelihood(-0.5, -0.6, -2.5), DecisionRule(2.0, score="first"), Verdict.CONFIDENT,
         True),
        # half the content lines is drastic at min_share 0.5, not at 0.75
        ("remove_lines(4, 5)", Likelihood(-1.0, -1.0, -0.5), DecisionRule(margin=0.0), Verdict.OVERRULED, False),
        ("remove_lines(4, 5)", Likelihood(-1.0, -1.0, -0.5), DecisionRule(0.0, 0.75), Verdict.NOT_DRASTIC, True),
        # the whole program's likelihood: a long unlikely program loses against keep_all()
        ("remove_lines(1, 5)", Likelihood(-0.1, -4.0, -3.0), DecisionRule(2.0, score="first"), Verdict.CONFIDENT,
         True),
        ("remove_lines(1, 5)", Likelihood(-0.1, -4.0, -3.0), DecisionRule(2.0, score="program"),
         Verdict.OVERRULED, False),
        # a negative margin is a looser rule
        ("remove_lines(1, 5)", Likelihood(-2.0, -2.0, -1.0), DecisionRule(margin=-1.5), Verdict.CONFIDENT, True),
        # no likelihoods: accepted, and said so
        ("remove_lines(1, 5)", None, DecisionRule(margin=2.0), Verdict.UNSCORED, True),
        # the rule off
        ("remove_lines(1, 5)", Likelihood(-9.0, -9.0, -0.1), RULE_OFF, Verdict.OFF, True),
    ],
)
def test_decide(program, likelihood, rule, verdict, kept) -> None:
    d = decide(program, LINES, likelihood, rule)
    assert d.verdict == verdict
    assert d.program == (program if kept else "keep_all()")
    assert d.overruled is (not kept)


def test_rule_arguments_are_checked() -> None:
    for bad in ({"min_share": 0}, {"min_share": 1.5}, {"score": "mean"}, {"margin": float("inf")}):
        with pytest.raises(ValueError):
            DecisionRule(**bad)


# ------------------------------------------------------------------------------------------------ annotator

BODY = [
    "The river flooded the lower town on Tuesday after three days of heavy rain in the hills.",
    "Volunteers filled sandbags through the night while the council opened two shelters.",
]


def _scored(text: str, first: float, rest: float, keep: float) -> Generation:
    """A scripted answer with likelihoods: ``first`` for its first token, ``keep`` for keep_all()'s."""
    extra = {TOKEN_LOGPROBS: [first, rest], FIRST_TOP_LOGPROBS: {"remove": first, "keep": keep}}
    return Generation(text=text, finish_reason="stop", completion_tokens=2, extra=extra)


def _refiner(request, params):
    """Per chunk: NAV-only chunks are wiped with confidence, UNSCORED ones lose their first line without
    likelihoods, the chunk of BODY[1] is kept, any other prose chunk is wiped hesitantly. The annotator asks for
    likelihoods only when the rule is on."""
    lines = [row.split("] ", 1)[1] for row in request.prompt.split("\n") if row.startswith("[")]
    if any("UNSCORED" in line for line in lines):
        return "remove_lines(1, 1)"
    assert params.logprobs is not None
    if all(line.startswith("NAV") for line in lines):
        return _scored(f"remove_lines(1, {len(lines)})", -0.01, -0.1, -6.0)
    if BODY[1] in lines:
        return _scored("keep_all()", -0.1, -0.1, -0.1)
    return _scored(f"remove_lines(1, {len(lines)})", -0.6, -0.1, -0.8)


def _docs() -> list[Document]:
    # window 100: "prose" is three chunks ([NAV a, NAV b], [BODY 0], [BODY 1]); the others one chunk each
    return [
        Document(text=f"NAV a\nNAV b\n{BODY[0]}\n{BODY[1]}", id="prose"),
        Document(text="NAV a\nNAV b\nNAV c", id="nav"),
        Document(text=f"UNSCORED\n{BODY[0]}", id="unscored"),
    ]


def test_annotator_overrules_drastic_programs_and_counts_them() -> None:
    step = RefineModelAnnotator(model="scripted", backend=ScriptedBackend(_refiner), window=100)
    out = list(step.run(iter(_docs())))
    chunks = {d.id: d.metadata[META_KEY]["program"]["chunks"] for d in out}
    nav, hesitant, kept = chunks["prose"]
    assert (nav["status"], nav["program"], nav["overruled_program"]) == ("ok", "remove_lines(1, 2)", None)
    assert nav["margin"] == pytest.approx(5.89)  # the whole program (-0.11) against keep_all() (-6)
    assert hesitant["status"] == ChunkStatus.OVERRULED == "overruled"
    assert hesitant["program"] == "keep_all()" and hesitant["overruled_program"] == "remove_lines(1, 1)"
    assert hesitant["margin"] == pytest.approx(0.1)
    assert (kept["status"], kept["program"]) == ("ok", "keep_all()")
    # sure of itself, but the program would empty the document: the document guard keeps it
    (whole,) = chunks["nav"]
    assert (whole["status"], whole["program"], whole["overruled_program"]) == (
        "overruled", "keep_all()", "remove_lines(1, 3)")
    (unscored,) = chunks["unscored"]
    assert (unscored["status"], unscored["program"], unscored["margin"]) == ("ok", "remove_lines(1, 1)", None)
    assert step.stats[AnnotateStat.OVERRULED].total == 1
    assert step.stats[AnnotateStat.OVERRULED_DOCUMENT].total == 1
    assert step.stats[AnnotateStat.DRASTIC_ACCEPTED].total == 1
    assert step.stats[AnnotateStat.DRASTIC_UNSCORED].total == 1
    # documents in = documents out, none emptied
    executed = {d.id: d.text for d in ProgramExecutor().run(iter(out))}
    assert executed == {"prose": f"{BODY[0]}\n{BODY[1]}", "nav": "NAV a\nNAV b\nNAV c", "unscored": BODY[0]}


def test_document_guard() -> None:
    from refinex_datatrove.program import Chunk
    from refinex_datatrove.refine_model.decision import empties_document
    from refinex_datatrove.refine_model.requests import assemble_annotations

    lines = ["NAV", "", "Body"]
    assert empties_document([("remove_lines(1, 1)", lines[:2]), ("remove_lines(1, 1)", lines[2:])])
    assert not empties_document([("remove_lines(1, 1)", lines[:2]), ("keep_all()", lines[2:])])
    assert not empties_document([("remove_lines(1, 2)", ["", " "])])  # nothing to lose
    text = "\n".join(lines)
    chunks = [Chunk(0, 2), Chunk(2, 1)]
    gens = [Generation(text="remove_lines(1, 2)", finish_reason="stop")] * 2  # no likelihoods: unscored
    guarded = assemble_annotations(text, chunks, gens, DecisionRule())
    assert [a.status for a in guarded] == ["overruled", "overruled"]
    assert [a.verdict for a in guarded] == [Verdict.EMPTIES_DOCUMENT] * 2
    assert [a.program for a in guarded] == ["keep_all()"] * 2
    unguarded = assemble_annotations(text, chunks, gens, DecisionRule(keep_documents=False))
    assert [a.verdict for a in unguarded] == [Verdict.UNSCORED] * 2
    assert [a.status for a in assemble_annotations(text, chunks, gens, RULE_OFF)] == ["ok", "ok"]


def test_annotator_with_the_rule_off_keeps_every_program() -> None:
    backend = ScriptedBackend(lambda request, params: "remove_lines(1, 4)")
    step = RefineModelAnnotator(model="scripted", backend=backend, window=400, overrule_margin=None)
    out = list(step.run(iter(_docs()[:1])))
    chunk = out[0].metadata[META_KEY]["program"]["chunks"][0]
    assert (chunk["status"], chunk["program"]) == ("ok", "remove_lines(1, 4)")
    assert all(params.logprobs is None for _, params in backend.requests)
    assert step.stats[AnnotateStat.OVERRULED].total == 0


def test_rollout_applies_the_rule_but_has_no_likelihoods() -> None:
    """InferenceRunner drops the server's logprobs: the rollout counts drastic programs as unscored; the document
    guard, which needs no likelihood, still holds."""
    from datatrove.pipeline.inference.types import InferenceResult

    def rollout_for(wipe_prose: bool):
        async def generate(payload):
            prompt = payload["prompt"]
            n = prompt.count("\n[")
            if "NAV" in prompt or wipe_prose:
                return InferenceResult(text=f"remove_lines(1, {n})", finish_reason="stop", usage={})
            return InferenceResult(text="keep_all()", finish_reason="stop", usage={})

        doc = _docs()[0]
        return doc, asyncio.run(make_annotate_rollout(window=100)(doc, generate))

    doc, summary = rollout_for(wipe_prose=False)
    assert summary["overruled"] == 0 and summary["drastic_unscored"] == 1
    assert doc.metadata[META_KEY]["program"]["chunks"][0]["program"] == "remove_lines(1, 2)"
    doc, summary = rollout_for(wipe_prose=True)
    assert summary["overruled"] == 3 and summary["drastic_unscored"] == 0
    assert all(c["program"] == "keep_all()" for c in doc.metadata[META_KEY]["program"]["chunks"])


def test_refine_summary_prints_the_decision_rule_counts() -> None:
    from refinex_datatrove.run_stats import format_summary

    summary = {"documents_in": 3, "documents_out": 3, "excluded_total": 0, "excluded": {}, "chars_removed": 0,
               "lines_removed": 0, "calls": {}, "calls_skipped": {},
               "model": {"requests": 5, "overruled_drastic_chunk": 2, "drastic_accepted": 1}}
    text = format_summary(summary)
    assert ("decision rule: overruled_drastic_chunk=2, overruled_would_empty_document=0, drastic_accepted=1, "
            "drastic_unscored=0") in text
    summary["model"] = {"requests": 5}
    assert "decision rule" not in format_summary(summary)
