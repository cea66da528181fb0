# Two commands do everything on a fresh machine:  `make demo` (main job)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo up stop test gpu-smoke perf clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup  ## train, export, serve on a local Triton + Redis, answer recommendation requests
	$(BIN)/python -m export
	$(BIN)/python -m orchestrator.stack up
	$(BIN)/python -m orchestrator.stack demo

up: setup
	$(BIN)/python -m orchestrator.stack up

stop:  ## stop what `make demo` started
	$(BIN)/python -m orchestrator.stack down

test: setup  ## unit + integration tests (real tritonserver, real redis-server)
	$(BIN)/python -m pytest -q

gpu-smoke: setup  ## on a CUDA machine: GPU export, KIND_GPU scorers, pipelines, load, recall -> perf/results/gpu_smoke.json; fails without CUDA
	$(BIN)/python -m pytest -q tests/gpu -p no:cacheprovider --require-cuda
	$(BIN)/python -m perf.gpu_smoke --out perf/results/gpu_smoke.json

clean: stop
	rm -rf artifacts run
