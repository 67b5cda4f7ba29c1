# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo test lint bench clean docs docs-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e ".[dev,docs]"
	touch $(STAMP)

demo: $(STAMP)  ## every ablation grid on the cpu-mini preset, 2 seeds, tracked in ./mlflow.db
	$(BIN)/byol-ray reproduce --preset cpu-mini --seeds 2

test: $(STAMP) lint docs-check  ## the whole suite, slow end-to-end tests included
	$(BIN)/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	exit $$rc

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --progress-bar off -e ".[dev,bench]"
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
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir $$site; \
	rc=$$?; rm -rf $$site; exit $$rc

clean:
	rm -rf $(VENV) mlflow.db mlruns
