.DEFAULT_GOAL := help
.PHONY: help install run test check unit bench stack-up stack-down

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## create .venv and install everything
	scripts/bootstrap.sh

run:  ## stack up, demo events, dagster dev on http://127.0.0.1:3000
	scripts/run.sh

test:  ## the whole suite, integration tests included
	scripts/test.sh

unit: install  ## fast tests only (no local stack)
	.venv/bin/python -m pytest -m "not integration and not slow"

check: install  ## ruff, mypy, unit tests
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && \
	  .venv/bin/python -m pytest -m "not integration and not slow" -q

bench: install  ## benchmarks on the real broker (see bench/)
	.venv/bin/python bench/ingest.py && .venv/bin/python bench/small_files.py

stack-up: install  ## start Kafka and the schema registry
	.venv/bin/lakehouse stack up

stack-down: install  ## stop them
	.venv/bin/lakehouse stack down
