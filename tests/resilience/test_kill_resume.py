"""Kill and resume: ``kill -9`` the whole refine run mid-way, rerun it with the same logging_dir, and get exactly
the output of an uninterrupted run (sorted ``(id, text)``): no duplicate, no missing document.

The run is ``pipelines/refine.py`` (LocalPipelineExecutor, 6 input files, 6 tasks, 2 workers) with a deterministic
scripted backend, in a subprocess of its own process group (``tests/resilience/refine_runner.py``).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.resilience.scripted_models import expected_nav_removed


ROOT = Path(__file__).resolve().parents[2]
N_FILES, DOCS_PER_FILE = 6, 24


def make_inputs(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    docs = {}
    for f in range(N_FILES):
        with open(folder / f"part-{f}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(DOCS_PER_FILE):
                lines = []
                for j in range(14):
                    if j % 4 == 0:
                        lines.append(f"NAV Home | Section {j} | Login")
                    else:
                        lines.append(f"File {f} document {i} paragraph {j}: the river plant will open next spring "
                                     f"after three years of work [ad] by the city.")
                doc_id = f"f{f}-d{i}"
                docs[doc_id] = "\n".join(lines)
                fh.write(json.dumps({"id": doc_id, "text": docs[doc_id]}) + "\n")
    return docs


def start(tmp: Path, name: str, delay: float) -> subprocess.Popen:
    env = {**os.environ, "REFINEX_TEST_DELAY": str(delay), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "tests.resilience.refine_runner", "--input", str(tmp / "in"),
         "--output", str(tmp / name), "--logs", str(tmp / f"{name}-logs")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def read_output(folder: Path) -> list[tuple[str, str]]:
    rows = []
    for f in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            rows += [(r["id"], r.get("text", "")) for r in map(json.loads, fh)]
    return rows


def completions(logs: Path) -> int:
    folder = logs / "completions"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def wait(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"run did not finish within {timeout} s")


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_output(tmp_path):
    docs = make_inputs(tmp_path / "in")

    reference = start(tmp_path, "reference", delay=0.0)
    victim = start(tmp_path, "victim", delay=0.04)
    assert wait(reference, 300) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    expected = sorted(read_output(tmp_path / "reference" / "refined"))
    assert sorted((i, expected_nav_removed(t)) for i, t in docs.items()) == expected  # the run itself is right

    logs = tmp_path / "victim-logs"
    deadline = time.monotonic() + 240
    while completions(logs) < 1:
        assert victim.poll() is None, "the run ended before it could be killed: " + (
            tmp_path / "victim.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no task completed in time"
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)  # the executor and both pool workers at once
    victim.wait()
    done_at_kill = completions(logs)
    assert 1 <= done_at_kill < N_FILES, "the kill must land mid-run"
    partial = read_output_safely(tmp_path / "victim" / "refined")
    assert len(partial) < len(docs)

    resumed = start(tmp_path, "victim", delay=0.0)
    assert wait(resumed, 300) == 0, (tmp_path / "victim.log").read_text()[-3000:]
    assert completions(logs) == N_FILES
    got = read_output(tmp_path / "victim" / "refined")
    assert len(got) == len({i for i, _ in got}), "duplicate documents"
    assert sorted(got) == expected
    log = (tmp_path / "victim.log").read_text(errors="replace")
    assert f"Skipping {done_at_kill} already completed tasks" in log  # completed tasks were not redone


def read_output_safely(folder: Path) -> list[tuple[str, str]]:
    """What a killed run left: complete files read fully, a file cut mid-write read up to the cut."""
    rows = []
    for f in sorted(folder.glob("*.jsonl.gz")):
        try:
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rows.append(json.loads(line)["id"])
                    except ValueError:
                        break
        except (EOFError, OSError, zlib.error):
            continue
    return rows
