"""Refine a corpus with a trained refine model: FineWeb-style filters, annotate, execute, quality filter, write.

Pipeline (built by :func:`refinex_datatrove.pipelines.build_refine_pipeline`, shared with ``refinex refine``):

    JsonlReader | ParquetReader
    -> URLFilter -> LanguageFilter -> GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter
       -> FineWebQualityFilter                      (datatrove, examples/fineweb.py order; each toggleable)
    -> RefineModelAnnotator -> ProgramExecutor -> QualityFilter
    -> JsonlWriter | ParquetWriter                  (exclusions of every filter in their own folders)

Usage (from the repository root):

    python pipelines/refine.py --config pipelines/configs/refine.yaml --set reader.data_folder=data/in
    python pipelines/refine.py --config pipelines/configs/refine_slurm.yaml --dryrun

For very large runs with a managed ``vllm serve`` and resume inside tasks, see ``pipelines/refine_two_stage.py``.
"""

from __future__ import annotations

import sys
from typing import Any

from refinex_datatrove.launch import (
    ExecutorArgs,
    dryrun_report,
    load_config,
    make_executor,
    make_parser,
    submitted_jobs,
)
from refinex_datatrove.pipelines import build_refine_pipeline, format_summary, merge_completed_stats, refine_summary


def main(argv: list[str] | None = None, backend: Any = None) -> int:
    args = make_parser(__doc__.split("\n", 1)[0], default_config="pipelines/configs/refine.yaml").parse_args(argv)
    config = load_config(args.config, args.overrides)
    executor_args = ExecutorArgs.from_dict(config.get("executor"))
    config["executor"] = executor_args.to_dict()
    executor = make_executor(build_refine_pipeline(config, backend=backend), executor_args)
    if args.dryrun:
        print(dryrun_report(config, {"refine": executor}))
        return 0
    executor.run()
    if executor_args.executor == "local":
        merge_completed_stats(executor_args.logging_dir)  # a resumed run: every completed task, not only this launch's
        print(format_summary(refine_summary(executor_args.logging_dir)))
    else:
        print(submitted_jobs({"refine": executor}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
