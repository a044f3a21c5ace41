# hrnet-fast: `make setup` builds .venv/, `make test` runs the suite, `make demo` the main job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup test demo bench clean
setup:
	$(PYTHON) tools/setup_venv.py --venv $(VENV)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tools/demo.sh

bench:
	$(PYTHON) tools/setup_venv.py --venv $(VENV) --extras dev,bench
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo runs .pytest_cache
