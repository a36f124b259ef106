"""Run ``pipelines/refine.py`` with the deterministic scripted backend, for the kill-and-resume test.

    python -m tests.resilience.refine_runner --input IN --output OUT --logs LOGS [--tasks 6 --workers 2]

Run from the repository root. ``$REFINEX_TEST_DELAY`` slows every request down (see
:func:`tests.resilience.scripted_models.slow_nav_remover`); the programs do not depend on it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import yaml

from refinex_datatrove.llm.scripted import ScriptedBackend
from tests.resilience.scripted_models import slow_nav_remover


ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--logs", required=True)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    config = {
        "executor": {"executor": "local", "tasks": args.tasks, "workers": args.workers, "logging_dir": args.logs},
        "reader": {"format": "jsonl", "data_folder": args.input, "glob_pattern": "*.jsonl"},
        "filters": dict.fromkeys(["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"], False),
        "annotate": {"model": "scripted", "window": 400, "batch_size": 2},
        "output": {"folder": f"{args.output}/refined", "excluded": f"{args.output}/excluded", "compression": "gzip"},
    }
    config_path = Path(args.logs).with_suffix(".yaml")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("refinex_pipeline_refine", ROOT / "pipelines" / "refine.py")
    refine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refine)
    return refine.main(["--config", str(config_path)], backend=ScriptedBackend(slow_nav_remover))


if __name__ == "__main__":
    sys.exit(main())
