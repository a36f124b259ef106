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

from refinex_datatrove.launch import run_script
from refinex_datatrove.recipes import two_stage_stages
from refinex_datatrove.run_stats import finish_local_run


def main(argv: list[str] | None = None) -> int:
    return run_script(
        __doc__.split("\n", 1)[0],
        argv,
        two_stage_stages,
        finish_local_run,
        default_config="pipelines/configs/refine_two_stage.yaml",
    )


if __name__ == "__main__":
    sys.exit(main())
