# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv.
SHELL := /bin/bash
PY := .venv/bin/python
SHARED ?= ../shared/data
# A local copy of the real data is used when present (development machines, CI); otherwise
# the demo downloads MovieLens latest-small or falls back to the synthetic world.
# (the KG joins MovieLens items, so it goes with a local MovieLens only)
DEMO_ARGS ?= $(if $(wildcard $(SHARED)/ml-latest-small/ratings.csv),--ml-latest-small $(SHARED)/ml-latest-small \
             $(if $(wildcard $(SHARED)/kg-samples/movie/kg.txt),--kg $(SHARED)/kg-samples/movie))
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench bench-protocols bench-suite
setup: .venv/.installed

.venv/.installed: pyproject.toml scripts/setup.sh
	./scripts/setup.sh

# the demo ends by writing to the local Neo4j-compatible Bolt server (ArcadeDB, started by the
# project's script and left running for exploration: `scripts/arcadedb.sh stop` stops it)
ARCADE_DATA ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/graph-rec/arcadedb/server
demo: .venv/.installed
	scripts/arcadedb.sh start
	NEO4J_URI=bolt://127.0.0.1:$${ARCADE_BOLT_PORT:-17687} NEO4J_USER=root NEO4J_DATABASE=graph \
	  NEO4J_PASSWORD="$$(cat '$(ARCADE_DATA)/root-password')" \
	  $(PY) -m graph_rec.cli demo $(DEMO_ARGS) --neo4j

test: .venv/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: .venv/.installed
	.venv/bin/ruff check graph_rec kg_builders tests benchmarks

bench: .venv/.installed
	$(PY) benchmarks/build_graph.py

bench-protocols: .venv/.installed
	$(PY) benchmarks/protocols.py

# the benchmark suite of issue 7 (about 1.5 h on 2 cores; `--part NAME` for one part, see the README)
bench-suite: .venv/.installed
	$(PY) benchmarks/suite.py $(SUITE_ARGS)
