"""The pipeline scripts on a real one-node Slurm cluster (``slurm_cluster`` fixture, tests/slurm_cluster.py).

Each test runs a script the way a user does (``python pipelines/<name>.py --config ... --set executor.executor=
slurm ...`` from the repository root); the script submits datatrove's job array and merge-stats job with
``sbatch`` and returns, and the test waits for the scheduler:

* refine: a job array of 4 tasks over 300 documents (transformers backend, tiny offline model) writes exactly
  what a LocalPipelineExecutor run of the same config writes, and the merge job sums the stats of every rank;
* resume: ``scancel`` mid-run, relaunch the same command: only the ranks without a completion marker run again,
  and the outputs equal the uninterrupted run;
* two-stage: the execute + filter stage starts only after the annotate stage succeeded (``afterok``), and
  never starts when it failed;
* distill (field mode): the same outputs and stats as a local run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refinex_datatrove.metadata import META_KEY
from refinex_datatrove.program import REFINE_INSTRUCTION, is_deletion_of
from tests.jsonl_rows import read_jsonl_folder


pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]  # the scheduler's waits are bounded below

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "pipelines" / "configs"
N_FILES, DOCS_PER_FILE = 4, 75


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"pipeline_{name}_slurm", ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sets(values: dict[str, object]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def _submit(script: str, argv: list[str]) -> dict[str, str]:
    """Run ``pipelines/<script>.py`` as a user would (it submits and returns); ``{stage: array job id}``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, f"pipelines/{script}.py", *argv], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(re.findall(r"^(.+): submitted Slurm job (\d+);", proc.stdout, flags=re.MULTILINE))


def _jobs_of(cluster, array_id: str) -> list[dict[str, str]]:
    return [r for r in cluster.jobs() if r.get("ArrayJobId") == array_id]


def _totals(stats: list[dict]) -> list[tuple[str, dict]]:
    """Per step: the totals of every stat (timings left out: they differ between runs)."""
    return [
        (e["name"], {k: (v["total"] if isinstance(v, dict) else v) for k, v in e.get("stats", {}).items()})
        for e in stats
    ]


def _assert_stats_merged_over_ranks(logging_dir: Path, tasks: int) -> list[tuple[str, dict]]:
    """stats.json (written by the merge job) is the sum of the per-rank stats files; returns its totals."""
    per_rank = sorted((logging_dir / "stats").glob("*.json"))
    assert [p.stem for p in per_rank] == [f"{r:05d}" for r in range(tasks)]
    merged = _totals(json.loads((logging_dir / "stats.json").read_text()))
    summed: dict[str, dict] = {}
    for path in per_rank:
        for name, totals in _totals(json.loads(path.read_text())):
            step = summed.setdefault(name, {})
            for key, value in totals.items():
                step[key] = step.get(key, 0) + value
    assert [name for name, _ in merged] == list(summed)
    for name, totals in merged:
        assert totals == pytest.approx(summed[name]), name
    return merged


def _sorted_rows(folder: Path) -> list[dict]:
    rows = read_jsonl_folder(folder) if folder.exists() else []
    return sorted(rows, key=lambda r: r["id"])


# ---- data and model --------------------------------------------------------------------------------------------


