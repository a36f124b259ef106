"""Failures tell the truth: ``refinex refine`` against a real local HTTP endpoint (tests/fake_openai_server.py) that
goes down mid-run, is unreachable from the start, or whose run is killed with ``kill -9``.

README "Failure contract": a request is retried with backoff; if the endpoint stays down the task fails (exit 1),
nothing unrefined is written as refined, and a rerun without ``--force`` finishes exactly the unfinished tasks.
The summary and ``logs/stats.json`` always cover every completed task, also those of earlier launches.

Each run is the real command line in a subprocess (its own process group); the server runs in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fake_openai_server import FakeOpenAIServer, Reply
from tests.resilience.scripted_models import nav_endpoint_script


ROOT = Path(__file__).resolve().parents[2]
MODEL = "fake-refiner"
N_FILES, DOCS_PER_FILE = 4, 5


refine_script = nav_endpoint_script


def slow_script(delay: float):
    def script(body: dict) -> Reply:
        time.sleep(delay)
        return refine_script(body)

    return script


def make_inputs(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    docs = {}
    for f in range(N_FILES):
        with open(folder / f"part-{f}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(DOCS_PER_FILE):
                doc_id = f"f{f}-d{i}"
                docs[doc_id] = "\n".join([
                    f"NAV Home | News | Login {i}",
                    f"File {f} document {i}: the city council approved the new river bridge on Monday evening.",
                    "NAV Share | Print",
                    f"Work starts in spring and should take three years, the mayor said of document {i}.",
                ])
                fh.write(json.dumps({"id": doc_id, "text": docs[doc_id]}) + "\n")
    return docs


def expected(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.startswith("NAV"))


def command(tmp: Path, out: str, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "refinex_datatrove.cli", "refine", str(tmp / "in"), str(tmp / out),
        "--backend", "endpoint", "--base-url", url, "--model", MODEL, "--tasks", str(N_FILES), "--workers", "1",
        "--batch-size", "1", "--compression", "none", "--no-report", "--min-words", "0",
        "--backend-kwarg", "api_key_env=null", "--backend-kwarg", "timeout=2", *extra,
    ]


def run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def read_rows(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rows.append(json.loads(line))
                except ValueError:  # a line cut by kill -9
                    break
    return rows


def pairs(folder: Path) -> list[tuple[str, str]]:
    return sorted((r["id"], r["text"]) for r in read_rows(folder))


def reader_documents(logs: Path) -> int:
    stats = json.loads((logs / "stats.json").read_text(encoding="utf-8"))
    return sum(e["stats"].get("documents", {}).get("total", 0) for e in stats if "READER" in e["name"])


def step_totals(logs: Path, name: str) -> dict[str, int]:
    stats = json.loads((logs / "stats.json").read_text(encoding="utf-8"))
    (entry,) = [e for e in stats if name in e["name"]]
    return {k: v["total"] if isinstance(v, dict) else v for k, v in entry["stats"].items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, str], list[tuple[str, str]]]:
    """A clean run: its refined output is what every interrupted-and-resumed run must end with."""
    tmp = tmp_path_factory.mktemp("endpoint")
    docs = make_inputs(tmp / "in")
    with FakeOpenAIServer(script=refine_script, model=MODEL) as server:
        res = run(command(tmp, "clean", server.url))
    assert res.returncode == 0, res.stderr[-3000:]
    ref = pairs(tmp / "clean" / "refined")
    assert ref == sorted((i, expected(t)) for i, t in docs.items())
    assert "documents in: 20" in res.stdout
    return tmp, docs, ref


def stop_after(server: FakeOpenAIServer, n_requests: int, outage: float | None) -> threading.Thread:
    """Stop the server once it has answered ``n_requests`` completions; restart it on the same port after
    ``outage`` seconds (``None``: stays down)."""

    def watch() -> None:
        while len(server.completion_requests) < n_requests:
            time.sleep(0.005)
        server.stop()
        if outage is not None:
            time.sleep(outage)
            server.start()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_endpoint_down_mid_run_fails_the_task_writes_nothing_unrefined_and_a_rerun_finishes(reference):
    tmp, docs, ref = reference
    out = tmp / "outage"
    server = FakeOpenAIServer(script=slow_script(0.02), model=MODEL).start()
    url = server.url
    port = int(url.rsplit(":", 1)[1])
    try:
        watcher = stop_after(server, 7, outage=None)  # task 0 done (5 docs), task 1 two docs in: then down
        res = run(command(tmp, "outage", server.url, "--backend-kwarg", "max_retries=2",
                          "--backend-kwarg", "backoff_base=0.05", "--backend-kwarg", "backoff_max=0.1"))
        watcher.join(timeout=10)
        assert res.returncode == 1, res.stdout + res.stderr[-3000:]
        assert "1 of 4 tasks completed" in res.stderr and "without --force" in res.stderr
        assert url in res.stderr and "connection" in res.stderr
        # nothing unrefined is written as refined: every written document is its refined text
        written = read_rows(out / "refined")
        assert written and all(r["text"] == expected(docs[r["id"]]) for r in written)
        assert all(r["metadata"]["refinex"]["exec"]["status"] == "executed" for r in written)
        assert not any((out / "excluded").glob("*refinex_failed/*.jsonl"))  # an outage is no document fault
        # the summary and stats.json cover the completed task
        assert "documents in: 5" in res.stdout
        assert reader_documents(out / "logs") == 5

        # the endpoint is back: a rerun without --force runs the unfinished tasks only
        server = FakeOpenAIServer(script=refine_script, model=MODEL, port=port).start()
        again = run(command(tmp, "outage", server.url))
    finally:
        server.stop()
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Skipping 1 already completed tasks" in again.stderr
    assert pairs(out / "refined") == ref
    assert "documents in: 20" in again.stdout and "documents out: 20" in again.stdout
    assert reader_documents(out / "logs") == 20
    assert step_totals(out / "logs", "RefineX execute").get("applied_keep_all", 0) == 0


def test_a_short_outage_is_ridden_out_by_retries_and_counted(reference):
    tmp, _docs, ref = reference
    out = tmp / "blip"
    server = FakeOpenAIServer(script=slow_script(0.02), model=MODEL).start()
    try:
        watcher = stop_after(server, 7, outage=0.3)
        res = run(command(tmp, "blip", server.url, "--backend-kwarg", "max_retries=10",
                          "--backend-kwarg", "backoff_base=0.2", "--backend-kwarg", "backoff_max=1"))
        watcher.join(timeout=10)
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr[-3000:]
    assert pairs(out / "refined") == ref
    annotate = step_totals(out / "logs", "RefineX annotate")
    assert annotate["gen_retries"] >= 1 and annotate.get("gen_failed", 0) == 0
    assert "gen_retries=" in res.stdout


def test_endpoint_unreachable_from_the_start_is_one_clear_line_and_exit_2(reference, tmp_path):
    tmp, _docs, _ref = reference
    with FakeOpenAIServer(model=MODEL) as server:
        url = server.url  # nothing listens there once the block ends
    res = run(command(tmp, tmp_path.name + "-dead", url))
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert url in lines[0] and "unreachable" in lines[0] and "ConnectError" in lines[0]
    assert not (tmp / (tmp_path.name + "-dead") / "refined").exists()


def test_output_path_that_is_a_file_is_a_clean_error(reference, tmp_path):
    tmp, _docs, _ref = reference
    target = tmp / "a-file"
    target.write_text("not a folder\n")
    for extra in ((), ("--force",)):
        res = run(command(tmp, "a-file", "http://127.0.0.1:9", *extra))
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert "not a folder" in res.stderr
    assert target.read_text() == "not a folder\n"


def test_kill_9_of_a_4_task_run_with_a_partial_output_on_disk_then_resume_merges_all_stats(reference):
    tmp, docs, ref = reference
    out = tmp / "killed"
    with FakeOpenAIServer(script=slow_script(0.15), model=MODEL) as server:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        log = open(tmp / "killed.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(command(tmp, "killed", server.url), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        partial = out / "refined" / "00002.jsonl"
        deadline = time.monotonic() + 180
        try:
            while not (len(list((out / "logs" / "completions").glob("*"))) >= 2 and partial.exists()):
                assert proc.poll() is None, (tmp / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the run did not reach task 2 in time"
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            log.close()
        assert len(list((out / "logs" / "completions").glob("*"))) == 2
        assert partial.exists() and len(read_rows(out / "refined")) < len(docs)
        server.script = refine_script
        res = run(command(tmp, "killed", server.url))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Skipping 2 already completed tasks" in res.stderr
    assert pairs(out / "refined") == ref  # complete, no duplicate, identical to a clean run
    assert "documents in: 20" in res.stdout and "documents out: 20" in res.stdout
    assert reader_documents(out / "logs") == 20
    assert step_totals(out / "logs", "RefineX execute")["applied_remove_lines"] == 2 * len(docs)
