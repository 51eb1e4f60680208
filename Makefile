# Two commands: `make run` starts the service, `make test` runs every test. Both set up what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/videogen/v1/*.proto)

.PHONY: install run test test-faults lint proto proto-check fmt clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the service: the built-in Runway simulator unless RUNWAYML_API_SECRET is set.
run: install
	$(PY) -m videogen_server

## Every test: unit, integration (real server + simulator on loopback), grpcurl, SDK oracle.
test: install proto-check
	$(PY) -m pytest -q -m "not faults"

## The whole fault-injection suite.
test-faults: install
	$(PY) -m pytest -q tests -m faults

## Python stubs from the protos (committed; `proto-check` fails when they drift).
proto: install
	$(BIN)/buf format -w
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m grpc_tools.protoc -Iprotos -Ithird_party \
		--python_out=gen/python --grpc_python_out=gen/python \
		--mypy_out=gen/python --mypy_grpc_out=gen/python $(PROTOS)

proto-check: install
	@tmp=$$(mktemp -d) && \
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m grpc_tools.protoc -Iprotos -Ithird_party \
		--python_out=$$tmp --grpc_python_out=$$tmp --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS) >/dev/null && \
	diff -r -q -x __init__.py -x py.typed -x __pycache__ $$tmp/videogen gen/python/videogen \
		|| { echo "generated stubs are stale: run 'make proto' and commit"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .videogen .pytest_cache .mypy_cache .ruff_cache
