"""Shared launcher for the scripts in ``pipelines/``: YAML config + overrides, executor choice, ``--dryrun``.

Every pipeline script takes the same command line::

    python pipelines/<name>.py --config pipelines/configs/<name>.yaml \\
        [--set executor.tasks=8 --set executor.executor=slurm ...] [--dryrun]

* ``--config`` is a YAML mapping. Its ``executor`` section is an :class:`ExecutorArgs` (``executor: local|slurm``,
  ``tasks``, ``workers``, ``logging_dir``, ``skip_completed``, and a ``slurm`` sub-section, see
  :class:`SlurmArgs`); the other sections belong to the script.
* ``--set KEY=VALUE`` (repeatable) overrides one entry: ``KEY`` is a dotted path into the mapping
  (``distill.config.min_deleted_chars``), ``VALUE`` is parsed as a YAML scalar or flow collection (``8``,
  ``true``, ``null``, ``"[a, b]"``, ``"{k: v}"``), or taken as a plain string when it is not valid YAML (a glob
  such as ``*.jsonl``); intermediate mappings are created when missing. Overrides
  apply in order, after the file. Unknown keys are not an error here: the executor section is checked against
  :class:`ExecutorArgs` and the other sections against the constructors they feed, which reject unknown names.
* ``--dryrun`` prints the resolved configuration (YAML) and each stage's executor and steps, then exits without
  running anything. Building a ``SlurmPipelineExecutor`` submits nothing; only its ``run()`` calls ``sbatch``.

Relative paths in the config are relative to the working directory; run the scripts from the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class SlurmArgs:
    """Slurm settings, passed to datatrove's ``SlurmPipelineExecutor``."""

    partition: str | None = field(default=None, metadata={"help": "Slurm partition (required for slurm)."})
    time: str = field(default="24:00:00", metadata={"help": "Time limit per array task (HH:MM:SS)."})
    cpus_per_task: int = field(default=1, metadata={"help": "CPUs per datatrove task."})
    mem_per_cpu_gb: int = field(default=2, metadata={"help": "Memory per CPU in GB."})
    gpus_per_task: int = field(default=0, metadata={"help": "GPUs per datatrove task."})
    qos: str = field(default="normal", metadata={"help": "Slurm QOS."})
    job_name: str = field(default="refinex", metadata={"help": "Slurm job name."})
    venv_path: str | None = field(
        default=None,
        metadata={
            "help": "Virtualenv activate script sourced by each job (relative paths: to the working directory); "
            "null with env_command null: the environment of the Python running the launcher."
        },
    )
    env_command: str | None = field(
        default=None, metadata={"help": "Shell command run by each job before the pipeline (replaces venv_path)."}
    )
    sbatch_args: dict[str, Any] = field(default_factory=dict, metadata={"help": "Extra #SBATCH directives."})
    slurm_logs_folder: str | None = field(default=None, metadata={"help": "Slurm stdout/stderr folder."})

    def __post_init__(self) -> None:
        if isinstance(self.time, int) and not isinstance(self.time, bool):
            # unquoted 48:00:00 is a YAML 1.1 sexagesimal int (seconds): turn it back into HH:MM:SS
            hours, rest = divmod(self.time, 3600)
            self.time = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if not isinstance(self.time, str):
            raise ValueError(f"executor.slurm.time must be a string like '24:00:00', got {self.time!r}")
        if not isinstance(self.sbatch_args, Mapping):
            raise ValueError("executor.slurm.sbatch_args must be a mapping")


