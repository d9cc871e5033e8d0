# lstm-digits: `make train` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# `make test` runs its tests in this many pytest-xdist workers. Much of a test is waiting (on
# a server, SLURM, a signal's effect): three keep two cores busy (TEST_WORKERS=1: one process).
TEST_WORKERS ?= 3

.DEFAULT_GOAL := help

help: ## List the targets (colours on a terminal only, none in a pipe or with NO_COLOR)
	@if [ -t 1 ] && [ -z "$$NO_COLOR" ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' -v on="$$on" -v off="$$off" \
		'{printf "  %s%-14s%s %s\n", on, $$1, off, $$2}'

# The versions every install gets (`make lock` refreshes it).
LOCK := constraints.txt
EXTRAS := dev,optuna,postgres,auth

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# A .venv made before TensorFlow came as one distribution: tensorflow-cpu writes the same module.
	$(BIN)/python -m pip uninstall --quiet --yes tensorflow-cpu 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	@# The fused gate kernel (kernel=auto): built now rather than by the first run (about 10 s).
	$(BIN)/python -m lstm_cli.networks.fused_kernel
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev, optuna, postgres and auth extras, at the locked versions

lock: ## Refresh constraints.txt: resolve pyproject.toml's ranges afresh in a temporary venv, then `make test`
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	{ echo "# The versions \`make install\` installs (pip -c). Made by \`make lock\` on Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'), $$(date -u +%Y-%m-%d)."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > $(LOCK)
	rm -rf .lock-venv

train: $(STAMP) ## Run the default experiment (extra overrides: make train ARGS="hidden_size=100")
	$(BIN)/lstm-digits train $(ARGS)

test: $(STAMP) browser-deps ## Run the whole test suite (the browser and, as root, the cluster tiers included)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

browser-deps: ## Install Debian's chromium and chromedriver for the browser test (as root, if missing)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "browser-deps: install chromium and chromium-driver (apt-get, as root) to run the browser test"; fi

test-fast: $(STAMP) ## Run the tests that neither train nor start the CLI
	$(BIN)/python -m pytest -m "not slow and not browser" $(ARGS)

lint: $(STAMP) ## Lint, check formatting and complexity (ruff) and the layers (import-linter)
	$(BIN)/ruff check lstm_cli hydra_plugins tests bench docs
	$(BIN)/ruff format --check lstm_cli hydra_plugins tests bench docs
	$(BIN)/lint-imports

format: $(STAMP) ## Format the code (ruff)
	$(BIN)/ruff check --fix lstm_cli hydra_plugins tests bench docs
	$(BIN)/ruff format lstm_cli hydra_plugins tests bench docs

docs: $(STAMP) ## Serve the docs site at http://127.0.0.1:8000 (mkdocs-material; edits reload)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve $(ARGS)

docs-build: $(STAMP) ## Build the docs site into site/ with --strict (a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict $(ARGS)

docs-images: $(STAMP) browser-deps ## Remake docs/images/ from a real default run: its figures and the MLflow UI
	$(BIN)/python docs/tools/images.py

docs-cells: $(STAMP) ## Remake docs/cells.md's results and docs/images/cells/ from a real sweep of every cell (about 1.5 minutes)
	$(BIN)/python docs/tools/cells.py

study: $(STAMP) ## The study of docs/study.md: every cell x rows, pixels x 3 seeds (60 runs, about 20 minutes on 2 cores), then its page (ARGS=--page: the page only)
	$(BIN)/python docs/tools/study.py $(ARGS)

docs-screenshot: docs-build ## A headless-Chromium screenshot of the built site's home page (outputs/site-home.png)
	$(BIN)/python docs/tools/images.py --site site/index.html --out outputs/site-home.png

bench: $(STAMP) ## Time this project's training loop against keras.layers.LSTM, then every loop against the floor (its matmuls alone) at hidden 50, 200, 512, then every cell on rows and pixels (its floor, its test accuracy)
	$(BIN)/python bench/bench_train.py $(ARGS)
	$(BIN)/python bench/bench_floor.py $(FLOOR_ARGS)
	$(BIN)/python bench/bench_cells.py $(CELLS_ARGS)

bench-sweep: $(STAMP) ## A 36-point grid with prune=none, median, asha: epochs, wall time, best val and its test (ARGS="--part both": throughput)
	$(BIN)/python bench/bench_sweep.py $(ARGS)

bench-article: $(STAMP) ## A default run end to end vs the seed article's TF1 script (bench/article.py)
	$(BIN)/python bench/bench_article.py $(ARGS)

bench-versions: $(STAMP) ## This checkout vs an earlier commit, end to end (BASE=rev, default HEAD)
	$(BIN)/python bench/bench_versions.py --base $(or $(BASE),HEAD) $(ARGS)

ui: $(STAMP) ## Open the MLflow UI on outputs/mlflow.db
	$(BIN)/lstm-digits ui $(ARGS)

cluster-up: $(STAMP) ## Start munge, a one-node SLURM, PostgreSQL and an MLflow server on it that lets in only its users (as root)
	@bash cluster/cluster.sh up

cluster-down: ## Stop the local cluster (ARGS=--purge also drops its database and state)
	@bash cluster/cluster.sh down $(ARGS)

cluster-status: ## Show which services of the local cluster are running
	@bash cluster/cluster.sh status

cluster-user: ## Add a teammate to the team server (NAME=bob): a new password, kept in the cluster's state directory (mode 0600)
	@bash cluster/cluster.sh user "$(NAME)"

clean: ## Remove outputs/ and caches (keeps .venv)
	rm -rf outputs site .pytest_cache .ruff_cache

.PHONY: help install lock train test browser-deps test-fast lint format docs docs-build docs-images docs-cells study docs-screenshot bench bench-sweep bench-article bench-versions ui cluster-up cluster-down cluster-status cluster-user clean