def _web_doc(i: int) -> dict:
    kind = i % 10
    if kind == 7:  # one line over and over: GopherRepetitionFilter drops it
        return {"id": f"doc-{i:04d}", "text": "\n".join([f"buy cheap tickets now {i % 3}"] * 30)}
    if kind == 8:  # too short for the Gopher quality filter
        return {"id": f"doc-{i:04d}", "text": f"Menu {i}\nLogin"}
    lines = [
        "NAV Home | News | Sport | Weather",
        f"Report {i}: the council approved a new water plant for the river district after a long debate.",
        f"The project will cost about {10 + i % 40} million and should be finished within three years.",
        "Residents have complained for years about the taste of tap water during the hot summer months.",
        f"Engineers expect the plant to serve more than {20 + i} thousand households once it is running.",
    ]
    if kind % 2:
        lines.append("Officials said that the old pumping station will be kept as a museum for the town.")
    lines.append("NAV Share on Facebook | Share on X")
    return {"id": f"doc-{i:04d}", "text": "\n".join(lines), "url": f"https://news.example.org/{i}"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """300 small web documents in 4 JSON Lines files (one per task) and a tiny offline model folder."""
    from tests.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("slurm_corpus")
    data = root / "in"
    data.mkdir()
    for k in range(N_FILES):
        docs = [_web_doc(i) for i in range(k * DOCS_PER_FILE, (k + 1) * DOCS_PER_FILE)]
        (data / f"part{k}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return {"data": data, "model": build_tiny_model(root / "tiny"), "n_docs": N_FILES * DOCS_PER_FILE}


def _refine_argv(corpus, run: Path, **extra: object) -> list[str]:
    return ["--config", str(CONFIGS / "refine.yaml"), *_sets({
        "reader.data_folder": corpus["data"], "reader.glob_pattern": "*.jsonl",
        "annotate.model": corpus["model"], "annotate.backend": "transformers",
        "annotate.backend_kwargs": "{num_threads: 1}", "annotate.max_new_tokens": 12, "annotate.batch_size": 32,
        "executor.tasks": N_FILES, "executor.logging_dir": run / "logs",
        "output.folder": run / "refined", "output.excluded": run / "excluded", "output.compression": "null",
        **extra,
    })]


def _slurm(job_name: str, workers: int = -1) -> dict[str, object]:
    return {"executor.executor": "slurm", "executor.workers": workers, "executor.slurm.partition": "debug",
            "executor.slurm.cpus_per_task": 1, "executor.slurm.mem_per_cpu_gb": 1,
            "executor.slurm.time": "00:20:00", "executor.slurm.job_name": job_name}


@pytest.fixture(scope="module")
def local_refine(corpus, tmp_path_factory):
    """The same refine config run by a LocalPipelineExecutor: outputs, exclusions and merged stats."""
    run = tmp_path_factory.mktemp("local_refine")
    assert _load_script("refine").main(_refine_argv(corpus, run, **{"executor.workers": 1})) == 0
    return {
        "refined": _sorted_rows(run / "refined"),
        "excluded": _sorted_rows(run / "excluded"),
        "stats": _totals(json.loads((run / "logs" / "stats.json").read_text())),
    }


def _check_refine_outputs(run: Path, corpus, local_refine) -> None:
    refined, excluded = _sorted_rows(run / "refined"), _sorted_rows(run / "excluded")
    ids = [r["id"] for r in refined + excluded]
    assert len(ids) == len(set(ids)) == corpus["n_docs"]  # nothing lost, nothing twice
    assert refined == local_refine["refined"]
    assert excluded == local_refine["excluded"]
    assert refined and excluded  # the filters dropped some, the rest went through the model


# ---- tests -----------------------------------------------------------------------------------------------------


def test_refine_job_array_equals_a_local_run(slurm_cluster, corpus, local_refine, tmp_path):
    run = tmp_path / "slurm"
    jobs = _submit("refine", _refine_argv(corpus, run, **_slurm("refine_array")))
    array = jobs["refine"]
    launch = (run / "logs" / "launch_script.slurm").read_text()
    assert f"--array=0-{N_FILES - 1}\n" in launch and "--cpus-per-task=1\n" in launch
    assert "--partition=debug\n" in launch and "--time=00:20:00\n" in launch
    # venv_path: null -> the jobs run this interpreter's environment
    from refinex_datatrove.launch import job_environment

    venv, command = job_environment(None, None)
    assert (f"source {venv}\n" if venv else f"{command}\n") in launch

    states = slurm_cluster.wait_jobs([array], timeout=400)
    assert states == {f"{array}_{t}": "COMPLETED" for t in range(N_FILES)}
    finished = slurm_cluster.wait_all(timeout=120)  # the merge-stats job (afterok on the array)
    assert all(state == "COMPLETED" for job, state in finished.items() if int(job.split("_")[0]) >= int(array))
    assert sorted(p.name for p in (run / "logs" / "completions").iterdir()) == [f"{r:05d}" for r in range(N_FILES)]
    assert len(list((run / "logs" / "slurm_logs").glob(f"{array}_*.out"))) == N_FILES

    _check_refine_outputs(run, corpus, local_refine)
    merged = _assert_stats_merged_over_ranks(run / "logs", N_FILES)
    assert merged == local_refine["stats"]
    reader = dict(merged)[next(name for name, _ in merged if "READER" in name)]
    assert reader["documents"] == corpus["n_docs"] and reader["input_files"] == N_FILES
    from refinex_datatrove.run_stats import refine_summary

    summary = refine_summary(run / "logs")
    assert summary["documents_in"] == corpus["n_docs"] == summary["documents_out"] + summary["excluded_total"]
    assert summary["model"]["requests"] > 0


def test_resume_after_scancel_reruns_only_unfinished_ranks(slurm_cluster, corpus, local_refine, tmp_path):
    run = tmp_path / "resume"
    argv = _refine_argv(corpus, run, **_slurm("refine_resume", workers=2))  # --array=0-3%2
    first = _submit("refine", argv)["refine"]
    completions = run / "logs" / "completions"
    deadline = time.monotonic() + 300
    while not (completions.is_dir() and any(completions.iterdir())):
        assert time.monotonic() < deadline, slurm_cluster.states([first])
        time.sleep(0.5)
    # cancel the array and its merge-stats job (same job name) while the other ranks run or wait
    subprocess.run(["scancel", "--name", "refine_resume"], check=True, env=slurm_cluster.env())
    slurm_cluster.wait_all(timeout=120)
    done = {int(p.name) for p in completions.iterdir()}
    unfinished = sorted(set(range(N_FILES)) - done)
    assert unfinished, "every rank finished before scancel: nothing left to resume"
    assert any(state == "CANCELLED" for state in slurm_cluster.states([first]).values())
    marker_times = {r: (completions / f"{r:05d}").stat().st_mtime_ns for r in done}

    second = _submit("refine", argv)["refine"]  # the very same command
    assert json.loads((run / "logs" / "ranks_to_run.json").read_text()) == unfinished
    states = slurm_cluster.wait_jobs([second], timeout=400)
    assert states == {f"{second}_{t}": "COMPLETED" for t in range(len(unfinished))}
    slurm_cluster.wait_all(timeout=120)
    assert {r: (completions / f"{r:05d}").stat().st_mtime_ns for r in done} == marker_times  # not run again
    assert sorted(p.name for p in completions.iterdir()) == [f"{r:05d}" for r in range(N_FILES)]

    _check_refine_outputs(run, corpus, local_refine)
    assert _assert_stats_merged_over_ranks(run / "logs", N_FILES) == local_refine["stats"]

    third = _submit("refine", argv)  # everything done: nothing to submit
    assert third == {}


# ---- two stages: annotate (InferenceRunner) then execute + filter, depends= ---------------------------------------


def _delete_nav(body: dict) -> str:
    """The endpoint's 'model': delete the numbered lines that start with NAV."""
    prompt = body["prompt"]
    assert prompt.startswith(REFINE_INSTRUCTION + "\n")
    rows = [row.split("] ", 1)[1] for row in prompt[len(REFINE_INSTRUCTION) + 1 : -1].split("\n")]
    calls = [f"remove_lines({n}, {n})" for n, row in enumerate(rows, 1) if row.startswith("NAV")]
    return "\n".join(calls) or "keep_all()"


def _two_stage_argv(data: Path, run: Path, endpoint: str) -> list[str]:
    slurm = {"partition": "debug", "cpus_per_task": 1, "mem_per_cpu_gb": 1, "gpus_per_task": 0,
             "time": "00:20:00"}
    return ["--config", str(CONFIGS / "refine_two_stage.yaml"), *_sets({
        "reader.data_folder": data, "reader.glob_pattern": "*.jsonl",
        "executor.executor": "slurm", "executor.tasks": 2, "executor.workers": -1,
        "executor.logging_dir": run / "logs_annotate",
        "executor.slurm": json.dumps({**slurm, "job_name": "two_stage_annotate"}),
        "stage2_executor.executor": "slurm", "stage2_executor.tasks": 2, "stage2_executor.workers": -1,
        "stage2_executor.logging_dir": run / "logs_execute",
        "stage2_executor.slurm": json.dumps({**slurm, "job_name": "two_stage_execute"}),
        "inference.server_type": "endpoint", "inference.endpoint_url": endpoint, "inference.model": "refiner",
        "inference.output_folder": run / "annotated", "inference.checkpoints_local_dir": run / "checkpoints",
        "inference.records_per_chunk": 25, "inference.max_concurrent_generations": 4,
        "inference.metric_interval": 3600,
        "output.folder": run / "refined", "output.excluded": run / "excluded", "output.compression": "null",
    })]


def _times(rows: list[dict[str, str]], key: str) -> list[str]:
    return [r[key] for r in rows]  # ISO timestamps (seconds): they sort as strings


def test_two_stage_second_stage_waits_for_the_first(slurm_cluster, tmp_path):
    from tests.fake_openai_server import FakeOpenAIServer

    data = tmp_path / "in"
    data.mkdir()
    docs = [d for d in (_web_doc(i) for i in range(80))]
    for k in range(2):
        (data / f"part{k}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[k::2]), encoding="utf-8")
    run = tmp_path / "ok"
    with FakeOpenAIServer(script=_delete_nav, model="refiner") as server:
        jobs = _submit("refine_two_stage", _two_stage_argv(data, run, server.url))
        annotate, execute = jobs["annotate (stage 1)"], jobs["execute + filter (stage 2)"]
        assert int(execute) > int(annotate)
        slurm_cluster.wait_all(timeout=400)
        assert server.completion_requests  # the annotate jobs called the endpoint
    stage1, stage2 = _jobs_of(slurm_cluster, annotate), _jobs_of(slurm_cluster, execute)
    assert [r["JobState"] for r in stage1 + stage2] == ["COMPLETED"] * 4
    assert min(_times(stage2, "StartTime")) >= max(_times(stage1, "EndTime"))  # afterok: after the last one
    assert len(list((run / "annotated").glob("*.jsonl"))) == 2 * 2  # 40 documents per task, 25 per chunk file

    refined, excluded = _sorted_rows(run / "refined"), _sorted_rows(run / "excluded")
    assert sorted(r["id"] for r in refined + excluded) == sorted(d["id"] for d in docs)
    originals = {d["id"]: d["text"] for d in docs}
    assert refined
    for row in refined:
        assert row["metadata"][META_KEY]["exec"]["status"] == "executed"
        assert "NAV" not in row["text"] and is_deletion_of(originals[row["id"]], row["text"])
    _assert_stats_merged_over_ranks(run / "logs_execute", 2)

    # stage 1 fails (its input folder is missing): stage 2 is never started
    failed = tmp_path / "failed"
    jobs = _submit("refine_two_stage", _two_stage_argv(tmp_path / "missing", failed, "http://127.0.0.1:9"))
    annotate, execute = jobs["annotate (stage 1)"], jobs["execute + filter (stage 2)"]
    assert set(slurm_cluster.wait_jobs([annotate], timeout=300).values()) == {"FAILED"}
    deadline = time.monotonic() + 120
    while True:
        (pending,) = _jobs_of(slurm_cluster, execute)
        if pending["Reason"] == "DependencyNeverSatisfied" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (pending["JobState"], pending["Reason"]) == ("PENDING", "DependencyNeverSatisfied")
    assert "No files found" in "".join(p.read_text() for p in (failed / "logs_annotate" / "slurm_logs").iterdir())
    assert not (failed / "logs_execute" / "completions").exists() and not (failed / "refined").exists()
    assert not list((failed / "logs_execute" / "slurm_logs").iterdir())  # no stage-2 task ever started
    subprocess.run(["scancel", "--name", "two_stage_execute"], check=True, env=slurm_cluster.env())
    subprocess.run(["scancel", "--name", "two_stage_annotate"], check=True, env=slurm_cluster.env())
    slurm_cluster.wait_all(timeout=60)


# ---- distill, field mode ----------------------------------------------------------------------------------------


def test_distill_field_mode_on_slurm_equals_local(slurm_cluster, tmp_path):
    rows = [json.loads(line) for line in (ROOT / "examples" / "data" / "demo_web.jsonl").read_text().splitlines()]
    pairs = []
    for r in rows:
        lines = r["text"].split("\n")
        gold = "\n".join(x for x, k in zip(lines, r["keep"], strict=True) if k)
        pairs.append({"id": r["id"], "noisy": r["text"], "gold_projected": gold})
    pairs.append({"id": "no-gold", "noisy": "A page without its refined text.\nNav"})  # excluded, with reason
    data = tmp_path / "in"
    data.mkdir()
    for k in range(3):
        (data / f"part{k}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[k::3]), encoding="utf-8")

    def argv(run: Path, **extra) -> list[str]:
        return ["--config", str(CONFIGS / "distill_wcxb.yaml"), *_sets({
            "reader.data_folder": data, "reader.glob_pattern": "*.jsonl", "executor.tasks": 3,
            "executor.logging_dir": run / "logs", "output.documents": run / "documents",
            "output.sft_records": run / "sft", "output.exclusions": run / "excluded", **extra,
        })]

    assert _load_script("distill").main(argv(tmp_path / "local")) == 0
    venv = os.path.relpath(Path(sys.prefix) / "bin" / "activate", ROOT)  # the config key, relative to the cwd
    slurm = {**_slurm("distill_field"), "executor.slurm.venv_path": venv}
    if Path(sys.prefix) == Path(sys.base_prefix):  # no virtualenv: let the launcher pick this interpreter's PATH
        slurm["executor.slurm.venv_path"] = "null"
    array = _submit("distill", argv(tmp_path / "slurm", **slurm))["distill"]
    assert set(slurm_cluster.wait_jobs([array], timeout=300).values()) == {"COMPLETED"}
    slurm_cluster.wait_all(timeout=120)

    for sub in ("documents", "sft", "excluded"):
        assert _sorted_rows(tmp_path / "slurm" / sub) == _sorted_rows(tmp_path / "local" / sub), sub
    documents = _sorted_rows(tmp_path / "slurm" / "documents")
    excluded = _sorted_rows(tmp_path / "slurm" / "excluded")
    assert len(documents) + len(excluded) == len(pairs) and "no-gold" in {r["id"] for r in excluded}
    merged = _assert_stats_merged_over_ranks(tmp_path / "slurm" / "logs", 3)
    assert merged == _totals(json.loads((tmp_path / "local" / "logs" / "stats.json").read_text()))


# ---- the test cluster itself -----------------------------------------------------------------------------------


def test_a_second_cluster_runs_next_to_a_running_munged_and_stops_by_pid(slurm_cluster, tmp_path):
    """A second cluster starts while the session's munged and slurmctld run (own key, socket and ports), runs an
    array and an afterok chain, and stop() leaves none of its processes or files behind."""
    from tests.slurm_cluster import SlurmCluster

    assert slurm_cluster.pids().keys() == {"munged", "slurmctld", "slurmd"}
    second = SlurmCluster(cpus=2, partition="second").start()
    try:
        pids, root = second.pids(), second.root
        assert set(pids.values()).isdisjoint(slurm_cluster.pids().values())
        out = tmp_path / "out"
        array = second.sbatch(f"#!/bin/bash\n#SBATCH --array=0-2\n#SBATCH --output={out}_%a.txt\n"
                              "srun -n 1 bash -c 'echo task $SLURM_ARRAY_TASK_ID'\n")
        after = second.sbatch(f"#!/bin/bash\n#SBATCH --output={out}_after.txt\necho after\n",
                              f"--dependency=afterok:{array}")
        states = second.wait_jobs([array, after], timeout=120)
        assert states == {f"{array}_0": "COMPLETED", f"{array}_1": "COMPLETED", f"{array}_2": "COMPLETED",
                          after: "COMPLETED"}
        assert [Path(f"{out}_{t}.txt").read_text().strip() for t in range(3)] == ["task 0", "task 1", "task 2"]
    finally:
        second.stop()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not root.exists() and second.pids() == {}
    assert slurm_cluster.pids().keys() == {"munged", "slurmctld", "slurmd"}  # the session cluster still runs
