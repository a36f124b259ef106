"""Run ``pipelines/refine_two_stage.py`` on a small JSONL folder with datatrove's InferenceRunner starting a real
``vllm serve`` (server_type "vllm") on the CPU, for the kill-and-resume test of ``test_two_stage_serve.py``.

    python -m tests.vllm.two_stage_runner --model MERGED --input IN --work WORK

Run from the repository root with ``.venv-vllm``'s bin first on PATH (datatrove starts plain ``vllm``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import yaml


ROOT = Path(__file__).resolve().parents[2]

# One sequence at a time in the server: then a request's greedy output does not depend on which other requests
# share its batch, so a resumed run (other batches) must reproduce the uninterrupted one exactly.
SERVE_KWARGS = {"dtype": "float32", "enforce-eager": True, "max-num-seqs": 1, "seed": 0}


def config(model: str, input_folder: str, work: str, records_per_chunk: int) -> dict:
    return {
        "executor": {"executor": "local", "tasks": 1, "workers": 1, "logging_dir": f"{work}/logs1"},
        "stage2_executor": {"executor": "local", "tasks": 1, "workers": 1, "logging_dir": f"{work}/logs2"},
        "reader": {"format": "jsonl", "data_folder": input_folder, "glob_pattern": "*.jsonl"},
        "filters": dict.fromkeys(["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"], False),
        "inference": {
            "model": model,
            "server_type": "vllm",
            "model_max_context": 1024,
            "model_kwargs": SERVE_KWARGS,
            "max_concurrent_generations": 4,
            "max_concurrent_documents": 2,
            "records_per_chunk": records_per_chunk,
            "checkpoints_local_dir": f"{work}/checkpoints",
            "output_folder": f"{work}/annotated",
            "server_log_folder": f"{work}/server_logs",
            "max_tokens": 128,
            "guided": True,  # the rollout sends structured_outputs={"regex": ...} in every /v1/completions body
            "metric_interval": 600,
        },
        "output": {"format": "jsonl", "folder": f"{work}/refined", "excluded": f"{work}/excluded",
                   "compression": None},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--records-per-chunk", type=int, default=2)
    args = parser.parse_args(argv)
    path = Path(args.work) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config(args.model, args.input, args.work, args.records_per_chunk)))
    spec = importlib.util.spec_from_file_location("refinex_two_stage", ROOT / "pipelines" / "refine_two_stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--config", str(path)])


if __name__ == "__main__":
    sys.exit(main())
