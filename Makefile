# Two commands: `make run` starts the service, `make test` runs every test. Both set up what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/videogen/v1/*.proto)
# The generated Python stubs live in the client distribution (clients/python), which the server depends on.
STUBS := clients/python/gen

.PHONY: install run run-replicas test test-faults soak lint proto proto-check fmt clean node docs docs-check breaking bench

## Two distributions, both editable from this checkout: the client (clients/python: client, CLI, stubs) and
## the server (.), which depends on the client for the stubs. One pip call, so the server's requirement on
## videogen-client is met by the checkout, never by an index.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e './clients/python[cli]' -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

NODE_DIR := clients/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

## The Node.js client's dependencies (npm ci from the committed lock file). Without npm outside CI: skipped,
## and the Node client test skips; in CI (CI set) a missing npm fails.
node:
	@if command -v npm >/dev/null || [ -n "$$CI" ]; then $(MAKE) --no-print-directory $(NODE_STAMP); \
	else echo "npm not found: skipping clients/node (install Node.js to run its test)"; fi

## Start the service: the built-in Runway simulator unless RUNWAYML_API_SECRET is set.
run: install
	$(PY) -m videogen_server

## N replicas (default 3) on one local redis-server (AOF on, appendfsync always; data in .videogen/redis/,
## 127.0.0.1:$(REDIS_PORT or 6379)) on ports 50051.. (metrics 9464..), and one Runway simulator for all of
## them unless RUNWAYML_API_SECRET is set. Ctrl-C stops everything. `make run-replicas N=2 REDIS_PORT=6380`.
N ?= 3
run-replicas: install
	@command -v redis-server >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "redis-server not found: installing Debian's redis-server package"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
		else echo "redis-server not found: install it (Debian/Ubuntu: sudo apt-get install redis-server)"; exit 2; fi; }
	$(PY) tools/run_replicas.py -n $(N) $(if $(REDIS_PORT),--redis-port $(REDIS_PORT))

## Every test: unit, integration (real server + simulator on loopback), grpcurl recipes, Node client, API docs, SDK oracle.
## Two workers (pytest-xdist): each test still gets its own servers, ports and temp dirs. Then the few
## tests that measure a process's memory (marked `alone`), one at a time with nothing beside them.
test: install proto-check node
	$(PY) -m pytest -q -m "not faults and not alone" -n 2
	$(PY) -m pytest -q -m "alone and not faults"

## The benchmark suite (bench/): each target printed MET or MISSED with its figure; results in docs/benchmarks.md.
bench: install
	$(PY) -m bench.run

## The whole fault-injection suite.
test-faults: install
	$(PY) -m pytest -q tests/faults
	$(PY) -m pytest -q tests -m faults --ignore=tests/faults || [ $$? -eq 5 ]  # 5: none outside tests/faults

## Mixed load with upstream faults against a server process; reports RSS, fds and errors by code.
soak: install
	$(PY) tools/soak.py $(if $(MINUTES),--minutes $(MINUTES))

## Python stubs from the protos into $(STUBS) (committed; `proto-check` fails when they drift).
proto: install
	$(BIN)/buf format -w
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m grpc_tools.protoc -Iprotos -Ithird_party \
		--python_out=$(STUBS) --grpc_python_out=$(STUBS) \
		--mypy_out=$(STUBS) --mypy_grpc_out=$(STUBS) $(PROTOS)

proto-check: install
	@tmp=$$(mktemp -d) && \
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m grpc_tools.protoc -Iprotos -Ithird_party \
		--python_out=$$tmp --grpc_python_out=$$tmp --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS) >/dev/null && \
	diff -r -q -x __init__.py -x py.typed -x __pycache__ $$tmp/videogen $(STUBS)/videogen \
		|| { echo "generated stubs are stale: run 'make proto' and commit"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp

## docs/api.md from the proto comments (committed; `docs-check`, run by `make lint`, and a test fail when stale).
docs: install
	$(PY) tools/gen_api_docs.py

docs-check: install
	$(PY) tools/gen_api_docs.py --check

## buf breaking against the main branch; skipped while main has no protos (a first commit, a fresh repo).
breaking: install
	@if git cat-file -e main:protos/videogen/v1 2>/dev/null; then \
		echo "buf breaking --against '.git#branch=main'"; $(BIN)/buf breaking --against '.git#branch=main'; \
	else echo "buf breaking: branch main has no protos yet, skipped"; fi

## lint-imports: the layer rules ([tool.importlinter] in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	$(MAKE) --no-print-directory breaking docs-check

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .videogen .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