@dataclass
class ExecutorArgs:
    """Which datatrove executor runs a stage, and how many tasks."""

    executor: Literal["local", "slurm"] = field(default="local", metadata={"help": "'local' or 'slurm'."})
    tasks: int = field(default=1, metadata={"help": "Datatrove tasks (input files are sharded over them)."})
    workers: int = field(
        default=1, metadata={"help": "Tasks run at once (local: processes; slurm: array limit; -1 = all)."}
    )
    logging_dir: str = field(
        default="logs/refinex", metadata={"help": "Datatrove logging dir: completions, stats, logs (resume key)."}
    )
    skip_completed: bool = field(default=True, metadata={"help": "Skip tasks already completed in logging_dir."})
    slurm: SlurmArgs = field(default_factory=SlurmArgs, metadata={"help": "Slurm settings."})

    def __post_init__(self) -> None:
        if isinstance(self.slurm, Mapping):
            self.slurm = _from_mapping(SlurmArgs, self.slurm, "executor.slurm")
        if self.executor not in ("local", "slurm"):
            raise ValueError(f"executor.executor must be 'local' or 'slurm', got {self.executor!r}")
        if not isinstance(self.tasks, int) or self.tasks < 1:
            raise ValueError(f"executor.tasks must be an int >= 1, got {self.tasks!r}")
        if not isinstance(self.workers, int) or (self.workers < 1 and self.workers != -1):
            raise ValueError(f"executor.workers must be >= 1 or -1, got {self.workers!r}")
        if self.executor == "slurm" and not self.slurm.partition:
            raise ValueError("executor.slurm.partition is required with executor: slurm")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "executor") -> ExecutorArgs:
        """Build from the config's ``executor`` section (or another one, named by ``where``, e.g.
        ``stage2_executor``); unknown keys and bad values raise ``ValueError`` naming the section."""
        try:
            return _from_mapping(cls, data or {}, where)
        except ValueError as exc:
            message = str(exc)
            if where != "executor" and message.startswith("executor."):
                message = where + message[len("executor") :]
            raise ValueError(message) from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_mapping(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; known: {sorted(names)}")
    return cls(**data)


def apply_override(config: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override to ``config`` in place (see the module docstring).

    Raises:
        ValueError: no ``=``, an empty key, or a path that runs through a non-mapping value.
    """
    import yaml

    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {override!r} must look like key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # e.g. a glob such as *.jsonl: not valid YAML, meant as a plain string
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ValueError(f"override {override!r}: {where} is a {type(child).__name__}, not a mapping")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a YAML config (a mapping; ``None`` for an empty one) and apply the ``--set`` overrides in order.

    Raises:
        ValueError: the file is not a mapping, or an override is malformed.
        FileNotFoundError: ``path`` does not exist.
    """
    import yaml

    config: Any = {}
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        config = yaml.safe_load(text) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{path}: the config must be a YAML mapping, got {type(config).__name__}")
    for override in overrides:
        apply_override(config, override)
    return config


def make_parser(description: str, default_config: str | None = None) -> argparse.ArgumentParser:
    """The common command line of the pipeline scripts (``--config``, ``--set``, ``--dryrun``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=default_config, required=default_config is None, help="YAML config file.")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override one config entry by dotted path, e.g. --set executor.tasks=8 (repeatable).",
    )
    parser.add_argument(
        "--dryrun", action="store_true", help="Print the resolved config and the pipeline steps, then exit."
    )
    return parser


def make_executor(pipeline: list[Any], args: ExecutorArgs, depends: Any = None) -> Any:
    """A datatrove executor for ``pipeline``: ``LocalPipelineExecutor`` or ``SlurmPipelineExecutor``.

    Nothing runs or is submitted until the executor's ``run()``.

    Args:
        pipeline: the steps.
        args: executor settings.
        depends: an executor of the same kind that must finish first (datatrove's ``depends=``).
    """
    common = dict(
        pipeline=pipeline,
        tasks=args.tasks,
        workers=args.workers,
        logging_dir=args.logging_dir,
        skip_completed=args.skip_completed,
        depends=depends,
    )
    if args.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(**common)
    from datatrove.executor import SlurmPipelineExecutor

    s = args.slurm
    venv_path, env_command = job_environment(s.venv_path, s.env_command)
    return SlurmPipelineExecutor(
        **common,
        partition=s.partition,
        time=s.time,
        cpus_per_task=s.cpus_per_task,
        mem_per_cpu_gb=s.mem_per_cpu_gb,
        gpus_per_task=s.gpus_per_task,
        qos=s.qos,
        job_name=s.job_name,
        venv_path=venv_path,
        env_command=env_command,
        sbatch_args=dict(s.sbatch_args) or None,
        slurm_logs_folder=s.slurm_logs_folder,
    )


def job_environment(venv_path: str | None, env_command: str | None) -> tuple[str | None, str | None]:
    """How a Slurm job finds the right Python: ``(venv_path, env_command)`` for ``SlurmPipelineExecutor``.

    The job script runs ``launch_pickled_pipeline`` (datatrove's console script) from ``PATH``, so it must come
    from an environment where this package and datatrove are installed:

    * ``env_command`` set: used as is (``venv_path`` is then ignored by datatrove);
    * ``venv_path`` set: made absolute (relative to the working directory), so the job does not depend on the
      folder it starts in;
    * neither: the environment of the interpreter running the launcher: its virtualenv's ``bin/activate`` when
      it runs in one, else ``PATH`` is prefixed with the interpreter's ``bin`` folder.
    """
    import os
    import shlex
    import sys

    if env_command:
        return venv_path, env_command
    if venv_path:
        return os.path.abspath(os.path.expanduser(venv_path)), None
    activate = Path(sys.prefix) / "bin" / "activate"
    if sys.prefix != sys.base_prefix and activate.is_file():
        return str(activate), None
    bin_dir = os.path.dirname(os.path.abspath(sys.executable))
    return None, f'export PATH={shlex.quote(bin_dir)}:"$PATH"'


def submitted_jobs(executors: Mapping[str, Any]) -> str:
    """After ``run()`` of Slurm executors: one line per stage with its array job id and where to look.

    A stage whose tasks were all completed already (resume) is reported as skipped.
    """
    lines = []
    for name, executor in executors.items():
        job_id = getattr(executor, "job_id", None)
        if job_id in (None, -1):
            lines.append(
                f"{name}: all {executor.tasks} tasks already completed in {executor.logging_dir.path}; "
                "nothing submitted"
            )
            continue
        lines.append(
            f"{name}: submitted Slurm job {job_id}; completions, per-task logs and stats.json (merged when every "
            f"task has finished) in {executor.logging_dir.path}, job output in {executor.slurm_logs_folder}"
        )
    return "\n".join(lines)


def describe_executor(executor: Any) -> str:
    """A few lines naming an executor's kind, size, logging dir and (for Slurm) the job settings."""
    kind = type(executor).__name__
    lines = [f"executor: {kind}", f"  tasks: {executor.tasks}", f"  workers: {executor.workers}"]
    lines.append(f"  logging_dir: {executor.logging_dir.path}")
    if kind == "SlurmPipelineExecutor":
        for name in ("partition", "time", "cpus_per_task", "mem_per_cpu_gb", "gpus_per_task", "qos", "job_name"):
            lines.append(f"  {name}: {getattr(executor, name)}")
        lines.append(f"  job environment: {executor.env_command or f'source {executor.venv_path}'}")
        if executor._sbatch_args:
            lines.append(f"  sbatch_args: {json.dumps(executor._sbatch_args)}")
    lines.append("  pipeline:")
    for i, step in enumerate(executor.pipeline, start=1):
        lines.append(f"    {i}. {step!r}")
    return "\n".join(lines)


def dryrun_report(config: Mapping[str, Any], executors: Mapping[str, Any]) -> str:
    """The ``--dryrun`` text: the resolved config as YAML, then each named stage's executor and steps."""
    import yaml

    parts = ["# resolved configuration", yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True).rstrip()]
    for name, executor in executors.items():
        parts += [f"# stage: {name}", describe_executor(executor)]
    return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class Stage:
    """One named executor of a pipeline script; a later stage ``depends=`` on the earlier ones."""

    name: str
    executor: Any
    args: ExecutorArgs


def run_script(
    description: str,
    argv: Sequence[str] | None,
    build_stages: Callable[[dict[str, Any]], Sequence[Stage]],
    summarise: Callable[[str], str],
    default_config: str | None = None,
) -> int:
    """The ``main()`` of every script in ``pipelines/``: parse ``--config`` / ``--set`` / ``--dryrun``, build the
    stages, then print the dry run, or run the last stage (which runs the ones it depends on) and print
    ``summarise(logging_dir)`` of a local run or the submitted Slurm jobs.

    Args:
        description: the script's one-line description (``--help``).
        build_stages: the resolved config -> the stages, in order.
        summarise: the last stage's logging dir -> the text printed after a local run.
    """
    args = make_parser(description, default_config=default_config).parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        stages = list(build_stages(config))
    except (ValueError, FileNotFoundError) as e:  # a config the stages cannot be built from
        print(f"error: {e}", file=sys.stderr)
        return 2
    executors = {stage.name: stage.executor for stage in stages}
    if args.dryrun:
        print(dryrun_report(config, executors))
        return 0
    last = stages[-1]
    last.executor.run()
    if last.args.executor == "local":
        print(summarise(last.args.logging_dir))
    else:  # a later stage waits for the earlier ones (afterok): it never starts when one of their tasks fails
        print(submitted_jobs(executors))
    return 0


def accepted_keys(target: Any) -> set[str] | None:
    """The keyword arguments ``target`` (a class or function) accepts, following ``**kwargs`` up a class's MRO;
    ``None`` when it accepts any."""
    import inspect

    keys: set[str] = set()
    inits = (
        [k.__dict__["__init__"] for k in target.__mro__ if "__init__" in k.__dict__]
        if isinstance(target, type)
        else [target]
    )
    for init in inits:
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            return None
        keys |= {
            name
            for name, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in ("self", "cls")
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return keys
    return None


def config_call(where: str, target: Any, kwargs: Mapping[str, Any], **fixed: Any) -> Any:
    """``target(**kwargs, **fixed)`` for the config section ``where``, after checking that every key of ``kwargs``
    is one ``target`` accepts: a typo is a ``ValueError`` naming the key and the valid ones, not a ``TypeError``
    from deep inside a constructor."""
    known = accepted_keys(target)
    if known is not None:
        unknown = sorted(set(kwargs) - known)
        if unknown:
            valid = ", ".join(sorted(known - set(fixed)))
            raise ValueError(
                f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; valid keys of {where}: {valid}"
            )
    return target(**kwargs, **fixed)


__all__ = [
    "ExecutorArgs",
    "SlurmArgs",
    "Stage",
    "accepted_keys",
    "apply_override",
    "config_call",
    "describe_executor",
    "dryrun_report",
    "job_environment",
    "load_config",
    "make_executor",
    "make_parser",
    "run_script",
    "submitted_jobs",
]
