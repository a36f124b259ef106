"""The two-stage recipe with datatrove's InferenceRunner starting a real ``vllm serve`` (server_type "vllm") on the
CPU: an uninterrupted run, and a run killed (``kill -9`` of its whole process group, server included) right after
its first checkpoint and then rerun, give identical outputs with nothing lost or duplicated. The runs are guided,
so the rollout's ``structured_outputs`` payload meets the real server too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refinex_datatrove.program import is_deletion_of
from tests.vllm.conftest import ROOT, demo_docs, group_alive, vllm_env
from tests.vllm.test_offline_engine import invalid_calls


pytestmark = pytest.mark.vllm

N_DOCS, RECORDS_PER_CHUNK = 6, 2  # three checkpoint chunks of two documents


def start(tmp: Path, name: str, model: str) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "tests.vllm.two_stage_runner", "--model", model, "--input", str(tmp / "in"),
         "--work", str(tmp / name), "--records-per-chunk", str(RECORDS_PER_CHUNK)],
        cwd=ROOT, env=vllm_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def finish(proc: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"run did not finish within {timeout} s:\n{log.read_text(errors='replace')[-4000:]}")
    assert rc == 0, log.read_text(errors="replace")[-4000:]
    assert not group_alive(proc.pid), "a process of the run (vllm serve?) outlived it"


def rows(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.glob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def annotated(work: Path) -> dict[str, tuple[str, list]]:
    got = rows(work / "annotated")
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)), "duplicate documents in the stage-1 output"
    return {r["id"]: (r["text"], r["metadata"]["refinex"]["program"]["chunks"]) for r in got}


def refined(work: Path) -> list[tuple[str, str]]:
    got = sorted((r["id"], r["text"]) for r in rows(work / "refined"))
    assert len(got) == len({i for i, _ in got}), "duplicate documents in the stage-2 output"
    return got


@pytest.fixture
def runs():
    """The runs a test started; whatever is left of their process groups is killed at teardown."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.timeout(1800)
def test_kill_after_first_checkpoint_then_rerun_equals_uninterrupted(tmp_path, merged_dir, runs):
    t0 = time.monotonic()
    docs = demo_docs(N_DOCS)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    originals = {d["id"]: d["text"] for d in docs}

    reference = start(tmp_path, "reference", merged_dir)
    runs.append(reference)
    finish(reference, tmp_path / "reference.log")
    print(f"uninterrupted run {time.monotonic() - t0:.0f} s")
    expected = annotated(tmp_path / "reference")
    assert set(expected) == set(originals)
    chunks = [c for _, cs in expected.values() for c in cs]
    assert chunks and all(c["status"] in ("ok", "truncated", "empty") for c in chunks), chunks  # none failed
    assert any(c["program"] != "keep_all()" for c in chunks)
    bad = [(c["program"], c["n_lines"]) for c in chunks if invalid_calls(c["program"], c["n_lines"])]
    assert bad == [], "guided decoding through InferenceRunner let invalid calls through"
    expected_refined = refined(tmp_path / "reference")
    excluded = rows(tmp_path / "reference" / "excluded") if (tmp_path / "reference" / "excluded").is_dir() else []
    assert len(expected_refined) + len(excluded) == N_DOCS  # documents in = out + excluded
    assert all(is_deletion_of(originals[i], t) for i, t in expected_refined)

    victim = start(tmp_path, "victim", merged_dir)
    runs.append(victim)
    marker = tmp_path / "victim" / "checkpoints" / "last_chunk" / "00000.txt"
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert victim.poll() is None, (tmp_path / "victim.log").read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, "no checkpoint chunk completed in time"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)  # the executor and its vllm serve (same process group) at once
    victim.wait()
    deadline = time.monotonic() + 30
    while group_alive(victim.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_alive(victim.pid), "vllm serve outlived kill -9 of its run"
    print(f"killed after the first checkpoint at {time.monotonic() - t0:.0f} s")
    done_at_kill = int(marker.read_text().strip())
    assert done_at_kill < N_DOCS // RECORDS_PER_CHUNK - 1, "the kill must land before the last chunk"
    assert not (tmp_path / "victim" / "refined").exists() or len(refined(tmp_path / "victim")) < N_DOCS

    resumed = start(tmp_path, "victim", merged_dir)
    runs.append(resumed)
    finish(resumed, tmp_path / "victim.log")
    print(f"rerun done at {time.monotonic() - t0:.0f} s")
    got = annotated(tmp_path / "victim")
    assert got == expected
    assert refined(tmp_path / "victim") == expected_refined
    log = (tmp_path / "victim.log").read_text(errors="replace")
    assert log.count("Finished chunk 0") == 1  # chunk 0 was not redone by the rerun
