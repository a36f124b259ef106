"""The refine-model SFT script (TRL SFTTrainer) on a tiny offline model: loss, masks, saving, LoRA, resume."""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from refinex_datatrove.labels import programs_from_keep_labels
from refinex_datatrove.refine_model.card import REFINEX_JSON, read_refinex_json
from refinex_datatrove.refine_model.weights import load_refine_model
from refinex_datatrove.program import PROMPT_STYLE, REFINE_INSTRUCTION, RENDER_FORMAT
from refinex_datatrove.train.records import sft_records
from refinex_datatrove.train.sft import build_trainer, load_sft_records, make_parser, train_from_argv

REPO = Path(__file__).resolve().parents[2]
WINDOW, UNIT = 160, "chars"
NOISE = ["Home | About | Contact", "Subscribe to our newsletter", "Share on Facebook", "Copyright 2024 all rights"]
CONTENT = "the city council said the river water report was new this year and people read the study results"


def _docs(n: int = 12, seed: int = 0) -> list[tuple[str, list[int]]]:
    rng = random.Random(seed)
    words = CONTENT.split()
    docs = []
    for _ in range(n):
        lines, keep = [], []
        for _ in range(rng.randint(4, 8)):
            if rng.random() < 0.35:
                lines.append(rng.choice(NOISE))
                keep.append(0)
            else:
                lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))).capitalize() + ".")
                keep.append(1)
        docs.append(("\n".join(lines), keep))
    return docs


def _write_records(path: Path, fmt: str = "prompt_completion") -> list[dict]:
    records = []
    for text, keep in _docs():
        for rec in sft_records(text, programs_from_keep_labels(text, keep, WINDOW, UNIT), fmt=fmt):
            rec.update(window=WINDOW, unit=UNIT)
            records.append(rec)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return records


@pytest.fixture(scope="module")
def records_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "records.jsonl.gz"
    _write_records(path)
    return path


@pytest.fixture(scope="module")
def chat_records_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "chat_records.jsonl.gz"
    _write_records(path, fmt="conversational")
    return path


def _argv(tiny_model_dir: str, records: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", tiny_model_dir,
        "--dataset_path", str(records),
        "--output_dir", str(out),
        "--max_steps", "6",
        "--per_device_train_batch_size", "4",
        "--learning_rate", "3e-3",
        "--lr_scheduler_type", "constant",
        "--logging_steps", "1",
        "--save_strategy", "no",
        "--max_length", "512",
        "--bf16", "false",
        "--activation_checkpointing", "false",
        "--use_cpu",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--seed", "0",
        *extra,
    ]  # fmt: skip


def _state(folder: Path) -> dict:
    return json.loads((folder / "trainer_state.json").read_text())


