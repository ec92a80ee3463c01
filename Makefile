# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv.
SHELL := /bin/bash
PY := .venv/bin/python
SHARED ?= ../shared/data
# A local copy of the real data is used when present (development machines, CI); otherwise
# the demo downloads MovieLens latest-small or falls back to the synthetic world.
DEMO_ARGS ?= $(if $(wildcard $(SHARED)/ml-latest-small/ratings.csv),--ml-latest-small $(SHARED)/ml-latest-small) \
             $(if $(wildcard $(SHARED)/kg-samples/movie/kg.txt),--kg $(SHARED)/kg-samples/movie)
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench bench-protocols
setup: .venv/.installed

.venv/.installed: pyproject.toml scripts/setup.sh
	./scripts/setup.sh

demo: .venv/.installed
	$(PY) -m graph_rec.cli demo $(DEMO_ARGS)

test: .venv/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: .venv/.installed
	.venv/bin/ruff check graph_rec kg_builders tests benchmarks

bench: .venv/.installed
	$(PY) benchmarks/build_graph.py

bench-protocols: .venv/.installed
	$(PY) benchmarks/protocols.py
