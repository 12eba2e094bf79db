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

.PHONY: demo test lint mutants install bench docs clean

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

bench: $(STAMP)
	$(BIN)/asv machine --yes >/dev/null
	$(BIN)/asv run -E existing:$(abspath $(BIN)/python) --set-commit-hash $$(git rev-parse HEAD) --show-stderr
	$(BIN)/asv publish

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) reports .asv site
