# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
# While working: `make check` (lint and the fast tier, minutes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo check test lint bench clean docs docs-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e ".[dev,docs]"
	touch $(STAMP)

demo: $(STAMP)  ## every ablation grid on the cpu-mini preset, 2 seeds, tracked in ./mlflow.db
	$(BIN)/byol-ray reproduce --preset cpu-mini --seeds 2

# pytest's exit status 5 (no test collected) is a failure, not a pass.
PYTEST_NONE_FAILS = rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	exit $$rc

# Two pytest-xdist workers, whole modules each, longest first (tests/conftest.py): one trains
# while the other waits on Ray, a server or a child process.
PARALLEL = -n 2 --dist loadscope --no-loadscope-reorder

check: $(STAMP) lint  ## lint and every test not marked slow: no Ray, no server, no training
	$(BIN)/pytest -q $(PARALLEL) -m "not slow"; $(PYTEST_NONE_FAILS)

# The whole suite needs the bench extra too: tests/test_bench_contenders.py compares our step
# with lightly's and byol-pytorch's. --durations: the slowest tests, named on every run.
test: $(BENCH_STAMP) lint docs-check  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/pytest -q $(PARALLEL) --durations=25; $(PYTEST_NONE_FAILS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --progress-bar off -e ".[dev,docs,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## speed and memory ratios side by side (not tests); results in bench.json
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/augment_throughput.py
	$(BIN)/python benchmarks/imagenet_decode.py
	$(BIN)/python benchmarks/step_throughput.py
	$(BIN)/python benchmarks/trial_step_cost.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/eval_cost.py

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)  ## the documentation site on http://127.0.0.1:8000, rebuilt on every edit
	$(BIN)/mkdocs serve

docs-check: $(STAMP)  ## the site builds: no broken link, missing page or renamed API function
	site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $$site; \
	rc=$$?; rm -rf $$site; exit $$rc

clean:
	rm -rf $(VENV) mlflow.db mlruns
