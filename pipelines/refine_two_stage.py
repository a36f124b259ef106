"""Refine a corpus in two datatrove stages: InferenceRunner annotation (GPU, resumable), then execute + filter.

    stage 1: JsonlReader | ParquetReader -> FineWeb filters
             -> InferenceRunner(rollout_fn=make_annotate_rollout(window, unit, max_tokens, guided),
                                output_writer=JsonlWriter(..., "${rank}_chunk_${chunk_index}.jsonl"),
                                checkpoints_local_dir=...)
    stage 2: JsonlReader(stage 1 output) -> ProgramExecutor -> QualityFilter -> writer      (depends=stage 1)

datatrove's ``InferenceRunner`` is a terminal step: it writes through its own writer and yields nothing, so the
CPU work after annotation is a second executor that waits for the first (``depends=``). The rollout renders
chunks with the same functions as ``RefineModelAnnotator`` and stores the programs in the same metadata.

Usage (from the repository root):

    python pipelines/refine_two_stage.py --config pipelines/configs/refine_two_stage.yaml --dryrun
    python pipelines/refine_two_stage.py --config pipelines/configs/refine_two_stage.yaml
"""

from __future__ import annotations

import sys

from refinex_datatrove.launch import (
    ExecutorArgs,
    dryrun_report,
    load_config,
    make_executor,
    make_parser,
    submitted_jobs,
)
from refinex_datatrove.pipelines import build_two_stage, format_summary, merge_completed_stats, refine_summary


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.split("\n", 1)[0], default_config="pipelines/configs/refine_two_stage.yaml")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    stage1_args = ExecutorArgs.from_dict(config.get("executor"))
    stage2_args = ExecutorArgs.from_dict(config.get("stage2_executor"), "stage2_executor")
    if stage1_args.executor != stage2_args.executor:
        raise ValueError("executor and stage2_executor must both be local or both slurm (datatrove's depends=)")
    config["executor"], config["stage2_executor"] = stage1_args.to_dict(), stage2_args.to_dict()
    stage1_steps, stage2_steps = build_two_stage(config)
    stage1 = make_executor(stage1_steps, stage1_args)
    stage2 = make_executor(stage2_steps, stage2_args, depends=stage1)
    if args.dryrun:
        print(dryrun_report(config, {"annotate (stage 1)": stage1, "execute + filter (stage 2)": stage2}))
        return 0
    stage2.run()  # runs stage 1 first (depends=)
    if stage2_args.executor == "local":
        merge_completed_stats(stage2_args.logging_dir)  # a resumed run: every completed task, not only this launch's
        print(format_summary(refine_summary(stage2_args.logging_dir)))
    else:  # stage 2 waits for stage 1 (afterok): it never starts when a stage-1 task fails
        print(submitted_jobs({"annotate (stage 1)": stage1, "execute + filter (stage 2)": stage2}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
