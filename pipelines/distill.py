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

from refinex_datatrove.launch import run_script
from refinex_datatrove.recipes import distill_stages, distill_summary


def main(argv: list[str] | None = None, backend: Any = None) -> int:
    return run_script(__doc__.split("\n", 1)[0], argv, lambda config: distill_stages(config, backend), distill_summary)


if __name__ == "__main__":
    sys.exit(main())
