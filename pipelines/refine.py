"""Refine a corpus with a trained refine model: FineWeb-style filters, annotate, execute, quality filter, write.

Pipeline (built by :func:`refinex_datatrove.recipes.build_refine_pipeline`, shared with ``refinex refine``):

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

from refinex_datatrove.launch import run_script
from refinex_datatrove.recipes import refine_stages
from refinex_datatrove.run_stats import finish_local_run


def main(argv: list[str] | None = None, backend: Any = None) -> int:
    return run_script(
        __doc__.split("\n", 1)[0],
        argv,
        lambda config: refine_stages(config, backend),
        finish_local_run,
        default_config="pipelines/configs/refine.yaml",
    )


if __name__ == "__main__":
    sys.exit(main())
