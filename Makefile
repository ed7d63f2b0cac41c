# llamafleet: `make up` sets up and runs the main job; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= local
OUT ?= out/$(STACK)
CACHE ?= $(HOME)/.cache/llamafleet

.PHONY: help venv lint typecheck unit test render validate image engine up down clean

# The local store (moto) accepts any credentials; a real stack uses the standard AWS chain.
LOCAL_AWS := AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1

help:
	@echo "make up          set up, then deploy the local stack (see README)"
	@echo "make test        lint, type-check and run every test"
	@echo "make render      render STACK=<stack> to OUT=<dir> under Pulumi's mock monitor"
	@echo "make validate    check STACK=<stack>'s settings only"
	@echo "make image       build llama-server natively with the image's build script"
	@echo "make engine      build the local control plane (and, on request, the Pulumi CLI)"

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

typecheck: venv
	$(BIN)/pyright components modelsync infra

unit: venv
	$(BIN)/python -m pytest -m "not image and not e2e"

# checkov pins boto3 1.35, which conflicts with requirements.txt: it gets a venv of its own.
CHECKOV := $(CACHE)/tools/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv $(CACHE)/tools/checkov
	$(CACHE)/tools/checkov/bin/pip install --quiet checkov==3.3.30

# The local control plane the e2e tests schedule onto. `make engine ENGINE_PIECES="pulumi
# kubernetes-provider kube etcd kwok"` also builds the CLI and the Kubernetes provider (the Python
# language host cannot be built from the registries: see scripts/bootstrap-engine).
ENGINE_PIECES ?= kube etcd kwok
engine:
	scripts/bootstrap-engine $(ENGINE_PIECES)

test: lint typecheck $(CHECKOV) engine
	$(BIN)/python -m pytest

validate: venv
	$(BIN)/llamafleet validate stacks/Pulumi.$(STACK).yaml

render: venv
	$(BIN)/llamafleet render $(STACK) --out $(OUT)

image: venv
	scripts/build-llama-server

# The main job: the local stack's model served natively, exactly as its rendered pod would run.
up: venv
	$(BIN)/llamafleet validate stacks/Pulumi.local.yaml
	$(BIN)/llamafleet render local --out out/local
	scripts/local-s3 up
	$(LOCAL_AWS) scripts/seed-local-store local
	payload=$$(scripts/build-llama-server cpu) && \
	  $(LOCAL_AWS) $(BIN)/llamafleet serve local --llama-server "$$payload/llama-server"

down: venv
	$(BIN)/llamafleet serve local --stop
	scripts/local-s3 down

clean:
	rm -rf out .pytest_cache .ruff_cache
