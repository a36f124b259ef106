from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

from refinex_datatrove.launch import (
    ExecutorArgs,
    apply_override,
    dryrun_report,
    job_environment,
    load_config,
    make_executor,
    make_parser,
)
from refinex_datatrove.run_stats import read_merged_stats, step_stats


@pytest.fixture
def no_sbatch(monkeypatch):
    """Fail loudly if anything tries to submit a Slurm job."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to run a subprocess: {args}")

    monkeypatch.setattr(subprocess, "check_output", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr("datatrove.executor.slurm.launch_slurm_job", refuse)


def test_load_config_applies_overrides_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("executor: {tasks: 2}\ndistill: {window: 100, config: {min_deleted_chars: 10}}\n")
    config = load_config(
        path,
        [
            "executor.tasks=8",
            "distill.config.min_deleted_chars=0",
            "distill.unit=words",
            "new.section.flag=true",
            "reader.limit=null",
            "distill.window=5",
            "distill.window=7",
            "output.list=[a, b]",
            "executor.slurm.time='24:00:00'",
            "reader.glob_pattern=*.jsonl",
        ],
    )
    assert config["executor"] == {"tasks": 8, "slurm": {"time": "24:00:00"}}
    assert config["distill"] == {"window": 7, "config": {"min_deleted_chars": 0}, "unit": "words"}
    assert config["new"] == {"section": {"flag": True}}
    assert config["reader"] == {"limit": None, "glob_pattern": "*.jsonl"}
    assert config["output"] == {"list": ["a", "b"]}


@pytest.mark.parametrize("override", ["no_equals", "=3", "a..b=1", "distill.window.x=1"])
def test_malformed_overrides(override):
    with pytest.raises(ValueError):
        apply_override({"distill": {"window": 3}}, override)


def test_config_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)
    assert load_config(None, ["a=1"]) == {"a": 1}


def test_executor_args_validation():
    args = ExecutorArgs.from_dict({"tasks": 3, "slurm": {"partition": "p", "gpus_per_task": 2}})
    assert (args.tasks, args.slurm.partition, args.slurm.gpus_per_task) == (3, "p", 2)
    with pytest.raises(ValueError, match="unknown key"):
        ExecutorArgs.from_dict({"taskz": 3})
    with pytest.raises(ValueError, match="unknown key"):
        ExecutorArgs.from_dict({"slurm": {"partitoin": "p"}})
    with pytest.raises(ValueError, match="partition is required"):
        ExecutorArgs.from_dict({"executor": "slurm"})
    with pytest.raises(ValueError, match="local' or 'slurm"):
        ExecutorArgs.from_dict({"executor": "ray"})
    with pytest.raises(ValueError, match="tasks"):
        ExecutorArgs.from_dict({"tasks": 0})


def test_unquoted_slurm_time_is_restored():
    # YAML 1.1 reads an unquoted 48:00:00 as the integer 172800
    config = load_config(None, ["executor.slurm.time=48:00:00", "executor.slurm.partition=p"])
    assert config["executor"]["slurm"]["time"] == 172800
    assert ExecutorArgs.from_dict(config["executor"]).slurm.time == "48:00:00"


def test_make_local_executor(tmp_path):
    args = ExecutorArgs(tasks=3, workers=2, logging_dir=str(tmp_path / "logs"))
    executor = make_executor([], args)
    assert isinstance(executor, LocalPipelineExecutor)
    assert (executor.tasks, executor.workers) == (3, 2)
    assert not (tmp_path / "logs").exists()  # nothing written before run()


def test_make_slurm_executor_submits_nothing(tmp_path, no_sbatch):
    args = ExecutorArgs.from_dict(
        {
            "executor": "slurm",
            "tasks": 16,
            "workers": 4,
            "logging_dir": str(tmp_path / "logs"),
            "slurm": {"partition": "gpu", "gpus_per_task": 4, "cpus_per_task": 8, "sbatch_args": {"account": "x"}},
        }
    )
    first = make_executor([], args)
    second = make_executor([], args, depends=first)
    assert isinstance(second, SlurmPipelineExecutor)
    assert second.depends is first
    assert (second.partition, second.gpus_per_task, second.cpus_per_task, second.tasks) == ("gpu", 4, 8, 16)
    report = dryrun_report({"executor": args.to_dict()}, {"expert": first})
    assert "SlurmPipelineExecutor" in report and "partition: gpu" in report and '"account": "x"' in report
    assert yaml.safe_load(report.split("# stage:")[0])["executor"]["slurm"]["gpus_per_task"] == 4
    assert not (tmp_path / "logs").exists()


def test_errors_name_the_executor_section():
    with pytest.raises(ValueError, match=r"^stage2_executor\.slurm\.partition is required"):
        ExecutorArgs.from_dict({"executor": "slurm"}, "stage2_executor")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['task'\] in stage2_executor"):
        ExecutorArgs.from_dict({"task": 2}, "stage2_executor")


def test_job_environment_picks_the_right_python(tmp_path, monkeypatch):
    import os
    import sys
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    # a relative venv_path becomes absolute: the job does not depend on the folder it starts in
    assert job_environment(".venv/bin/activate", None) == (str(tmp_path / ".venv/bin/activate"), None)
    assert job_environment("x/activate", "module load foo") == ("x/activate", "module load foo")  # used as is
    venv, command = job_environment(None, None)  # neither: the launcher's own environment
    if sys.prefix != sys.base_prefix:
        assert (venv, command) == (str(Path(sys.prefix) / "bin" / "activate"), None)
    else:
        assert venv is None and command.startswith(f"export PATH={os.path.dirname(sys.executable)}")
    executor = make_executor([], ExecutorArgs.from_dict({"executor": "slurm", "slurm": {"partition": "p"}}))
    assert (executor.venv_path, executor.env_command) == (venv, command)
    script = executor.get_launch_file_contents({"partition": "p"}, "launch_pickled_pipeline x")
    assert (f"source {venv}\n" if venv else f"{command}\n") in script


def test_parser():
    parser = make_parser("x")
    args = parser.parse_args(["--config", "c.yaml", "--set", "a=1", "--set", "b.c=2", "--dryrun"])
    assert (args.config, args.overrides, args.dryrun) == ("c.yaml", ["a=1", "b.c=2"], True)
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_step_stats_reads_the_merged_stats(tmp_path):
    merged = [
        {"name": "📖 - READER: 🐿 Jsonl", "stats": {"documents": 5}},
        {
            "name": "🔨 - DISTILL: 🧪 RefineX distill",
            "stats": {"total": 5, "rejected_x": 2, "ops": {"total": 9, "n": 3}},
        },
    ]
    (tmp_path / "stats.json").write_text(json.dumps(merged))
    stats = step_stats(read_merged_stats(tmp_path), "RefineX distill")
    assert stats == {"total": 5, "rejected_x": 2, "ops": 9}
    with pytest.raises(KeyError):
        step_stats(merged, "nope")
