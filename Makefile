# gradbench: `make bench` runs the default benchmark, `make test` the tests. Both install what is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/quick.yaml
EXECUTOR ?=
ADDRESS ?=
ARGS   ?=
OUT    ?= results
TORCH_CPU ?= torch==2.13.0

# `PY=python3` on the command line (a machine with its packages already in place, no .venv)
# skips the install step.
DEPS   := $(if $(filter command line,$(origin PY)),,$(STAMP))

RUN_FLAGS := --out $(OUT) $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(ADDRESS),--address $(ADDRESS)) $(ARGS)

.PHONY: install bench test lint microbench microbench-compare gpu-check device-call clean

install: $(STAMP)

# The venv sees the system's site-packages so that a torch already there (a CUDA build on a GPU
# machine) stands; only when none is importable does it get the CPU build, which is small.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_CPU)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

bench: $(DEPS)
	$(VENV)/bin/gradbench run $(CONFIG) $(RUN_FLAGS)
	$(VENV)/bin/gradbench report $(OUT)/latest

test: $(DEPS)
	$(PY) -m pytest -q

lint: $(DEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# pytest-benchmark of one gradient step per method (benchmarks/, not part of `make test`)
MICROBENCH := $(PY) -m pytest benchmarks/ -q --benchmark-only \
	--benchmark-storage=results/pytest-benchmark --benchmark-group-by=group --benchmark-sort=min \
	--benchmark-columns=min,median,iqr,mean,rounds,iterations --benchmark-max-time=0.5

microbench: $(DEPS)
	$(MICROBENCH) --benchmark-autosave

microbench-compare: $(DEPS)
	$(MICROBENCH) --benchmark-compare --benchmark-compare-fail=median:10%

# On a GPU machine: the `gpu` tests, the GPU sweep (experiments/gpu-check.yaml), the seed post and
# an independent do_bench timing, as one table. Needs no .venv: `make gpu-check PY=python3`.
gpu-check:
	$(PY) benchmarks/gpu_check.py $(if $(EXECUTOR),--executor $(EXECUTOR))

# On a lent GPU machine, the one prepared call: the whole suite, gpu-check, the fused kernel's
# floor, the LM head, each step's lines in summary.md as it ends, within a budget:
#   source .device-deps/setup.sh && make device-call PY=python3 ARGS="--out $$OUT --budget 540"
# `make device-call ARGS="--smoke --out /tmp/device-smoke"` runs the same steps, tiny, on a CPU.
device-call:
	$(PY) benchmarks/device_call.py $(ARGS)
