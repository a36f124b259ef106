"""``refinex refine INPUT OUTPUT_DIR``: refine a JSON Lines file or folder with a refine model, locally.

Runs :func:`refinex_datatrove.pipelines.build_refine_pipeline` under datatrove's ``LocalPipelineExecutor``:

    OUTPUT_DIR/refined/       refined documents (same ids), JSON Lines
    OUTPUT_DIR/excluded/      dropped documents, one folder per filter (<n>_<name>/)
    OUTPUT_DIR/logs/          datatrove logging dir: stats.json, completions/ (a rerun skips finished tasks)

and prints a short summary: documents in / out / excluded, characters removed, calls applied by kind.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import Any


_GLOB_SPECIAL = set("[]!^-*?\\")


def _exact_glob(name: str) -> str:
    """A glob pattern matching exactly ``name`` (datatrove prefixes ``*`` to patterns without wildcards)."""
    if name and name[0] not in _GLOB_SPECIAL:
        return f"[{name[0]}]{glob.escape(name[1:])}"
    return glob.escape(name)


def reader_section(input_path: str, text_key: str, id_key: str, limit: int) -> dict[str, Any]:
    """The ``reader`` config for INPUT: a ``.jsonl`` / ``.jsonl.gz`` file, or a folder of them (top level)."""
    path = Path(input_path)
    if path.is_dir():
        return {"format": "jsonl", "data_folder": str(path), "glob_pattern": "*.jsonl*", "text_key": text_key,
                "id_key": id_key, "limit": limit}
    if path.is_file():
        return {"format": "jsonl", "data_folder": str(path.parent), "glob_pattern": _exact_glob(path.name),
                "recursive": False, "text_key": text_key, "id_key": id_key, "limit": limit}
    raise FileNotFoundError(f"input {input_path!r} does not exist")


def _kv(value: str) -> tuple[str, Any]:
    import yaml

    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def add_refine_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "refine",
        help="refine a JSON Lines file or folder with a refine model (annotate, execute, filter, write)",
        description="Annotate every document with the refine model's programs, execute them (deletion only), "
        "drop documents that end up too short, and write the rest with their ids to OUTPUT_DIR/refined "
        "(dropped ones to OUTPUT_DIR/excluded, datatrove stats to OUTPUT_DIR/logs/stats.json).",
    )
    p.add_argument("input", metavar="INPUT", help="a .jsonl / .jsonl.gz file, or a folder of them")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="output folder")
    p.add_argument(
        "--model",
        default="default",
        help="trained refine model folder (with refinex.json), a model id, or 'default' for the shipped model "
        "(default: %(default)s); with --backend endpoint, the name the server serves",
    )
    p.add_argument("--text-key", default="text", help="JSON key of the text (default: %(default)s)")
    p.add_argument("--id-key", default="id", help="JSON key of the id (default: %(default)s)")
    p.add_argument("--tasks", type=_positive, default=1, help="datatrove tasks (input files are sharded over them)")
    p.add_argument("--workers", type=_positive, default=1, help="tasks run at once (one model per worker)")
    p.add_argument("--backend", choices=("vllm", "endpoint", "transformers"), default=None,
                   help="generation backend (default: vllm with CUDA, else transformers)")
    p.add_argument("--base-url", default=None, help="server URL for --backend endpoint (e.g. http://127.0.0.1:8000)")
    p.add_argument("--backend-kwarg", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="extra backend argument, value parsed as YAML (repeatable), e.g. num_threads=2")
    p.add_argument("--window", type=_positive, default=None, help="chunk window (default: the model's)")
    p.add_argument("--batch-size", type=_positive, default=16, help="documents per generate() call")
    p.add_argument("--max-new-tokens", type=_positive, default=512, help="bound on each program's tokens")
    p.add_argument("--guided", action="store_true", help="grammar-constrained decoding (vllm / endpoint)")
    p.add_argument("--limit", type=int, default=-1, help="documents per task (default: all)")
    p.add_argument("--prefilter", action="store_true",
                   help="run datatrove's offline FineWeb filters (Gopher, C4, FineWeb quality) before the model")
    p.add_argument("--min-words", type=int, default=11, help="drop refined documents with fewer words (default 11)")
    p.add_argument("--compression", choices=("gzip", "none"), default="gzip", help="output compression")
    p.add_argument("--dryrun", action="store_true", help="print the resolved configuration and exit")
    return p


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline configuration for the parsed command line."""
    out = Path(args.output_dir)
    backend_kwargs = dict(args.backend_kwarg)
    if args.base_url:
        backend_kwargs["base_url"] = args.base_url
    compression = None if args.compression == "none" else args.compression
    return {
        "executor": {"executor": "local", "tasks": args.tasks, "workers": args.workers,
                     "logging_dir": str(out / "logs"), "skip_completed": True},
        "reader": reader_section(args.input, args.text_key, args.id_key, args.limit),
        "filters": {"gopher_repetition": args.prefilter, "gopher_quality": args.prefilter,
                    "c4_quality": args.prefilter, "fineweb_quality": args.prefilter},
        "annotate": {"model": args.model, "backend": args.backend, "backend_kwargs": backend_kwargs,
                     "window": args.window, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                     "guided": args.guided},
        "quality": {"min_words": args.min_words},
        "output": {"format": "jsonl", "folder": str(out / "refined"), "excluded": str(out / "excluded"),
                   "compression": compression},
    }


def run_refine(args: argparse.Namespace) -> int:
    from refinex_datatrove.launch import ExecutorArgs, dryrun_report, make_executor
    from refinex_datatrove.pipelines import build_refine_pipeline, format_summary, refine_summary

    try:
        config = build_config(args)
        executor_args = ExecutorArgs.from_dict(config["executor"])
        executor = make_executor(build_refine_pipeline(config), executor_args)
    except (FileNotFoundError, ValueError) as e:
        if args.model == "default" and isinstance(e, FileNotFoundError) and "default refine model" in str(e):
            e = FileNotFoundError(f"{e}; pass --model MODEL_DIR")
        print(f"refinex refine: error: {e}", file=sys.stderr)
        return 2
    if args.dryrun:
        print(dryrun_report(config, {"refine": executor}))
        return 0
    executor.run()
    print(format_summary(refine_summary(executor_args.logging_dir)))
    return 0


__all__ = ["add_refine_parser", "build_config", "reader_section", "run_refine"]
