from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from refinex_datatrove.llm.scripted import ScriptedBackend, request_text
from refinex_datatrove.metadata import read_chunk_programs
from refinex_datatrove.program import execute_document, render_chunk, render_prompt


ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "pipelines" / "configs"


def load_script():
    spec = importlib.util.spec_from_file_location("distill_pipeline", ROOT / "pipelines" / "distill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAV = "Home | Shop | Blog | Contact"
FOOTER = "© 2025 Example Ltd. Privacy policy | Terms"


def pair(i: int) -> dict:
    body = [f"Paragraph {i} explains how tides depend on the moon.", f"Line two of document {i} adds detail."]
    noisy = "\n".join([NAV, *body, FOOTER])
    return {"id": f"doc{i}", "noisy": noisy, "gold_projected": "\n".join(body), "page_type": "article"}


def write_inputs(folder: Path, records_per_file: list[list[dict]]) -> None:
    folder.mkdir(parents=True)
    for k, records in enumerate(records_per_file):
        (folder / f"part{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def read_jsonl(folder: Path) -> list[dict]:
    rows = []
    for f in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            rows += [json.loads(line) for line in fh]
    return rows


def overrides(tmp_path: Path, data: Path, **extra: str) -> list[str]:
    sets = {
        "reader.data_folder": str(data),
        "reader.glob_pattern": "*.jsonl",
        "executor.tasks": "2",
        "executor.workers": "1",
        "executor.logging_dir": str(tmp_path / "logs"),
        "output.documents": str(tmp_path / "out" / "documents"),
        "output.sft_records": str(tmp_path / "out" / "sft"),
        "output.exclusions": str(tmp_path / "out" / "excluded"),
        **extra,
    }
    return [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


def test_field_mode_pipeline_two_tasks(tmp_path, capsys):
    rejected_tiny = {"id": "tiny", "noisy": "Short body line.\nok", "gold_projected": "Short body line."}
    rejected_missing = {"id": "missing", "noisy": "No gold here.\nNav"}
    write_inputs(tmp_path / "data", [[pair(0), pair(1), rejected_tiny], [pair(2), rejected_missing]])
    script = load_script()
    argv = ["--config", str(CONFIGS / "distill_wcxb.yaml"), *overrides(tmp_path, tmp_path / "data")]
    assert script.main(argv) == 0

    docs = read_jsonl(tmp_path / "out" / "documents")
    assert sorted(d["id"] for d in docs) == ["doc0", "doc1", "doc2"]
    for d in docs:
        meta = d["metadata"]["refinex"]
        programs = read_chunk_programs(meta, len(d["text"].split("\n")))
        assert execute_document(d["text"], programs).text == d["metadata"]["gold_projected"]
        assert meta["program"]["chunks"][0]["program"] == "remove_lines(1, 1)\nremove_lines(4, 4)"
    excluded = read_jsonl(tmp_path / "out" / "excluded")
    assert {d["id"]: d["metadata"]["refinex"]["distill"]["reason"] for d in excluded} == {
        "tiny": "too_few_deleted_chars",
        "missing": "missing_field",
    }
    records = read_jsonl(tmp_path / "out" / "sft")
    assert sorted(r["id"] for r in records) == ["doc0/chunk_0", "doc1/chunk_0", "doc2/chunk_0"]
    first = next(r for r in records if r["id"] == "doc0/chunk_0")
    lines = pair(0)["noisy"].split("\n")
    assert first["prompt"] == render_prompt(render_chunk(lines))  # raw prompt_completion strings (the YAML's format)
    assert first["prompt"].endswith(f"[4] {FOOTER}\n")
    assert first["completion"] == "remove_lines(1, 1)\nremove_lines(4, 4)"
    assert (first["window"], first["unit"]) == (12000, "chars")

    # both tasks completed, and the summary printed from the merged stats
    assert sorted(p.name for p in (tmp_path / "logs" / "completions").iterdir()) == ["00000", "00001"]
    printed = capsys.readouterr().out
    assert "documents: 5" in printed and "emitted: 3" in printed
    assert "too_few_deleted_chars: 1" in printed and "missing_field: 1" in printed
    assert "3/3 = 100.00%" in printed

    # a rerun with the same logging_dir redoes nothing
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.gz")}
    assert script.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.gz")} == stamp


def test_expert_mode_pipeline_with_a_scripted_expert(tmp_path, capsys):
    raw = [{"id": f"r{i}", "text": pair(i)["noisy"]} for i in range(4)]
    raw.append({"id": "broken", "text": "Body that the expert fails on.\nNav"})
    write_inputs(tmp_path / "data", [raw[:3], raw[3:]])

    def expert(request, params):
        doc = request_text(request).split("Input: [doc]", 1)[1].rsplit("[/doc]", 1)[0]
        if "fails on" in doc:
            return "Sorry, I cannot help."
        kept = [line for line in doc.split("\n") if line not in (NAV, FOOTER)]
        return "modification_reason: [doc]nav and footer[/doc]\nrefined_text: [doc]" + "\n".join(kept) + "[/doc]"

    script = load_script()
    extra = {"output.rewrites": str(tmp_path / "out" / "rewrites")}
    argv = ["--config", str(CONFIGS / "distill.yaml"), *overrides(tmp_path, tmp_path / "data", **extra)]
    assert script.main(argv, backend=ScriptedBackend(expert)) == 0

    rewrites = read_jsonl(tmp_path / "out" / "rewrites")
    assert len(rewrites) == 5
    status = {d["id"]: d["metadata"]["refinex"]["rewrite"]["status"] for d in rewrites}
    assert status == {"r0": "ok", "r1": "ok", "r2": "ok", "r3": "ok", "broken": "unparseable"}
    docs = read_jsonl(tmp_path / "out" / "documents")
    assert sorted(d["id"] for d in docs) == ["r0", "r1", "r2", "r3"]
    for d in docs:
        programs = read_chunk_programs(d["metadata"]["refinex"], len(d["text"].split("\n")))
        assert execute_document(d["text"], programs).text == d["metadata"]["refinex"]["rewrite"]["text"]
    assert [d["id"] for d in read_jsonl(tmp_path / "out" / "excluded")] == ["broken"]
    assert len(read_jsonl(tmp_path / "out" / "sft")) == 4
    printed = capsys.readouterr().out
    assert "rewrite_unparseable: 1" in printed and "4/4 = 100.00%" in printed


@pytest.mark.parametrize("config", ["distill.yaml", "distill_wcxb.yaml"])
@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_dryrun_prints_config_and_steps_without_running(config, executor, tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dryrun must not start a subprocess or submit a job")

    monkeypatch.setattr(subprocess, "check_output", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr("datatrove.executor.slurm.launch_slurm_job", refuse)
    logs = tmp_path / "logs"
    argv = [
        "--config",
        str(CONFIGS / config),
        "--set",
        f"executor.executor={executor}",
        "--set",
        f"executor.logging_dir={logs}",
        "--dryrun",
    ]
    assert load_script().main(argv) == 0
    printed = capsys.readouterr().out
    resolved = yaml.safe_load(printed.split("# stage:")[0])
    assert resolved["executor"]["executor"] == executor
    assert resolved["distill"]["window"] == 12000
    kind = "SlurmPipelineExecutor" if executor == "slurm" else "LocalPipelineExecutor"
    assert f"executor: {kind}" in printed
    assert "RefineX distill" in printed and "RefineX SFT records" in printed
    assert ("RefineX expert" in printed) == (config == "distill.yaml")
    assert not logs.exists()


def test_wcxb_config_points_at_the_shared_pairs_file():
    config = yaml.safe_load((CONFIGS / "distill_wcxb.yaml").read_text())
    assert config["reader"]["data_folder"] == "../shared/data/wcxb-dev"
    assert config["reader"]["glob_pattern"] == "pairs.jsonl.gz"
    assert (config["reader"]["text_key"], config["distill"]["field"]) == ("noisy", "gold_projected")


def test_unknown_config_keys_are_rejected(tmp_path, capsys):
    """A config the pipeline cannot be built from is one line naming the key (and the valid ones), exit 2."""
    script = load_script()
    base = ["--config", str(CONFIGS / "distill_wcxb.yaml"), "--dryrun"]
    assert script.main([*base, "--set", "distil.window=3"]) == 2
    assert "unknown config section" in capsys.readouterr().err
    assert script.main([*base, "--set", "distill.windw=3"]) == 2
    err = capsys.readouterr().err
    assert "distill.windw" in err and "valid keys of distill:" in err and "window" in err
    assert "Traceback" not in err
    assert script.main([*base, "--set", "executor.task=3"]) == 2
    assert "unknown key" in capsys.readouterr().err
