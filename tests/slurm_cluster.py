"""A throwaway one-node Slurm cluster (slurmctld + slurmd + its own munged) for tests, run as root.

The recipe is stack-notes.md §9 (Debian 12's ``slurm-wlm`` 22.05 and ``munge``; no systemd, no cgroups), made
self-contained so it neither needs nor touches a system-wide setup:

* everything lives in one temporary folder: ``slurm.conf``, the state, spool and log folders, a fresh
  ``munge.key`` and the munge socket;
* a private ``munged`` listens on that socket (``AuthInfo=socket=...`` in ``slurm.conf``), so a ``munged``
  already running on the machine, with whatever key, is left alone;
* slurmctld and slurmd listen on free ports picked at start, the node is this host at ``127.0.0.1`` with
  ``CPUs=2`` (``SlurmdParameters=config_overrides``: the configured size is used whatever the machine has);
* the three daemons run in the foreground as child processes and are stopped by their process ids
  (``SIGTERM``, then ``SIGKILL``); jobs still queued or running are cancelled first. ``stop()`` also runs at
  interpreter exit, and the daemons get ``SIGTERM`` from the kernel if the process that started them dies.

Clients find the cluster through ``SLURM_CONF``: :meth:`SlurmCluster.env` returns it, and
:meth:`SlurmCluster.activate` sets it in ``os.environ`` so that code calling ``sbatch`` itself (datatrove's
``SlurmPipelineExecutor``) submits here; ``sbatch --export=ALL`` hands it on to the jobs (``srun`` inside them).

Usage::

    from tests.slurm_cluster import SlurmCluster, SlurmUnavailable

    with SlurmCluster(cpus=2) as cluster:          # starts munged, slurmctld, slurmd; waits for an idle node
        cluster.activate()                          # os.environ["SLURM_CONF"] = cluster.conf_path
        job = cluster.sbatch("#!/bin/bash\\necho hi")
        cluster.wait_jobs([job])                    # {job id: "COMPLETED"}
    # every daemon is stopped here; ``stop()`` is also registered with atexit

``SlurmCluster.start`` raises :class:`SlurmUnavailable` (with the reason) when the binaries are missing, the
process is not root, or a daemon does not come up; tests turn that into a skip.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self


BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
FINISHED_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE",
}


class SlurmUnavailable(RuntimeError):
    """Slurm cannot run here; the message says why (missing package, not root, a daemon that did not start)."""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pdeathsig_preexec():
    """A ``preexec_fn`` that asks Linux to send the child ``SIGTERM`` when its parent (the test process) dies, so
    a killed test session leaves no daemon behind; ``None`` where ``prctl`` is not available. libc is loaded here,
    in the parent: the forked child only makes the call (no dlopen after fork in a threaded process)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class SlurmCluster:
    """One slurmctld + one slurmd (this host) + a private munged, configured in a temporary folder.

    Args:
        cpus: CPUs of the single node (tests on 2-core machines: 2, and 1 CPU per task).
        real_memory_mb: memory the node advertises; only compared with ``--mem-per-cpu`` requests (memory is not
            a consumable resource with ``CR_Core`` and nothing enforces it without cgroups).
        partition: the one partition, the default one.
        root: the folder for configuration, state and logs (default: a new temporary folder, removed on stop).
    """

    def __init__(
        self, cpus: int = 2, real_memory_mb: int = 16000, partition: str = "debug", root: str | Path | None = None
    ) -> None:
        self.cpus = cpus
        self.real_memory_mb = real_memory_mb
        self.partition = partition
        self._own_root = root is None
        self.root = Path(root) if root is not None else None
        self.node = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self._saved_env: str | None = None
        self._activated = False

    # ---- paths -------------------------------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.socket"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) plus ``SLURM_CONF`` pointing at this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf_path)
        return env

    # ---- start / stop ------------------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        """Write the configuration, start munged, slurmctld and slurmd, and wait for the node to be idle.

        Raises:
            SlurmUnavailable: missing binaries, not root, or a daemon that exits or never gets ready (the
                daemons already started are stopped again).
        """
        missing = [b for b in BINARIES if _which(b) is None]
        if missing:
            raise SlurmUnavailable(f"Slurm/munge not installed (missing {', '.join(missing)}; "
                                   "apt-get install slurm-wlm munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test cluster runs slurmctld/slurmd as root; not running as root")
        if self.root is None:
            # under /tmp rather than $TMPDIR: munged wants every folder above its socket searchable by all
            base = "/tmp" if os.path.isdir("/tmp") else None
            self.root = Path(tempfile.mkdtemp(prefix="refinex-slurm-", dir=base))
        atexit.register(self.stop)
        try:
            self._write_files()
            self._start_munged(timeout)
            self._start_daemon("slurmctld", ["-D", "-i", "-f", str(self.conf_path)])
            self._start_daemon("slurmd", ["-D", "-f", str(self.conf_path), "-N", self.node])
            self._wait_idle_node(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_files(self) -> None:
        root = self.root
        root.chmod(0o755)  # munged wants its socket's folders searchable by everyone
        for sub, mode in (("etc", 0o755), ("run", 0o755), ("munge", 0o700), ("state", 0o755), ("spool", 0o755),
                          ("log", 0o755)):
            (root / sub).mkdir(mode=mode, exist_ok=True)
            (root / sub).chmod(mode)
        key = root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port, slurmd_port = _free_port(), _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        conf = f"""\
