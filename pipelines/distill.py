"""Distil RefineX programs and SFT records from (raw document, refined document) pairs.

Two modes, chosen by the config:

* **expert** (``expert:`` set, ``distill.source: rewrite``): an expert LLM rewrites each document under the
  deletion-only prompt (``ExpertRefiner``), then the rewrite is distilled into programs;
* **field** (``expert: null``, ``distill.source: field``): the refined text is already in a metadata field,
  e.g. WCXB's ``gold_projected``; or ``distill.source: rewrite`` over documents written by an earlier expert run.

Pipeline: JsonlReader -> [ExpertRefiner -> JsonlWriter(rewrites)] -> ProgramDistiller(exclusions)
-> SFTRecordWriter -> JsonlWriter(documents). At the end of a local run the counts per rejection reason are
printed from the executor's merged stats.

Usage (from the repository root):

    python pipelines/distill.py --config pipelines/configs/distill_wcxb.yaml
    python pipelines/distill.py --config pipelines/configs/distill.yaml --set executor.executor=slurm --dryrun
"""

from __future__ import annotations

import sys
from typing import Any

from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter

from refinex_datatrove.distill.to_program import DistillConfig
from refinex_datatrove.launch import (
    ExecutorArgs,
    dryrun_report,
    load_config,
    make_executor,
    make_parser,
    read_merged_stats,
    step_stats,
    submitted_jobs,
)
from refinex_datatrove.llm.base import GenerationParams
from refinex_datatrove.steps.distill import ProgramDistiller
from refinex_datatrove.steps.expert import ExpertRefiner
from refinex_datatrove.steps.sft_records import SFTRecordWriter


SECTIONS = {"executor", "reader", "expert", "distill", "output"}
OUTPUT_KEYS = {"documents", "sft_records", "sft_format", "exclusions", "rewrites", "compression"}


def build_pipeline(config: dict[str, Any], backend: Any = None) -> list[Any]:
    """The pipeline steps described by ``config``.

    Args:
        config: the resolved configuration (see ``pipelines/configs/distill*.yaml``).
        backend: an LLM backend instance overriding ``expert.backend`` (tests, notebooks).
    """
    unknown = set(config) - SECTIONS
    if unknown:
        raise ValueError(f"unknown config section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
    out = dict(config.get("output") or {})
    if set(out) - OUTPUT_KEYS:
        raise ValueError(f"unknown output key(s) {sorted(set(out) - OUTPUT_KEYS)}; known: {sorted(OUTPUT_KEYS)}")
    compression = out.get("compression", "gzip")

    pipeline: list[Any] = [JsonlReader(**config["reader"])]
    expert = config.get("expert")
    if expert:
        expert = dict(expert)
        params = expert.pop("params", None)
        if params is not None:
            params = GenerationParams(**{**params, "stop": tuple(params.get("stop", ()))})
        if backend is not None:
            expert["backend"] = backend
        pipeline.append(ExpertRefiner(params=params, **expert))
        if out.get("rewrites"):
            pipeline.append(JsonlWriter(out["rewrites"], compression=compression))

    distill = dict(config.get("distill") or {})
    filters = DistillConfig(**(distill.pop("config", None) or {}))
    exclusions = JsonlWriter(out["exclusions"], compression=compression) if out.get("exclusions") else None
    pipeline.append(ProgramDistiller(config=filters, exclusion_writer=exclusions, **distill))
    if out.get("sft_records"):
        pipeline.append(
            SFTRecordWriter(
                output_folder=out["sft_records"],
                compression=compression,
                fmt=out.get("sft_format", "prompt_completion"),
            )
        )
    if out.get("documents"):
        pipeline.append(JsonlWriter(out["documents"], compression=compression))
    return pipeline


def summary(logging_dir: str) -> str:
    """Counts per rejection reason and the round-trip rate, from the merged stats of a finished local run."""
    stats = step_stats(read_merged_stats(logging_dir), ProgramDistiller.name)
    total, emitted = stats.get("total", 0), stats.get("forwarded", 0)
    lines = [f"documents: {total}", f"emitted: {emitted}", f"rejected: {stats.get('dropped', 0)}"]
    for label in sorted(k for k in stats if k.startswith("rejected_")):
        lines.append(f"  {label.removeprefix('rejected_')}: {stats[label]}")
    roundtrip = stats.get("roundtrip_ok", 0)
    rate = f"{roundtrip / emitted:.2%}" if emitted else "n/a"
    lines.append(f"round-trip (programs re-executed give the deletion target): {roundtrip}/{emitted} = {rate}")
    lines.append(f"deletion target equals the refined text exactly: {stats.get('matches_refined', 0)}/{emitted}")
    for label in ("docs_keep_all", "programs", "programs_keep_all", "ops_remove_lines", "ops_remove_str"):
        lines.append(f"{label}: {stats.get(label, 0)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, backend: Any = None) -> int:
    args = make_parser(__doc__.split("\n", 1)[0]).parse_args(argv)
    config = load_config(args.config, args.overrides)
    executor_args = ExecutorArgs.from_dict(config.get("executor"))
    config["executor"] = executor_args.to_dict()
    executor = make_executor(build_pipeline(config, backend=backend), executor_args)
    if args.dryrun:
        print(dryrun_report(config, {"distill": executor}))
        return 0
    executor.run()
    if executor_args.executor == "local":
        print(summary(executor_args.logging_dir))
    else:
        print(submitted_jobs({"distill": executor}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