def test_full_sft_trains_saves_and_reloads(tiny_model_dir: str, records_path: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = Path(train_from_argv(_argv(tiny_model_dir, records_path, tmp_path / "full")))

    losses = [e["loss"] for e in _state(out)["log_history"] if "loss" in e]
    assert len(losses) == 6 and all(l > 0 for l in losses)

    meta = read_refinex_json(out)
    assert meta == {
        "render_format": RENDER_FORMAT,
        "prompt_style": PROMPT_STYLE,
        "instruction": REFINE_INSTRUCTION,
        "window": WINDOW,
        "unit": UNIT,
        "base_model": tiny_model_dir,
        "base_gguf_file": None,
        "adapter": False,
    }
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    model, tok = load_refine_model(out)
    after = model.state_dict()
    assert set(before) == set(after)
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert unchanged == [], f"parameters not trained: {unchanged}"
    assert tok.eos_token == "<|im_end|>"


@pytest.mark.parametrize("fmt", ["prompt_completion", "conversational"])
def test_labels_cover_only_the_completion(
    fmt: str, tiny_model_dir: str, records_path: Path, chat_records_path: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    path = records_path if fmt == "prompt_completion" else chat_records_path
    parser = make_parser()
    args = parser.parse_args_and_config(args=_argv(tiny_model_dir, path, tmp_path / "mask"))
    trainer, meta = build_trainer(*args)
    assert meta["prompt_style"] == ("raw" if fmt == "prompt_completion" else "chat")
    tok = trainer.processing_class
    raw, _ = load_sft_records([str(path)])

    def prompt_text(rec: dict) -> str:
        return rec["prompt"] if fmt == "prompt_completion" else rec["prompt"][0]["content"]

    def completion_text(rec: dict) -> str:
        return rec["completion"] if fmt == "prompt_completion" else rec["completion"][0]["content"]

    checked = 0
    for row in trainer.train_dataset.select(range(8)):
        ids, labels = row["input_ids"], row["labels"]
        content = tok.decode(ids)
        rec = next(r for r in raw if prompt_text(r) in content)
        # the prompt exactly as the model sees it at inference time
        if fmt == "prompt_completion":  # raw text, no special tokens (the annotator's Request(prompt=...))
            prompt_ids = tok(rec["prompt"], add_special_tokens=False)["input_ids"]
        else:
            prompt_ids = tok.apply_chat_template(rec["prompt"], add_generation_prompt=True, tokenize=True)
            prompt_ids = prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids
        n_prompt = len(prompt_ids)
        assert ids[:n_prompt] == list(prompt_ids)
        assert all(lab == -100 for lab in labels[:n_prompt]), "a prompt token carries loss"
        assert all(lab != -100 for lab in labels[n_prompt:]), "a completion token is masked"
        target = tok.decode([lab for lab in labels if lab != -100])
        assert target.startswith(completion_text(rec) + "<|im_end|>")  # the program, then end of sequence
        checked += 1
    assert checked == 8


def test_lora_saves_an_adapter_that_loads_with_peft(tiny_model_dir: str, records_path: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    argv = _argv(tiny_model_dir, records_path, tmp_path / "lora")
    argv += ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "all-linear"]
    out = Path(train_from_argv(argv))
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    meta = read_refinex_json(out)
    assert meta["adapter"] is True and meta["base_model"] == tiny_model_dir

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out))
    lora_b = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert lora_b, "no LoRA weights loaded"
    assert all(v.abs().sum() > 0 for v in lora_b.values()), "a LoRA B matrix is still zero (untrained)"
    targets = {k.split(".lora_B")[0].rsplit(".", 1)[-1] for k in lora_b}
    assert {"q_proj", "v_proj", "down_proj"} <= targets  # all-linear
    merged, _ = load_refine_model(out, merge=True)
    assert not any("lora" in k for k in merged.state_dict())

    # the shipping copy: float16 weights, same refinex.json, loads the same way
    from refinex_datatrove.refine_model.weights import export_adapter

    small = Path(export_adapter(out, tmp_path / "shipped", dtype="float16", base_model_name="tiny"))
    size = (small / "adapter_model.safetensors").stat().st_size
    assert size < 0.6 * (out / "adapter_model.safetensors").stat().st_size
    assert read_refinex_json(small) == meta
    assert json.loads((small / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    reloaded, _ = load_refine_model(small)
    for k, v in reloaded.state_dict().items():
        if "lora_B" in k:
            assert torch.allclose(v, lora_b[k], rtol=1e-2, atol=1e-4)


def test_warm_start_continues_from_an_adapter_with_a_fresh_schedule(
    tiny_model_dir: str, records_path: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    lora = ["--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "all-linear"]
    first = Path(train_from_argv(_argv(tiny_model_dir, records_path, tmp_path / "stage1") + lora))
    # the stage-2 run asks for another LoRA shape: the adapter's own shape (r=4) must win
    second = _argv(tiny_model_dir, records_path, tmp_path / "stage2", "--init_adapter", str(first))
    second += ["--use_peft", "--lora_r", "8", "--lora_alpha", "16"]
    second[second.index("--max_steps") + 1] = "2"
    out = Path(train_from_argv(second))

    history = [e for e in _state(out)["log_history"] if "loss" in e]
    assert [e["step"] for e in history] == [1, 2]  # a new run, not a resumed one
    assert read_refinex_json(out)["adapter"] is True

    from safetensors.torch import load_file

    w1 = load_file(first / "adapter_model.safetensors")
    w2 = load_file(out / "adapter_model.safetensors")
    assert set(w1) == set(w2)
    assert all(w1[k].shape == w2[k].shape for k in w1)  # r=4 kept
    b_keys = [k for k in w1 if "lora_B" in k]
    assert any(not torch.equal(w1[k], w2[k]) for k in b_keys), "stage 2 did not train"
    # started from stage 1, not from zero: the B matrices moved a little from stage 1's values
    drift = sum((w2[k] - w1[k]).norm() for k in b_keys) / sum(w1[k].norm() for k in b_keys)
    assert drift < 1.0

    with pytest.raises(ValueError, match="not a LoRA adapter folder"):
        train_from_argv(_argv(tiny_model_dir, records_path, tmp_path / "bad", "--init_adapter", str(tmp_path)))


def test_checkpoint_resume_continues_the_step_count(tiny_model_dir: str, records_path: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "resume"
    first = _argv(tiny_model_dir, records_path, out) + ["--save_strategy", "steps", "--save_steps", "3"]
    first[first.index("--max_steps") + 1] = "3"
    train_from_argv(first)
    ckpt_state = out / "checkpoint-3" / "trainer_state.json"
    state = json.loads(ckpt_state.read_text())
    state["log_history"].insert(0, {"step": 0, "marker": "from-checkpoint"})  # only a resumed run carries it
    ckpt_state.write_text(json.dumps(state))
    second = _argv(tiny_model_dir, records_path, out) + ["--save_strategy", "steps", "--save_steps", "3"]
    train_from_argv(second)
    history = _state(out)["log_history"]
    assert history[0].get("marker") == "from-checkpoint"
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4, 5, 6]  # steps 1-3 not trained again


def test_time_budget_stops_after_the_first_step(tiny_model_dir: str, records_path: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = Path(train_from_argv(_argv(tiny_model_dir, records_path, tmp_path / "budget", "--max_train_minutes", "0")))
    assert _state(out)["global_step"] == 1
    assert (out / REFINEX_JSON).is_file()


def test_datatrove_documents_become_the_same_records(tmp_path: Path) -> None:
    from datatrove.data import Document
    from datatrove.pipeline.writers import JsonlWriter

    from refinex_datatrove.metadata import write_program

    docs = []
    expected = []
    for i, (text, keep) in enumerate(_docs(4, seed=1)):
        doc = Document(text=text, id=f"d{i}", metadata={})
        programs = programs_from_keep_labels(text, keep, WINDOW, UNIT)
        write_program(doc, programs, source="labels", n_lines=text.count("\n") + 1)
        docs.append(doc)
        expected += sft_records(text, programs)
    docs.append(Document(text="no program here", id="bare", metadata={}))
    broken = Document(text="a\nb", id="broken", metadata={})
    write_program(broken, programs_from_keep_labels("a\nb", [1, 0]), source="labels", n_lines=2)
    broken.metadata["refinex"]["program"]["n_lines"] = 5  # written for another text
    docs.append(broken)
    with JsonlWriter(str(tmp_path / "dt")) as writer:
        for doc in docs:
            writer.write(doc)

    records, counts = load_sft_records([str(tmp_path / "dt")])
    assert records == expected
    assert counts["documents"] == 6
    assert counts["documents_skipped_no_program"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("documents_skipped_")) == 2


def test_bad_rows_and_conflicting_windows_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completion": "c"}\n{"foo": 1}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        load_sft_records([str(bad)])
    with pytest.raises(FileNotFoundError):
        load_sft_records([str(tmp_path / "missing.jsonl")])

    from refinex_datatrove.train.sft import _record_chunking

    with pytest.raises(ValueError, match="several windows"):
        _record_chunking([{"window": 100}, {"window": 200}], None, None)
    with pytest.raises(ValueError, match="disagrees"):
        _record_chunking([{"window": 100, "unit": "chars"}], 300, None)
    assert _record_chunking([{"window": 100, "unit": "chars"}], None, None) == (100, "chars")


@pytest.mark.parametrize(
    "config", ["train_refiner.yaml", "train_default_smollm2.yaml", "train_default_smollm2_stage2.yaml"]
)
def test_configs_parse_and_cli_overrides_win(config: str) -> None:
    parser = make_parser()
    extra = ["--bf16", "false", "--use_cpu"] if config == "train_refiner.yaml" else []
    script_args, training_args, model_args = parser.parse_args_and_config(
        args=["--config", str(REPO / "pipelines" / "configs" / config), "--learning_rate", "1e-4", *extra]
    )
    assert training_args.learning_rate == 1e-4
    assert training_args.completion_only_loss is True
    assert script_args.dataset_path
    if config == "train_refiner.yaml":  # the paper's settings
        assert model_args.model_name_or_path == "Qwen/Qwen3-0.6B-Base"
        assert training_args.max_length == 16384
        assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * 8 == 256
    elif config == "train_default_smollm2_stage2.yaml":  # warm start: the LoRA shape is the stage-1 adapter's
        assert model_args.use_peft and script_args.init_adapter
        assert training_args.lr_scheduler_type == "cosine"
    else:
        assert model_args.use_peft and model_args.lora_r == 16 and model_args.lora_alpha == 32
        assert model_args.lora_target_modules == "all-linear"


def test_refinex_train_subcommand_passes_every_argument_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from refinex_datatrove import cli as refinex_cli
    from refinex_datatrove.train import sft

    seen: dict = {}
    monkeypatch.setattr(sft, "train_from_argv", lambda argv, prog=None: seen.update(argv=argv, prog=prog))
    argv = ["--config", "x.yaml", "--learning_rate", "1e-4", "--use_peft", "--set", "max_steps=3"]
    assert refinex_cli.main(["train", *argv]) == 0
    expected = ["--config", "x.yaml", "--learning_rate", "1e-4", "--use_peft", "--max_steps", "3"]
    assert seen == {"argv": expected, "prog": "refinex train"}


def test_train_help_is_short_and_shows_config(capsys: pytest.CaptureFixture) -> None:
    """``refinex train --help`` lists --config and the usual options in a screenful; --help-all has TRL's all."""
    from refinex_datatrove import cli as refinex_cli

    assert refinex_cli.main(["train", "--help"]) == 0
    short = capsys.readouterr().out
    assert "--config FILE.yaml" in short and "--dryrun" in short and "--dataset_path" in short
    assert len(short.splitlines()) < 60
    assert refinex_cli.main(["train", "--help-all"]) == 0
    full = capsys.readouterr().out
    assert len(full.splitlines()) > 300 and "--gradient_accumulation_steps" in full


def test_train_refiner_script_dryrun_and_set(capsys: pytest.CaptureFixture) -> None:
    """``pipelines/train_refiner.py --dryrun`` (README: every pipeline script takes --dryrun and --set) prints the
    resolved options of the default config on a CPU machine, although that config asks for bf16 on GPUs."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("train_refiner_script", root / "pipelines" / "train_refiner.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert script.main(["--dryrun", "--set", "learning_rate=3e-5", "--output_dir", "runs/x"]) == 0
        out = capsys.readouterr().out
        assert "learning_rate: 3.0e-05" in out and "output_dir: runs/x" in out and "bf16: true" in out
        assert "nothing was trained" in out
        assert script.main(["--dryrun", "--set", "learnin_rate=3e-5"]) == 2
        assert "learnin_rate" in capsys.readouterr().err
    finally:
        os.chdir(cwd)