# written by tests/slurm_cluster.py: a one-node test cluster in {root}
ClusterName=refinextest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
KillWait=5
InactiveLimit=0
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory_mb} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        self.conf_path.write_text(conf, encoding="utf-8")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.root / "log" / f"{name}.stderr"
        self._logs[name] = log
        with open(log, "ab") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, env=self.env(),
                start_new_session=True,  # a Ctrl-C in the test session reaches pytest, not the daemons
                preexec_fn=_pdeathsig_preexec(),  # noqa: PLW1509 - only a prctl call, resolved before the fork
            )
        self.procs[name] = proc
        return proc

    def _start_munged(self, timeout: float) -> None:
        self._spawn("munged", [
            _which("munged"), "--foreground", f"--socket={self.munge_socket}",
            f"--key-file={self.root}/munge/munge.key", f"--pid-file={self.root}/run/munged.pid",
            f"--seed-file={self.root}/munge/munged.seed", "--num-threads=4",
        ])
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged")

    def _start_daemon(self, name: str, args: list[str]) -> None:
        self._spawn(name, [_which(name), *args])

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                                           f"{_tail(self._logs[name])}\n{self.logs_tail()}")
            if ready():
                return
            time.sleep(0.25)
        raise SlurmUnavailable(f"{what} not ready after {timeout:.0f} s:\n{self.logs_tail()}")

    def _wait_idle_node(self, timeout: float) -> None:
        def idle() -> bool:
            out = self._run(["sinfo", "-h", "-N", "-o", "%T"], check=False)
            return out.returncode == 0 and out.stdout.strip().rstrip("*") == "idle"

        self._wait(idle, timeout, "an idle node")

    def logs_tail(self, n: int = 15) -> str:
        """The last lines of the slurmctld and slurmd logs (for error messages)."""
        parts = []
        for name in ("slurmctld", "slurmd"):
            parts.append(f"--- {name}.log\n{_tail(self.root / 'log' / f'{name}.log', n)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel the jobs, stop slurmd, slurmctld and munged by their process ids, remove the temporary folder.

        Safe to call twice; also runs at interpreter exit.
        """
        if not self.procs:
            return
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            try:
                self.cancel_all()
                self._wait_no_jobs(20)
            except (OSError, subprocess.SubprocessError):
                pass  # the daemons are stopped below in any case
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        self.deactivate()
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def activate(self) -> None:
        """Point ``os.environ["SLURM_CONF"]`` at this cluster (restored by :meth:`deactivate` / :meth:`stop`)."""
        if not self._activated:
            self._saved_env = os.environ.get("SLURM_CONF")
            self._activated = True
        os.environ["SLURM_CONF"] = str(self.conf_path)

    def deactivate(self) -> None:
        if not self._activated:
            return
        if self._saved_env is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self._saved_env
        self._activated = False

    # ---- client helpers ----------------------------------------------------------------------------------------

    def _run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True, check=check, timeout=60, **kw)

    def sbatch(self, script: str, *args: str, cwd: str | Path | None = None) -> str:
        """Submit a batch script (its text); returns the job id."""
        out = self._run(["sbatch", "--parsable", *args], input=script, cwd=cwd)
        return out.stdout.strip().split(";")[0]

    def pids(self) -> dict[str, int]:
        """``{daemon: process id}`` of the daemons this cluster started and that still run."""
        return {name: proc.pid for name, proc in self.procs.items() if proc.poll() is None}

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller still knows (finished ones too, for ``MinJobAge``), one dict per array task:
        ``JobId``, ``ArrayJobId``, ``ArrayTaskId``, ``JobName``, ``JobState``, ``Reason``, ``ExitCode``, ...."""
        out = self._run(["scontrol", "show", "job", "-o"], check=False)
        if out.returncode != 0 or "No jobs in the system" in out.stdout:
            return []
        rows = []
        for line in out.stdout.splitlines():
            if line.strip():
                rows.append(dict(re.findall(r"(\w+)=(\S*)", line)))
        return rows

    def states(self, job_ids: Iterable[str]) -> dict[str, str]:
        """``{job id or array task "A_i": state}`` for the given job ids (array jobs expand to their tasks)."""
        wanted = {str(j) for j in job_ids}
        out = {}
        for row in self.jobs():
            top = row.get("ArrayJobId") or row.get("JobId")
            if top in wanted or row.get("JobId") in wanted:
                task = row.get("ArrayTaskId")
                key = f"{top}_{task}" if task and task != "N/A" else row["JobId"]
                out[key] = row.get("JobState", "?")
        return out

    def wait_jobs(self, job_ids: Iterable[str], timeout: float = 300.0) -> dict[str, str]:
        """Wait until every task of the given jobs has finished; returns their final states.

        Raises:
            TimeoutError: still running after ``timeout`` seconds (the states are in the message).
        """
        job_ids = [str(j) for j in job_ids]
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.states(job_ids)
            if states and all(s in FINISHED_STATES for s in states.values()):
                return states
            time.sleep(1.0)
        raise TimeoutError(f"jobs {job_ids} not finished after {timeout:.0f} s: {states}")

    def wait_all(self, timeout: float = 300.0) -> dict[str, str]:
        """Wait until no job is pending or running; returns ``{job: state}`` for every job known."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.jobs()
            if all(r.get("JobState") in FINISHED_STATES for r in rows):
                return {self._key(r): r.get("JobState", "?") for r in rows}
            time.sleep(1.0)
        raise TimeoutError(f"jobs not finished after {timeout:.0f} s: "
                           f"{ {self._key(r): r.get('JobState') for r in self.jobs()} }")

    @staticmethod
    def _key(row: Mapping[str, str]) -> str:
        task = row.get("ArrayTaskId")
        top = row.get("ArrayJobId") or row.get("JobId")
        return f"{top}_{task}" if task and task != "N/A" else row.get("JobId", "?")

    def cancel_all(self) -> None:
        """``scancel`` every job of this cluster."""
        ids = {r.get("ArrayJobId") or r.get("JobId") for r in self.jobs() if r.get("JobState") not in FINISHED_STATES}
        if ids:
            self._run(["scancel", *sorted(i for i in ids if i)], check=False)

    def _wait_no_jobs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r.get("JobState") in FINISHED_STATES for r in self.jobs()):
                return
            time.sleep(0.5)


__all__ = ["FINISHED_STATES", "SlurmCluster", "SlurmUnavailable"]
