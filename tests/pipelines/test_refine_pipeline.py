"""The refine pipeline: build from YAML, --dryrun (local, slurm, two-stage), a local run with the ScriptedBackend
test double, the ``refinex refine`` CLI, and an end-to-end CPU run: distil WCXB -> SFT a tiny model -> refine."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from refinex_datatrove.llm.scripted import ScriptedBackend, request_text
from refinex_datatrove.metadata import META_KEY
from refinex_datatrove.program import REFINE_INSTRUCTION, RENDER_FORMAT, is_deletion_of
from tests.jsonl_rows import read_jsonl_folder


os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
WCXB = Path(os.environ.get("REFINEX_WCXB_DIR", ROOT.parent / "shared" / "data" / "wcxb-dev"))


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"pipeline_{name}", ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _web_doc(i: int) -> dict:
    body = [
        f"Article {i}: the city council approved a new water treatment plant for the river district on Monday.",
        "The project will cost about 40 million and should be finished within three years, officials said.",
        "Residents have complained for years about the taste of tap water during the hot summer months.",
        f"Engineers expect the plant to serve more than {20 + i} thousand households once it is running.",
    ]
    return {
        "id": f"web-{i}",
        "text": "\n".join(["NAV Home | News | Sport | Weather", *body, "NAV Share on Facebook | Share on X"]),
        "url": f"https://news.example.org/{i}",
    }


def _nav_script(request, params):
    """Scripted refine model: delete the numbered lines that start with NAV."""
    assert request.messages is None  # raw prompt: instruction line, numbered lines, final line break
    prompt = request_text(request)
    assert prompt.startswith(REFINE_INSTRUCTION + "\n") and prompt.endswith("\n")
    rows = [row.split("] ", 1)[1] for row in prompt[len(REFINE_INSTRUCTION) + 1 : -1].split("\n")]
    calls = [f"remove_lines({n}, {n})" for n, row in enumerate(rows, 1) if row.startswith("NAV")]
    return "\n".join(calls) or "keep_all()"


# ---- dry runs ------------------------------------------------------------------------------------------------


def test_dryrun_local_yaml(tmp_path, capsys):
    refine = _load_script("refine")
    rc = refine.main(["--config", str(ROOT / "pipelines/configs/refine.yaml"), "--dryrun",
                      "--set", "annotate.model=some-org/refiner", "--set", f"executor.logging_dir={tmp_path}/logs"])
    assert rc == 0
    out = capsys.readouterr().out
    steps = [m.group(1) for m in re.finditer(r"^\s+\d+\. (.*)$", out, flags=re.M)]
    assert [s.split(": ", 1)[-1] for s in steps] == [
        "🛡️ Jsonl (guarded)", "👯 Gopher Repetition", "🥇 Gopher Quality", "⛰ C4 Quality", "🍷 FineWeb Quality",
        "🏷️ RefineX annotate", "🚧 RefineX generation failed", "🧹 RefineX execute", "🧽 RefineX quality",
        "🐿 Jsonl",
    ]
    assert "LocalPipelineExecutor" in out and "model: some-org/refiner" in out
    assert not (tmp_path / "logs").exists()  # nothing ran


def test_a_typo_in_set_names_the_key_and_exits_2(capsys):
    """``pipelines/refine.py --dryrun --set reader.foldr=/tmp`` (a typo): the key and the valid ones, not a
    TypeError traceback."""
    refine = _load_script("refine")
    rc = refine.main(["--config", str(ROOT / "pipelines/configs/refine.yaml"), "--dryrun", "--set", "reader.foldr=/tmp"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "reader.foldr" in err and "valid keys of reader:" in err and "data_folder" in err
    assert "Traceback" not in err and "TypeError" not in err
    rc = refine.main(["--config", str(ROOT / "pipelines/configs/refine.yaml"), "--dryrun", "--set", "quality.min_wordz=3"])
    assert rc == 2 and "quality.min_wordz" in capsys.readouterr().err


def test_dryrun_slurm_yaml_submits_nothing(tmp_path, capsys):
    refine = _load_script("refine")
    rc = refine.main(["--config", str(ROOT / "pipelines/configs/refine_slurm.yaml"), "--dryrun",
                      "--set", f"executor.logging_dir={tmp_path}/logs"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "SlurmPipelineExecutor" in out and "gpus_per_task: 1" in out and "partition: gpu" in out
    assert "Url-filter" in out and "Parquet" in out
    assert not (tmp_path / "logs").exists()  # no executor.pik, no sbatch script


def test_dryrun_two_stage_yaml(tmp_path, capsys):
    two = _load_script("refine_two_stage")
    rc = two.main(["--config", str(ROOT / "pipelines/configs/refine_two_stage.yaml"), "--dryrun",
                   "--set", f"inference.checkpoints_local_dir={tmp_path}/ckpt",
                   "--set", f"inference.output_folder={tmp_path}/annotated",
                   "--set", f"executor.logging_dir={tmp_path}/l1",
                   "--set", f"stage2_executor.logging_dir={tmp_path}/l2"])
    assert rc == 0
    out = capsys.readouterr().out
    stage1, stage2 = out.split("# stage: execute + filter (stage 2)")
    assert "Inference" in stage1 and "RefineX execute" not in stage1
    assert "RefineX execute" in stage2 and "RefineX quality" in stage2
    assert not (tmp_path / "ckpt").exists()


def test_unknown_sections_and_filters_are_rejected():
    from refinex_datatrove.recipes import build_refine_pipeline, resolve_filters

    with pytest.raises(ValueError, match="unknown config section"):
        build_refine_pipeline({"reader": {"data_folder": "x"}, "annotat": {}})
    with pytest.raises(ValueError, match="unknown filter"):
        resolve_filters({"minhash": True})
    assert resolve_filters({"url": True, "c4_quality": False})["url"]["enabled"] is True


# ---- a local run with the scripted test double -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_local_run_filters_annotates_executes_and_writes(tmp_path, fmt, capsys):
    docs = [_web_doc(i) for i in range(6)]
    nav_only = _web_doc(9)["text"].split("\n")
    docs.append({"id": "all-nav", "text": "\n".join(f"NAV {x}" for x in nav_only), "url": "https://x.org/n"})
    docs.append({"id": "dup", "text": "\n".join(["same line again"] * 30), "url": "https://x.org/d"})
    _write_jsonl(tmp_path / "in" / "docs.jsonl", docs)
    refine = _load_script("refine")
    argv = ["--config", str(ROOT / "pipelines/configs/refine.yaml"),
            "--set", f"reader.data_folder={tmp_path}/in", "--set", "reader.glob_pattern=*.jsonl",
            "--set", "executor.tasks=1", "--set", f"executor.logging_dir={tmp_path}/logs",
            "--set", "annotate.model=scripted",
            # the decision rule off: its document guard would keep all-nav, whose emptying this test follows
            "--set", "annotate.overrule_margin=null",
            "--set", f"output.folder={tmp_path}/refined", "--set", f"output.excluded={tmp_path}/excluded",
            "--set", f"output.format={fmt}", "--set", "output.extra_metadata={url: string}"]
    assert refine.main(argv, backend=ScriptedBackend(_nav_script)) == 0
    printed = capsys.readouterr().out
    assert "documents in: 8" in printed

    if fmt == "jsonl":
        out = read_jsonl_folder(tmp_path / "refined")
    else:
        import pyarrow.parquet as pq

        out = [r for f in sorted((tmp_path / "refined").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    excluded = {p.name: read_jsonl_folder(p) for p in (tmp_path / "excluded").iterdir()}
    n_excluded = sum(len(v) for v in excluded.values())
    assert len(out) + n_excluded == len(docs)
    assert {r["id"] for r in excluded["3_gopher_repetition"]} == {"dup"}
    assert {r["id"] for r in excluded["7_refinex_quality"]} == {"all-nav"}  # the model deleted every line
    assert excluded["7_refinex_quality"][0]["metadata"]["filter_reason"] == "refinex_empty"
    # an emptied document keeps its text (empty, but present) and the text it had, to audit or restore it
    # (refine.yaml does not ask for keep_original)
    emptied = excluded["7_refinex_quality"][0]
    assert emptied["text"] == ""
    assert emptied["metadata"][META_KEY]["original_text"] == next(d["text"] for d in docs if d["id"] == "all-nav")
    originals = {d["id"]: d["text"] for d in docs}
    assert sorted(r["id"] for r in out) == [f"web-{i}" for i in range(6)]
    for row in out:
        meta = row["metadata"][META_KEY]
        assert meta["program"]["source"] == "model" and meta["program"]["render"] == RENDER_FORMAT
        assert meta["exec"]["status"] == "executed" and meta["exec"]["applied"]["remove_lines"] == 2
        assert "NAV" not in row["text"] and is_deletion_of(originals[row["id"]], row["text"])
        assert row["metadata"]["url"].startswith("https://")

    from refinex_datatrove.run_stats import refine_summary

    summary = refine_summary(tmp_path / "logs")
    assert summary["documents_in"] == len(docs)
    assert summary["documents_out"] == len(out) and summary["excluded_total"] == n_excluded
    n_nav = len(nav_only)
    assert summary["calls"]["remove_lines"] == 2 * len(out) + n_nav
    assert summary["chars_removed"] == sum(len(originals[r["id"]]) - len(r["text"]) for r in out) + len(
        originals["all-nav"]
    )


# ---- the CLI ------------------------------------------------------------------------------------------------


def test_cli_help_and_errors(tmp_path, capsys):
    from refinex_datatrove.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["refine", "--help"])
    assert exc.value.code == 0
    assert "OUTPUT_DIR" in capsys.readouterr().out
    assert main(["refine", str(tmp_path / "missing.jsonl"), str(tmp_path / "out"), "--model", "m"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_without_model_uses_the_default_or_says_so(tmp_path, capsys):
    from refinex_datatrove.cli import main

    _write_jsonl(tmp_path / "in.jsonl", [_web_doc(0)])
    try:
        from refinex_datatrove.refine_model.card import default_model_dir

        default_model_dir()
    except FileNotFoundError:
        assert main(["refine", str(tmp_path / "in.jsonl"), str(tmp_path / "out"), "--dryrun"]) == 2
        assert "pass --model" in capsys.readouterr().err
    else:
        assert main(["refine", str(tmp_path / "in.jsonl"), str(tmp_path / "out"), "--dryrun"]) == 0
        assert "RefineX annotate" in capsys.readouterr().out


def test_cli_reader_for_file_and_folder(tmp_path):
    from datatrove.pipeline.readers import JsonlReader

    from refinex_datatrove.cli.refine import reader_section

    _write_jsonl(tmp_path / "a.jsonl", [_web_doc(0)])
    _write_jsonl(tmp_path / "xa.jsonl", [_web_doc(1)])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps(_web_doc(2)) + "\n")
    one = reader_section(str(tmp_path / "a.jsonl"), "text", "id", -1)
    one.pop("format")
    assert [d.id for d in JsonlReader(**one).run()] == ["web-0"]  # not xa.jsonl
    folder = reader_section(str(tmp_path), "text", "id", -1)
    folder.pop("format")
    assert sorted(d.id for d in JsonlReader(**folder).run()) == ["web-0", "web-1", "web-2"]


# ---- end to end on CPU: distil a WCXB slice, SFT a tiny model, refine ------------------------------------------


def _wcxb_slice(n_docs: int, max_lines: int) -> list[dict]:
    rows = []
    with gzip.open(WCXB / "pairs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            lines = r["noisy"].split("\n")[:max_lines]
            keep = r["keep"][:max_lines]
            if 0 < sum(keep) < len(keep):
                projected = "\n".join(x for x, k in zip(lines, keep, strict=True) if k)
                rows.append({"id": r["id"], "text": "\n".join(lines), "gold_projected": projected})
            if len(rows) == n_docs:
                break
    return rows


@pytest.mark.skipif(not (WCXB / "pairs.jsonl.gz").is_file(), reason="wcxb-dev data not available")
def test_end_to_end_distill_train_refine(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    torch.set_num_threads(1)
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from trl import ModelConfig, SFTConfig

    from refinex_datatrove.cli import main as cli_main
    from refinex_datatrove.steps.distill import ProgramDistiller
    from refinex_datatrove.train.sft import RefinexSFTArgs
    from refinex_datatrove.train.sft import main as sft_main
    from tests.tiny_model import build_tiny_model

    window = 400
    docs = _wcxb_slice(n_docs=8, max_lines=14)
    _write_jsonl(tmp_path / "raw" / "docs.jsonl", docs)

    # 1. distil: programs that turn each noisy slice into its gold_projected deletion target
    LocalPipelineExecutor(
        [
            JsonlReader(str(tmp_path / "raw")),
            ProgramDistiller(source="field", field="gold_projected", window=window),
            JsonlWriter(str(tmp_path / "distilled"), compression=None),
        ],
        tasks=1, workers=1, logging_dir=str(tmp_path / "logs_distill"),
    ).run()
    distilled = read_jsonl_folder(tmp_path / "distilled")
    assert distilled and all(r["metadata"][META_KEY]["program"]["source"] == "distilled" for r in distilled)

    # 2. SFT a tiny model a few steps with the project's TRL script
    model_dir = tmp_path / "refiner"
    sft_main(
        RefinexSFTArgs(dataset_path=[str(tmp_path / "distilled")], window=window, unit="chars"),
        SFTConfig(output_dir=str(model_dir), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
                  max_length=1024, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                  disable_tqdm=True, dataloader_num_workers=0, bf16=False, seed=0),
        ModelConfig(model_name_or_path=build_tiny_model(tmp_path / "tiny"), dtype="float32"),
    )
    meta = json.loads((model_dir / "refinex.json").read_text())
    assert (meta["render_format"], meta["window"], meta["unit"]) == (RENDER_FORMAT, window, "chars")

    # 3. refine the raw slice with the trained model through the CLI
    out_dir = tmp_path / "out"
    capsys.readouterr()
    rc = cli_main(["refine", str(tmp_path / "raw" / "docs.jsonl"), str(out_dir), "--model", str(model_dir),
                   "--backend", "transformers", "--backend-kwarg", "num_threads=1", "--max-new-tokens", "24",
                   "--batch-size", "4", "--min-words", "1", "--compression", "none"])
    assert rc == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert f"documents in: {len(docs)}" in printed
    # the terminal gets the summary, not datatrove's INFO records and stats blocks (they stay in logs/)
    assert "Stats" not in captured.err and "Processing done" not in captured.err, captured.err[:2000]
    assert "Loading weights" not in captured.err
    assert "Stats: Task 0" in (out_dir / "logs" / "logs" / "task_00000.log").read_text(encoding="utf-8")

    refined = read_jsonl_folder(out_dir / "refined")
    excluded = read_jsonl_folder(out_dir / "excluded") if (out_dir / "excluded").exists() else []
    assert len(refined) + len(excluded) == len(docs)
    originals = {d["id"]: d["text"] for d in docs}
    for row in refined:
        rx = row["metadata"][META_KEY]
        assert set(rx) >= {"program", "exec", "quality"}
        assert rx["program"]["source"] == "model" and rx["program"]["model"] == "refiner"
        assert rx["program"]["n_lines"] == len(originals[row["id"]].split("\n"))
        assert all(c["status"] in ("ok", "truncated", "empty", "skipped", "blank") for c in rx["program"]["chunks"])
        assert rx["exec"]["status"] == "executed"
        assert is_deletion_of(originals[row["id"]], row["text"])
    stats = json.loads((out_dir / "logs" / "stats.json").read_text())
    annotate = next(s for s in stats if "RefineX annotate" in s["name"])["stats"]
    assert annotate["total"] == len(docs) and annotate["requests"] > 0
    assert annotate.get("gen_failed", 0) == 0 and annotate.get("docs_failed", 0) == 0


def test_two_stage_rejects_an_adapter_and_merge_makes_a_servable_folder(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    torch.set_num_threads(1)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from refinex_datatrove.recipes import build_two_stage
    from refinex_datatrove.refine_model.weights import merge_refine_model
    from tests.tiny_model import build_tiny_model

    base_dir = build_tiny_model(tmp_path / "tiny")
    adapter = tmp_path / "adapter"
    lora = LoraConfig(r=2, target_modules=["q_proj"])
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), lora)
    peft_model.save_pretrained(adapter)
    meta = {"render_format": RENDER_FORMAT, "instruction": REFINE_INSTRUCTION, "window": 300, "unit": "chars",
            "base_model": base_dir, "base_gguf_file": None, "adapter": True}
    (adapter / "refinex.json").write_text(json.dumps(meta))
    config = {
        "reader": {"data_folder": str(tmp_path / "in")},
        "filters": {"gopher_repetition": False, "gopher_quality": False, "c4_quality": False,
                    "fineweb_quality": False},
        "inference": {"model": str(adapter), "output_folder": str(tmp_path / "a"),
                      "checkpoints_local_dir": str(tmp_path / "c")},
        "output": {"folder": str(tmp_path / "o")},
    }
    with pytest.raises(ValueError, match="LoRA adapter"):
        build_two_stage(config)

    merged = merge_refine_model(adapter, tmp_path / "merged")
    merged_meta = json.loads((Path(merged) / "refinex.json").read_text())
    assert merged_meta["adapter"] is False and merged_meta["window"] == 300
    config["inference"]["model"] = merged
    stage1, stage2 = build_two_stage(config)
    runner = stage1[-1]
    assert runner.config.model_name_or_path == merged
    assert runner.config.use_chat is False  # raw prompts go to the completions endpoint, no chat template
    assert runner.rollout_fn.window == 300 and runner.rollout_fn.model_name == "merged"
    assert [type(s).__name__ for s in stage2] == [
        "JsonlReader", "FailedGenerationFilter", "ProgramExecutor", "QualityFilter", "JsonlWriter"
    ]


def test_cli_defaults_dtype_threads_and_progress(tmp_path):
    import argparse
    import gzip as gz

    from refinex_datatrove.cli.refine import add_parser as add_refine_parser, build_config, count_input_docs

    _write_jsonl(tmp_path / "in" / "a.jsonl", [_web_doc(i) for i in range(3)])
    with gz.open(tmp_path / "in" / "b.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(_web_doc(i)) + "\n" for i in range(4)) + "\n")
    assert count_input_docs(str(tmp_path / "in")) == 7
    parser = argparse.ArgumentParser()
    add_refine_parser(parser.add_subparsers())

    def annotate(*flags):
        return build_config(parser.parse_args(["refine", str(tmp_path / "in"), str(tmp_path / "out"), *flags]))[
            "annotate"
        ]

    plain = annotate()  # pytest's stderr is not a terminal: no progress line, nothing to override
    assert "dtype" not in plain["backend_kwargs"] and plain["progress_every"] is None
    assert plain["workers"] == 1 and plain["max_new_tokens"] == 512
    tuned = annotate("--dtype", "float32", "--progress", "5", "--tasks", "2", "--workers", "2")
    assert tuned["backend_kwargs"]["dtype"] == "float32" and tuned["workers"] == 2
    assert tuned["progress_every"] == 5 and tuned["expected_docs"] == 4  # 7 documents over 2 tasks
    assert annotate("--progress", "5", "--limit", "2")["expected_docs"] == 2


def test_cli_guided_is_the_default_on_the_transformers_backend(tmp_path, monkeypatch):
    import argparse

    import refinex_datatrove.llm as llm
    from refinex_datatrove.cli.refine import add_parser as add_refine_parser, build_config

    _write_jsonl(tmp_path / "in" / "a.jsonl", [_web_doc(0)])
    parser = argparse.ArgumentParser()
    add_refine_parser(parser.add_subparsers())

    def guided(*flags):
        args = parser.parse_args(["refine", str(tmp_path / "in"), str(tmp_path / "out"), *flags])
        return build_config(args)["annotate"]["guided"]

    assert guided("--backend", "transformers") is True
    assert guided("--backend", "transformers", "--no-guided") is False
    assert guided("--backend", "vllm") is False and guided("--backend", "vllm", "--guided") is True
    assert guided("--backend", "endpoint", "--base-url", "http://127.0.0.1:9") is False
    monkeypatch.setattr(llm, "default_backend_kind", lambda: "transformers")
    assert guided() is True  # no --backend: follows the automatic choice
    monkeypatch.setattr(llm, "default_backend_kind", lambda: "vllm")
    assert guided() is False
