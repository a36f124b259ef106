"""The stats of a finished run: datatrove's merged ``stats.json`` read back, merged over every completed task
(also those of earlier launches), and summarised as the refine report (documents in = out + excluded).

Used by ``refinex refine``, ``refinex distill`` and the ``pipelines/`` scripts; the datatrove import is inside
:func:`merge_completed_stats`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATS_JSON = "stats.json"


def read_stats_file(path: str | os.PathLike[str]) -> Any:
    """The parsed content of a datatrove stats file (``stats.json`` or ``stats/<rank>.json``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_merged_stats(logging_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The merged ``stats.json`` a finished local executor writes: one entry per pipeline step.

    Raises:
        FileNotFoundError: no merged stats (the run did not finish, or it was submitted to Slurm).
    """
    return read_stats_file(Path(logging_dir) / STATS_JSON)


def step_stats(merged: list[dict[str, Any]], name: str) -> dict[str, int | float]:
    """Totals of the first step whose name contains ``name``: ``{label: total}``."""
    for entry in merged:
        if name in entry.get("name", ""):
            return {label: _total(value) for label, value in entry.get("stats", {}).items()}
    raise KeyError(f"no step named like {name!r} in the stats ({[e.get('name') for e in merged]})")


def _total(value: Any) -> int | float:
    return value["total"] if isinstance(value, Mapping) else value


def refine_summary(logging_dir: str | Path) -> dict[str, Any]:
    """Figures of a finished local refine run, from the executor's merged ``stats.json``.

    Returns:
        ``{"documents_in", "documents_out", "excluded": {step name: n}, "excluded_total", "chars_removed",
        "lines_removed", "calls": {kind: n} (applied), "calls_skipped": {reason: n}, "model": {annotator stats}}``.
        ``documents_in == documents_out + excluded_total`` for a finished run.
    """
    merged = read_merged_stats(logging_dir)
    out: dict[str, Any] = {
        "documents_in": 0,
        "documents_out": 0,
        "excluded": {},
        "excluded_total": 0,
        "chars_removed": 0,
        "lines_removed": 0,
        "calls": {},
        "calls_skipped": {},
        "model": {},
    }
    for entry in merged:
        name, stats = entry.get("name", ""), entry.get("stats", {})
        totals = {k: _total(v) for k, v in stats.items()}
        if "READER" in name:
            unreadable = totals.get("read_excluded", 0)
            out["documents_in"] += totals.get("documents", 0) + unreadable
            if unreadable:
                out["excluded"]["unreadable records"] = unreadable
                out["excluded_total"] += unreadable
        elif "WRITER" in name:
            out["documents_out"] += totals.get("total", 0)
        elif "FILTER" in name:
            dropped = totals.get("dropped", 0)
            out["excluded"][name.split(": ", 1)[-1]] = dropped
            out["excluded_total"] += dropped
        if "RefineX execute" in name:
            out["chars_removed"] = totals.get("chars_removed", 0)
            out["lines_removed"] = totals.get("lines_removed", 0)
            out["calls"] = {k.removeprefix("applied_"): v for k, v in totals.items() if k.startswith("applied_")}
            out["calls_skipped"] = {
                k.removeprefix("skipped_"): v for k, v in totals.items() if k.startswith("skipped_")
            }
        if "RefineX annotate" in name:
            out["model"] = {k: v for k, v in totals.items() if k not in ("total", "forwarded")}
    return out


def merge_completed_stats(logging_dir: str | Path) -> int:
    """Rewrite ``logging_dir/stats.json`` as the merge of every *completed* task's ``stats/<rank>.json``.

    datatrove's local executor writes ``stats.json`` from the tasks it ran in that launch only, so after a resume
    it would count only the rerun tasks. Returns the number of tasks merged (0: nothing is written).
    """
    from datatrove.utils.stats import PipelineStats

    logs = Path(logging_dir)
    completions = logs / "completions"
    ranks = sorted(int(p.name) for p in completions.iterdir() if p.name.isdigit()) if completions.is_dir() else []
    merged, n = PipelineStats(), 0
    for rank in ranks:
        path = logs / "stats" / f"{rank:05d}.json"
        if path.is_file():
            merged += PipelineStats.from_json(read_stats_file(path))
            n += 1
    target = logs / STATS_JSON
    text = merged.to_json()
    if n and not (target.is_file() and target.read_text(encoding="utf-8") == text):  # untouched when nothing ran
        target.write_text(text, encoding="utf-8")
    return n


def format_summary(summary: Mapping[str, Any]) -> str:
    """A short human-readable report of :func:`refine_summary`."""
    lines = [
        f"documents in: {summary['documents_in']}",
        f"documents out: {summary['documents_out']}",
        f"documents excluded: {summary['excluded_total']}",
    ]
    lines += [f"  {name}: {n}" for name, n in summary["excluded"].items() if n]
    lines.append(f"chars removed by programs: {summary['chars_removed']} ({summary['lines_removed']} whole lines)")
    calls = ", ".join(f"{k}={v}" for k, v in sorted(summary["calls"].items())) or "none"
    lines.append(f"calls applied: {calls}")
    if summary["calls_skipped"]:
        lines.append("calls skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(summary["calls_skipped"].items())))
    model = summary["model"]
    if model:
        keys = (
            "requests",
            "chunks_skipped",
            "gen_truncated",
            "gen_failed",
            "gen_empty",
            "gen_retries",
            "tokens_in",
            "tokens_out",
        )
        lines.append("model: " + ", ".join(f"{k}={model[k]}" for k in keys if k in model))
        rule = ("overruled_drastic_chunk", "overruled_would_empty_document", "drastic_accepted", "drastic_unscored")
        if any(k in model for k in rule):
            lines.append("decision rule: " + ", ".join(f"{k}={model.get(k, 0)}" for k in rule))
        causes = {k: v for k, v in model.items() if k.startswith("gen_failed_")}
        if causes:
            lines.append(
                "failed requests by cause: "
                + ", ".join(f"{k.removeprefix('gen_failed_')}={v}" for k, v in sorted(causes.items()))
            )
    return "\n".join(lines)


def finish_local_run(logging_dir: str | Path) -> str:
    """After a local run: rewrite ``stats.json`` over every completed task (:func:`merge_completed_stats`) and
    return the refine summary text (:func:`format_summary`)."""
    merge_completed_stats(logging_dir)
    return format_summary(refine_summary(logging_dir))


__all__ = [
    "STATS_JSON",
    "finish_local_run",
    "format_summary",
    "merge_completed_stats",
    "read_merged_stats",
    "read_stats_file",
    "refine_summary",
    "step_stats",
]
