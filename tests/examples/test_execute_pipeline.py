from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from refinex_datatrove.metadata import META_KEY
from refinex_datatrove.program import is_deletion_of

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "execute_pipeline.py"
INPUT = REPO / "examples" / "data" / "wcxb_programs.jsonl"


def _read_file(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def _read(folder: Path) -> list[dict]:
    return [d for f in sorted(folder.rglob("*.jsonl")) for d in _read_file(f)]


def test_example_pipeline_runs_offline_and_only_deletes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, str(EXAMPLE), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]

    inputs = {d["id"]: d for d in _read_file(INPUT)}
    assert len(inputs) == 40
    outputs = _read(tmp_path / "output")
    removed = _read(tmp_path / "removed")
    out_ids, removed_ids = [d["id"] for d in outputs], [d["id"] for d in removed]
    # every document is accounted for exactly once
    assert sorted(out_ids + removed_ids) == sorted(inputs)
    assert outputs, "the example should keep some documents"
    assert all(d["metadata"].get("filter_reason") for d in removed)

    executed = 0
    for doc in outputs + removed:
        assert is_deletion_of(inputs[doc["id"]]["text"], doc["text"]), doc["id"]
        ex = doc["metadata"].get(META_KEY, {}).get("exec")
        if ex and ex["status"] == "executed":
            executed += 1
            assert ex["chars_before"] == len(inputs[doc["id"]]["text"])
    assert executed > 0

    # the programs ran on the texts they were written for: no mismatch, nothing malformed
    stats = json.loads((tmp_path / "logs" / "stats.json").read_text())
    step = next(s for s in stats if "RefineX execute" in s["name"])["stats"]
    assert "program_mismatch" not in step and "malformed_program" not in step
    count = step["executed"]
    assert (count["total"] if isinstance(count, dict) else count) == executed
    assert f"40 documents in, {len(outputs)} out" in res.stdout
