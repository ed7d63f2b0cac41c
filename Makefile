# llamafleet: `make up` sets up and runs the main job; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= local
OUT ?= out/$(STACK)
# One cache for make and the scripts it runs (they read LLAMAFLEET_CACHE).
CACHE ?= $(or $(LLAMAFLEET_CACHE),$(HOME)/.cache/llamafleet)
export LLAMAFLEET_CACHE := $(CACHE)

.PHONY: help venv lint typecheck unit test render validate image engine test-tools engine-cli \
	checks-tools up down clean

# The local store (moto) accepts any credentials; a real stack uses the standard AWS chain.
LOCAL_AWS := AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1

help:
	@echo "make up          set up, then deploy the local stack (see README)"
	@echo "make test        lint, type-check and run every test"
	@echo "make render      render STACK=<stack> to OUT=<dir> under Pulumi's mock monitor"
	@echo "make validate    check STACK=<stack>'s settings only"
	@echo "make image       build llama-server natively with the image's build script"
	@echo "make engine      build the Pulumi CLI, its plugins and the local control plane"
	@echo "make down        stop what make up started and destroy the local stack"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The gateway's plugin is checked against the gateway's own environment (LiteLLM, its lock).
typecheck: venv
	$(BIN)/pyright llamafleet
	$(BIN)/pyright -p gateway --pythonpath "$$(scripts/gateway-venv)/bin/python"

# The fast tests run on two workers (pytest-xdist); the engine and image tests share one local
# control plane, one S3 and one llama-server build, so they run in one process after them.
FAST_TESTS := -n 2 -m "not image and not e2e"
SLOW_TESTS := -m "image or e2e"

unit: venv
	$(BIN)/python -m pytest $(FAST_TESTS)

# checkov pins boto3 1.35, which conflicts with requirements.txt: it gets a venv of its own.
CHECKOV := $(CACHE)/tools/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv $(CACHE)/tools/checkov
	$(CACHE)/tools/checkov/bin/pip install --quiet checkov==3.3.30

# The engine and the local control plane (scripts/bootstrap-engine: every piece, cached).
engine:
	scripts/bootstrap-engine

# KEDA's operator and webhooks (the HPA -> KEDA switch, tests/e2e), promtool (the alert rules'
# and dashboards' tests, tests/monitoring), kube-state-metrics and node_exporter (the metric names
# the dashboards query, listed from the real binaries), actionlint (.github/workflows/): for the
# tests only.
test-tools:
	scripts/bootstrap-engine keda prometheus kube-state-metrics node-exporter actionlint

# For CI's workflows (.github/workflows/): what `llamafleet preview`/`up` need against a real
# cluster (the CLI and its plugins, not the local control plane), and what the pull-request
# checks (every test but the e2e and image ones) need besides the venv.
engine-cli:
	scripts/bootstrap-engine pulumi kubernetes-provider python-launcher

checks-tools: $(CHECKOV) test-tools

# Both runs report even when the first fails; make fails if either did.
test: lint typecheck $(CHECKOV) engine test-tools
	status=0; \
	$(BIN)/python -m pytest $(FAST_TESTS) || status=$$?; \
	$(BIN)/python -m pytest $(SLOW_TESTS) || status=$$?; \
	exit $$status

validate: venv
	$(BIN)/llamafleet validate stacks/Pulumi.$(STACK).yaml

render: venv
	$(BIN)/llamafleet render $(STACK) --out $(OUT)

image: venv
	scripts/build-llama-server

# The main job: `pulumi up` of the local stack through the real engine (its program run inline),
# against a local Kubernetes API server with one fake node per tier and S3 on loopback; then the
# model is served natively, exactly as the engine deployed it.
LOCAL_DIR := $(CACHE)/local
up: venv engine
	mkdir -p $(LOCAL_DIR)
	$(BIN)/llamafleet local-tiers stacks/Pulumi.local.yaml > $(LOCAL_DIR)/tiers.json
	scripts/local-cluster up $(LOCAL_DIR)/tiers.json
	scripts/local-s3 up
	scripts/local-model local
	$(LOCAL_AWS) $(BIN)/llamafleet up local
	payload=$$(scripts/build-llama-server cpu) && \
	  $(LOCAL_AWS) $(BIN)/llamafleet serve local --llama-server "$$payload/llama-server"

# Stops what `make up` started and destroys the stack (the control plane is started for that
# if it is not running), then deletes the control plane's data.
down: venv
	@status=0; \
	$(BIN)/llamafleet serve local --stop || status=1; \
	if [ -x $(CACHE)/bin/kube-apiserver ]; then \
	  { scripts/local-cluster up >/dev/null && scripts/local-s3 up >/dev/null && \
	    $(LOCAL_AWS) $(BIN)/llamafleet destroy local; } || status=1; \
	fi; \
	scripts/local-s3 down || status=1; \
	scripts/local-cluster down --purge || status=1; \
	exit $$status

clean:
	rm -rf out .pytest_cache .ruff_cache
