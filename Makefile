# ComfyUI Serverless API — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.local/bin/uv)
PY := $(CURDIR)/.venv/bin/python
STACK := $(PY) infra/stack.py
PYTEST := $(CURDIR)/.venv/bin/pytest

.PHONY: help install up down status run test test-unit test-integration test-e2e test-gpu \
        fmt lint typecheck gen check-gen chart migrate bench bench-submit bench-backlog bench-fleet bench-gpu clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(CURDIR)/.local/bin/uv:
	@mkdir -p .local/bin
	python3 -m venv .local/uv-venv
	.local/uv-venv/bin/pip install -q uv==$(UV_VERSION)
	ln -sf ../uv-venv/bin/uv .local/bin/uv

install: $(UV) ## create the workspace environment (.venv) from the lockfile
	$(UV) sync --frozen --all-packages

up: install ## install (cached) and start Kafka, Postgres, Redis, S3, ComfyUI and Jaeger on loopback
	$(STACK) up

down: ## stop everything `up` started
	@if [ -x $(PY) ]; then $(STACK) down; fi

status: ## show which parts of the local stack and which services answer (fails if any is down)
	@$(STACK) status; stack=$$?; $(PY) infra/runner.py status; services=$$?; \
	  test $$stack -eq 0 -a $$services -eq 0

run: install ## start the stack and the services; Ctrl-C stops what it started
	@if $(STACK) status >/dev/null 2>&1; then started=0; else started=1; fi; \
	  $(STACK) up || exit 1; \
	  $(PY) infra/runner.py; rc=$$?; \
	  if [ $$started = 1 ]; then $(STACK) down; fi; exit $$rc

test: install ## start the stack, run every test but the gpu ones, stop the stack
	@start=$$(date +%s); $(STACK) up || exit 1; \
	  echo "make test: set-up took $$(( $$(date +%s) - start ))s"; \
	  $(PYTEST) -m "not gpu" $(PYTEST_ARGS); rc=$$?; \
	  $(STACK) down; exit $$rc

test-unit: install ## run only the tests that need no running component
	$(PYTEST) -m "not integration and not e2e and not gpu" $(PYTEST_ARGS)

test-integration: up ## run the integration tests against the running stack
	$(PYTEST) -m integration $(PYTEST_ARGS)

test-e2e: up ## run the end-to-end tests against the running stack
	$(PYTEST) -m e2e $(PYTEST_ARGS)

test-gpu: up ## run the tests that need a CUDA GPU
	$(PYTEST) -m gpu $(PYTEST_ARGS)

fmt: install ## format the code
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

lint: install ## ruff lint and format check, and the import boundaries between packages
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports

typecheck: install ## mypy --strict over every package
	$(UV) run --frozen mypy -p comfyserve.contracts -p comfyserve.runtime -p comfyserve.auth -p comfyserve.gateway \
	  -p comfyserve.workflow -p comfyserve.executor -p comfyserve.storage -p comfyserve.notifier
	$(UV) run --frozen mypy infra bench tools conftest.py tests services/*/tests libs/*/tests

gen: install ## regenerate protobuf stubs and event JSON Schemas
	$(PY) tools/gen_contracts.py

check-gen: install ## fail when generated code differs from what is committed
	$(PY) tools/gen_contracts.py --check

chart: install ## helm lint, render and validate the Kubernetes chart offline (default and production values)
	$(PY) -m infra.chart check

migrate: install ## apply a service's migrations: make migrate svc=workflow
	@test -n "$(svc)" || { echo "usage: make migrate svc=<service>"; exit 2; }
	$(PY) -m comfyserve.$(svc) migrate

bench: up ## run the benchmarks in bench/
	$(PY) -m bench.overhead
	$(PY) -m bench.auth
	$(PY) -m bench.tracing
	$(PY) -m bench.submit
	$(PY) -m bench.backlog
	$(PY) -m bench.fleet

bench-submit: up ## accepted submissions per second against a trivial route (bench/submit)
	$(PY) -m bench.submit

bench-backlog: up ## submit, get, list and cancel with 10^5 jobs queued (bench/backlog)
	$(PY) -m bench.backlog

bench-fleet: up ## 1, 2 and 4 executors, each with its own ComfyUI, on a burst: each job once, priorities first, jobs/s (bench/fleet)
	$(PY) -m bench.fleet

bench-gpu: up ## images/s through us against raw ComfyUI on a GPU; a CPU dry run without one (bench/gpu)
	$(PY) -m bench.gpu

clean: down ## remove the local stack's data (keeps the download cache)
	rm -rf "$$(readlink -f .local/postgres)" .local/postgres .local/kafka/data .local/s3 .local/logs .local/run
