# snn-lightning: `make train` and `make test` set themselves up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install train test test-fast bench gpu-check clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev tools

train: $(STAMP)  ## train on the embedded default (digits); prints the run folder and test accuracy
	$(VENV)/bin/snn-train $(ARGS)

test: $(STAMP)  ## run the whole test suite (CPU, a few minutes)
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP)  ## the suite without tests marked slow
	$(PY) -m pytest -q -m "not slow" $(ARGS)

bench: $(STAMP)  ## benchmarks side by side with spikingjelly and snnTorch (installs them in their own folder)
	bash benchmarks/run.sh

gpu-check:  ## backends vs reference, AMP, 1-GPU DDP and throughput on CUDA (< 8 min; no install, no registry)
	bash benchmarks/gpu_check.sh $(ARGS)

clean:  ## remove caches (never outputs/, which holds runs, checkpoints and sweeps)
	rm -rf .pytest_cache
	find . -name __pycache__ -not -path "./.venv/*" -prune -exec rm -rf {} +
