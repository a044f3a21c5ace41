# hrnet-fast: `make setup` builds .venv/, `make test` runs the suite, `make demo` the main job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup lint test demo bench clean
setup:
	$(PYTHON) tools/setup_venv.py --venv $(VENV)

# The float tests again on a second CPU kernel path (scalar ATen, oneDNN capped at SSE4.1): one
# that holds only for this machine's ISA fails here, not on a user's machine with another CPU.
SECOND_KERNEL_PATH := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q
	$(SECOND_KERNEL_PATH) $(BIN)/python -m pytest -q -m numerics

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tools/demo.sh

# benchmarks/peers/setup.sh: FFCV and DALI for loader_vs_peers, in a venv of their own; a peer it
# cannot install is skipped there, with the reason, so a failure here does not stop the run.
bench:
	$(PYTHON) tools/setup_venv.py --venv $(VENV) --extras dev,bench
	-bash benchmarks/peers/setup.sh
	$(BIN)/python benchmarks/run_all.py
	$(BIN)/python benchmarks/time_to_accuracy.py --quick

clean:
	rm -rf $(VENV) benchmarks/peers/.venv demo runs .pytest_cache
