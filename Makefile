# pitlane: one place for the commands a developer or CI runs.
# `make demo` and `make test` set up the locked environment (.venv) first when needed.

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: setup demo test test-fast lint types check bench images notebooks clean

setup: $(VENV)/.synced

$(VENV)/.synced: Pipfile.lock tools/bootstrap.sh pyproject.toml
	bash tools/bootstrap.sh
	touch $@

demo: setup  ## the end-to-end demo on embedded defaults (writes out/demo)
	$(BIN)/pitlane demo --out out/demo

test: setup  ## the whole test suite, slow tests included (what CI runs)
	$(PY) -m pytest

test-fast: setup  ## skip the tests marked slow
	$(PY) -m pytest -m "not slow"

lint: setup  ## ruff's lint and format check, and the layer contract (import-linter, pyproject.toml)
	$(BIN)/ruff check pitlane tests bench apps
	$(BIN)/ruff format --check pitlane tests bench apps
	$(BIN)/lint-imports

types: setup
	$(BIN)/mypy

check: lint types test  ## the one gate: lint, format, layers, types, tests

bench: setup out/demo/summary.json  ## every benchmark; each prints its figures (the gate's uses the demo's model)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

images: setup  ## the sim (amd64) and car (arm64) images with buildah, no daemon, no base pull (README: Container images)
	$(BIN)/pitlane images build

notebooks: setup  ## run the notebooks in order (Download_Data hands its tubs to simple_train) and save their outputs
	cd notebooks && ../$(BIN)/jupyter execute --inplace --timeout=1200 Download_Data.ipynb simple_train.ipynb Fleet_Data.ipynb

out/demo/summary.json:
	$(MAKE) demo

clean:
	rm -rf out .pytest_cache .ruff_cache .mypy_cache
