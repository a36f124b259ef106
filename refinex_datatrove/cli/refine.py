"""``refinex refine INPUT OUTPUT_DIR``: refine a JSON Lines file or folder with a refine model, locally.

Runs :func:`refinex_datatrove.recipes.build_refine_pipeline` under datatrove's ``LocalPipelineExecutor``:

    OUTPUT_DIR/refined/       refined documents (same ids), JSON Lines or Parquet (``--output-format``)
    OUTPUT_DIR/excluded/      dropped documents, one folder per filter (<n>_<name>/)
    OUTPUT_DIR/logs/          datatrove logging dir: stats.json, completions/ (a rerun skips finished tasks)
    OUTPUT_DIR/report.html    static HTML report of what the programs deleted (``--no-report`` to skip)

and prints a short summary: documents in / out / excluded, characters removed, calls applied by kind, where the
report is, and the wall time. ``--force`` deletes those four outputs first, so everything runs again. The summary
and ``logs/stats.json`` cover every completed task, also those of earlier launches (a resumed run).

Exit status: 0 when every task completed; 1 when a task failed (e.g. the endpoint went down for longer than the
retries last: README "Failure contract"), after the summary of the completed tasks: rerunning the same command
without ``--force`` runs only the unfinished tasks; 2 for a usage error, including an endpoint that does not
answer at all before the run starts (nothing is written then).

The report needs each changed document's text from before execution: with ``--report`` the executor runs with
``keep_original=True``, so changed documents carry it in ``metadata["refinex"]["original_text"]`` (the exact text
the programs ran on, also after ``--prefilter``'s C4 filter edited it); ``--no-report`` writes lean records.

``--output-format parquet`` writes the refined documents with datatrove's ``ParquetWriter``: ``metadata["refinex"]``
as a typed struct, every other metadata key JSON-encoded in ``metadata["other_metadata_json"]``; nothing of the
JSONL record is lost (:mod:`refinex_datatrove.metadata`). Excluded documents stay JSON Lines. ``refinex eval``,
``refinex report`` and the report read either format.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refinex_datatrove.cli.common import EXIT_USAGE, positive_int
from refinex_datatrove.refine_model.decision import DEFAULT_MARGIN, DEFAULT_MIN_SHARE, DEFAULT_SCORE, SCORES

_GLOB_SPECIAL = set("[]!^-*?\\")

PROGRESS_EVERY = 20.0
"""Seconds between progress lines on a terminal."""

REPORT_NAME = "report.html"
REPORT_MAX_DOCS = 1000
OUTPUTS = ("refined", "excluded", "logs", REPORT_NAME)
"""What ``refinex refine`` writes under OUTPUT_DIR (and ``--force`` deletes)."""


_ANSI = r"(?:\x1b\[[0-9;]*m)*"
_LOG_RECORD = re.compile(
    rf"^{_ANSI}(?:\[NODE \d+\] )?{_ANSI}\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}}{_ANSI} \| {_ANSI}(\w+)"
)
_QUIET_LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "SUCCESS"})


class DatatroveInfoFilter(io.TextIOBase):
    """stderr for the run: datatrove's INFO / SUCCESS log records (task start, "Processing done", the stats block
    of each task and of the run, about 40 lines) are dropped; its warnings and errors, the progress line and
    everything else pass. The records stay in ``OUTPUT_DIR/logs/`` (datatrove's file sink). Loguru resolves
    ``sys.stderr`` when datatrove adds its sink at the start of a task, so this covers tasks run in this process
    (``--workers 1``) and the run's closing stats block."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        match = _LOG_RECORD.match(text)
        if match and match.group(1) in _QUIET_LEVELS:
            return len(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def _exact_glob(name: str) -> str:
    """A glob pattern matching exactly ``name`` (datatrove prefixes ``*`` to patterns without wildcards)."""
    if name and name[0] not in _GLOB_SPECIAL:
        return f"[{name[0]}]{glob.escape(name[1:])}"
    return glob.escape(name)


def reader_section(input_path: str, text_key: str, id_key: str, limit: int) -> dict[str, Any]:
    """The ``reader`` config for INPUT: a ``.jsonl`` / ``.jsonl.gz`` file, or a folder of them (top level)."""
    path = Path(input_path)
    if path.is_dir():
        return {
            "format": "jsonl",
            "data_folder": str(path),
            "glob_pattern": "*.jsonl*",
            "text_key": text_key,
            "id_key": id_key,
            "limit": limit,
        }
    if path.is_file():
        return {
            "format": "jsonl",
            "data_folder": str(path.parent),
            "glob_pattern": _exact_glob(path.name),
            "recursive": False,
            "text_key": text_key,
            "id_key": id_key,
            "limit": limit,
        }
    raise FileNotFoundError(f"input {input_path!r} does not exist")


def count_input_docs(input_path: str) -> int | None:
    """Documents (non-blank lines) in INPUT's ``.jsonl`` / ``.jsonl.gz`` files, for the progress ETA; ``None``
    when they cannot be read."""
    import gzip

    path = Path(input_path)
    files = sorted(path.glob("*.jsonl*")) if path.is_dir() else [path]
    n = 0
    try:
        for file in files:
            opener = gzip.open if file.name.endswith(".gz") else open
            with opener(file, "rb") as f:
                n += sum(1 for line in f if line.strip())
    except (OSError, EOFError):
        return None
    return n


def _expected_docs(args: argparse.Namespace) -> int | None:
    total = count_input_docs(args.input)
    if total is None:
        return None
    if args.limit >= 0:
        total = min(total, args.limit * args.tasks)
    return -(-total // args.tasks)  # per task (files are sharded over the tasks: an estimate when tasks > 1)


def _margin(value: str) -> float | None:
    """``--overrule-margin``: a number of nats, or ``off`` (the rule off)."""
    if value.strip().lower() in ("off", "none"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of nats or 'off', got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return number


def _kv(value: str) -> tuple[str, Any]:
    import yaml

    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    p.add_argument("--tasks", type=positive_int, default=1, help="datatrove tasks (input files are sharded over them)")
    p.add_argument("--workers", type=positive_int, default=1, help="tasks run at once (one model per worker)")
    p.add_argument(
        "--backend",
        choices=("vllm", "endpoint", "transformers"),
        default=None,
        help="generation backend (default: vllm with CUDA, else transformers)",
    )
    p.add_argument("--base-url", default=None, help="server URL for --backend endpoint (e.g. http://127.0.0.1:8000)")
    p.add_argument(
        "--backend-kwarg",
        action="append",
        type=_kv,
        default=[],
        metavar="KEY=VALUE",
        help="extra backend argument, value parsed as YAML (repeatable), e.g. num_threads=2",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16", "auto"),
        default=None,
        help="number type of the transformers backend (default: bfloat16 where the CPU has it in "
        "hardware, else float32; 'auto': the checkpoint's own)",
    )
    p.add_argument("--window", type=positive_int, default=None, help="chunk window (default: the model's)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="documents per generate() call: their chunks share joined decode batches (default: %(default)s)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=512,
        help="bound on each program's tokens (each chunk is also bounded by its line count)",
    )
    p.add_argument(
        "--guided",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode inside each chunk's program grammar (line numbers within the chunk, no inverted range): "
        "vLLM's structured outputs, an endpoint's guided_regex, xgrammar on the transformers backend "
        "(default: on for the transformers backend, where it was faster and no worse, off for the others)",
    )
    p.add_argument(
        "--overrule-margin",
        type=_margin,
        default=DEFAULT_MARGIN,
        metavar="NATS|off",
        help="the conservative decision rule: a program deleting at least --overrule-share of a chunk's lines is "
        "kept only when it beats keep_all() by this many nats of the model's own likelihood, else the chunk keeps "
        "its text (stat overruled_drastic_chunk); 'off' accepts every program (default: %(default)s, chosen on "
        "WCXB dev)",
    )
    p.add_argument(
        "--overrule-share",
        type=float,
        default=DEFAULT_MIN_SHARE,
        metavar="SHARE",
        help="share of a chunk's non-blank lines from which a program counts as drastic (default: %(default)s)",
    )
    p.add_argument(
        "--overrule-score",
        choices=SCORES,
        default=DEFAULT_SCORE,
        help="the likelihood a drastic program is scored by: the whole program's, or its first token's, against "
        "keep_all()'s first token (default: %(default)s)",
    )
    p.add_argument("--limit", type=int, default=-1, help="documents per task (default: all)")
    p.add_argument(
        "--prefilter",
        action="store_true",
        help="run datatrove's offline FineWeb filters (Gopher, C4, FineWeb quality) before the model",
    )
    p.add_argument("--min-words", type=int, default=11, help="drop refined documents with fewer words (default 11)")
    p.add_argument("--compression", choices=("gzip", "none"), default="gzip", help="output compression")
    p.add_argument(
        "--output-format",
        choices=("jsonl", "parquet"),
        default="jsonl",
        help="format of OUTPUT_DIR/refined (default: %(default)s); Parquet keeps every metadata field "
        "(metadata['refinex'] typed, other keys JSON-encoded in metadata['other_metadata_json'])",
    )
    p.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write OUTPUT_DIR/report.html (deletions struck through, per call); keeps each changed "
        "document's original text in its metadata (default: on)",
    )
    p.add_argument(
        "--report-max-docs",
        type=positive_int,
        default=REPORT_MAX_DOCS,
        metavar="N",
        help="documents in the report: the first N refined, then excluded by the quality filter "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="delete OUTPUT_DIR's refined/, excluded/, logs/ and report.html first and run everything "
        "again (without it, tasks completed in OUTPUT_DIR/logs are skipped)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show datatrove's own log lines (task start and end, the stats blocks) on the terminal; they "
        "are always in OUTPUT_DIR/logs/",
    )
    p.add_argument(
        "--progress",
        type=float,
        default=None,
        metavar="SECONDS",
        help="print a progress line (documents, chunks, tokens/s, ETA) every SECONDS to stderr "
        "(default: every 20 s on a terminal, none otherwise; 0: none)",
    )
    p.add_argument("--dryrun", action="store_true", help="print the resolved configuration and exit")
    return p


def default_guided(backend: str | None) -> bool:
    """Whether ``refinex refine`` decodes inside the program grammar when neither ``--guided`` nor
    ``--no-guided`` is given: on the transformers backend (``backend``, or the automatic choice when ``None``),
    where xgrammar gave 0 invalid calls and out-of-range or inverted ranges and was faster (README, "Figures");
    off for vLLM and endpoints, whose guided decoding has not been measured against free decoding."""
    if backend is None:
        from refinex_datatrove.llm import default_backend_kind

        backend = default_backend_kind()
    return backend == "transformers"


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline configuration for the parsed command line."""
    out = Path(args.output_dir)
    backend_kwargs = dict(args.backend_kwarg)
    if args.base_url:
        backend_kwargs["base_url"] = args.base_url
    if getattr(args, "dtype", None):
        backend_kwargs["dtype"] = args.dtype
    progress = getattr(args, "progress", None)
    if progress is None:
        progress = PROGRESS_EVERY if sys.stderr.isatty() else 0
    compression = None if args.compression == "none" else args.compression
    return {
        "executor": {
            "executor": "local",
            "tasks": args.tasks,
            "workers": args.workers,
            "logging_dir": str(out / "logs"),
            "skip_completed": True,
        },
        "reader": reader_section(args.input, args.text_key, args.id_key, args.limit),
        "filters": {
            "gopher_repetition": args.prefilter,
            "gopher_quality": args.prefilter,
            "c4_quality": args.prefilter,
            "fineweb_quality": args.prefilter,
        },
        "annotate": {
            "model": args.model,
            "backend": args.backend,
            "backend_kwargs": backend_kwargs,
            "window": args.window,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "guided": default_guided(args.backend) if args.guided is None else args.guided,
            "overrule_margin": getattr(args, "overrule_margin", DEFAULT_MARGIN),
            "overrule_share": getattr(args, "overrule_share", DEFAULT_MIN_SHARE),
            "overrule_score": getattr(args, "overrule_score", DEFAULT_SCORE),
            "workers": args.workers,
            "progress_every": progress or None,
            "expected_docs": _expected_docs(args) if progress else None,
        },
        "execute": {"keep_original": bool(getattr(args, "report", False))},
        "quality": {"min_words": args.min_words},
        "output": {
            "format": getattr(args, "output_format", "jsonl"),
            "folder": str(out / "refined"),
            "excluded": str(out / "excluded"),
            "compression": compression,
        },
    }


def clear_outputs(output_dir: str | Path) -> list[str]:
    """Delete what a previous ``refinex refine`` wrote under ``output_dir`` (:data:`OUTPUTS` only).

    Returns:
        The deleted paths.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUTPUT_DIR {output_dir!r} is not a folder")
    removed = []
    for name in OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(str(path))
    return removed


def _completed_tasks(logging_dir: str | Path) -> int:
    folder = Path(logging_dir) / "completions"
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def report_docs(output_dir: str | Path, max_docs: int = REPORT_MAX_DOCS) -> Iterator[dict[str, Any]]:
    """The report's documents for a finished run: the refined ones, then those the quality filter excluded (with
    their drop reason as a note); at most ``max_docs``. Documents excluded before the model have no program and
    are left out (the summary counts them)."""
    from refinex_datatrove.files import RECORD_SUFFIXES, iter_records
    from refinex_datatrove.eval.report import report_doc

    out = Path(output_dir)
    sources = [(out / "refined", None)]
    if (out / "excluded").is_dir():
        sources += [(p, p.name) for p in sorted((out / "excluded").iterdir()) if p.name.endswith("refinex_quality")]
    n = 0
    for folder, excluded in sources:
        if not folder.is_dir() or not any(p.name.endswith(RECORD_SUFFIXES) for p in folder.rglob("*")):
            continue
        for file, line, rec in iter_records(str(folder)):
            if n >= max_docs:
                return
            if not isinstance(rec, dict):
                print(f"warning: {file}:{line}: not a JSON object, left out of the report", file=sys.stderr)
                continue
            doc = report_doc(rec)
            if excluded:
                metadata = rec.get("metadata")
                reason = metadata.get("filter_reason") if isinstance(metadata, dict) else None
                doc["notes"] = [*doc["notes"], f"excluded by the quality filter ({reason or excluded})"]
            n += 1
            yield doc


def write_refine_report(output_dir: str | Path, max_docs: int = REPORT_MAX_DOCS, title: str | None = None) -> Path:
    """Write ``OUTPUT_DIR/report.html`` for a finished local run (:func:`report_docs` plus the run's stats)."""
    from refinex_datatrove.eval.report import write_report
    from refinex_datatrove.run_stats import STATS_JSON

    out = Path(output_dir)
    stats = out / "logs" / STATS_JSON
    return write_report(
        report_docs(out, max_docs),
        out / REPORT_NAME,
        stats=str(stats) if stats.is_file() else None,
        title=title or f"RefineX report: {out}",
        max_docs=max_docs,
    )


def _error(message: str) -> int:
    print(f"refinex refine: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_endpoint(config: dict[str, Any]) -> str | None:
    """For ``--backend endpoint``: why the server cannot be used (one line), or ``None``."""
    from refinex_datatrove.llm.openai_endpoint import OpenAIEndpointBackend

    kwargs = config["annotate"]["backend_kwargs"]
    base_url = kwargs.get("base_url")
    if not base_url:
        return "--backend endpoint needs --base-url URL"
    try:
        backend = OpenAIEndpointBackend(base_url, str(kwargs.get("model") or config["annotate"]["model"]))
    except ValueError as e:
        return str(e)
    cause = backend.check_reachable(kwargs.get("timeout"))
    return None if cause is None else f"endpoint {backend.base_url} is unreachable: {cause}"


def run(args: argparse.Namespace) -> int:
    from refinex_datatrove.launch import ExecutorArgs, dryrun_report, make_executor
    from refinex_datatrove.recipes import build_refine_pipeline
    from refinex_datatrove.run_stats import format_summary, merge_completed_stats, refine_summary

    t0 = time.perf_counter()
    # threads that spin while waiting for each other waste a shared machine's cores; read once, when the
    # OpenMP runtime loads with torch, so set before anything imports torch
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        return _error(f"OUTPUT_DIR {args.output_dir!r} exists and is not a folder")
    try:
        config = build_config(args)
        executor_args = ExecutorArgs.from_dict(config["executor"])
        executor = make_executor(build_refine_pipeline(config), executor_args)
    except (FileNotFoundError, ValueError) as e:
        if args.model == "default" and isinstance(e, FileNotFoundError) and "default refine model" in str(e):
            e = FileNotFoundError(f"{e}; pass --model MODEL_DIR")
        print(f"refinex refine: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.dryrun:
        print(dryrun_report(config, {"refine": executor}))
        return 0
    if config["annotate"]["backend"] == "endpoint" and (problem := _check_endpoint(config)) is not None:
        return _error(problem)
    if args.force:
        try:
            clear_outputs(args.output_dir)
        except (OSError, ValueError) as e:
            print(f"refinex refine: error: cannot clear {args.output_dir!r}: {e}", file=sys.stderr)
            return EXIT_USAGE
    elif _completed_tasks(executor_args.logging_dir) >= args.tasks:
        print(
            f"note: every task is already completed in {executor_args.logging_dir}: nothing runs again "
            "(pass --force to run everything again)",
            file=sys.stderr,
        )
    failure: Exception | None = None
    try:
        with contextlib.nullcontext() if args.verbose else contextlib.redirect_stderr(DatatroveInfoFilter(sys.stderr)):
            executor.run()
    except Exception as e:  # noqa: BLE001 - a task failed (datatrove logged it): report the completed ones
        failure = e
    t_run = time.perf_counter() - t0
    merged = merge_completed_stats(executor_args.logging_dir)
    if failure is not None:
        if merged:
            print(f"completed tasks ({merged} of {args.tasks}):")
            print(format_summary(refine_summary(executor_args.logging_dir)))
        print(
            f"refinex refine: error: {merged} of {args.tasks} tasks completed; a task failed: "
            f"{str(failure).splitlines()[0] if str(failure) else type(failure).__name__}\n"
            "No document of an unfinished task is counted or reported as refined. Rerun the same command "
            "(without --force) to run the unfinished tasks.",
            file=sys.stderr,
        )
        return 1
    print(format_summary(refine_summary(executor_args.logging_dir)))
    print(f"refined documents: {Path(args.output_dir) / 'refined'}")
    if args.report:
        path = write_refine_report(args.output_dir, args.report_max_docs)
        print(f"report: {path}")
    total = time.perf_counter() - t0
    print(f"wall time: {total:.1f} s (pipeline {t_run:.1f} s, report {total - t_run:.1f} s)")
    return 0


__all__ = [
    "OUTPUTS",
    "REPORT_NAME",
    "add_parser",
    "build_config",
    "clear_outputs",
    "reader_section",
    "report_docs",
    "run",
    "write_refine_report",
]
