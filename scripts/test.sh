#!/usr/bin/env bash
# The tests: install, lint, then the whole suite (integration tests start their own stack).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export DAGSTER_HOME="${DAGSTER_HOME:-$(mktemp -d)}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
