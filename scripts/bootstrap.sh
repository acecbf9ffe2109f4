#!/usr/bin/env bash
# Install everything the project needs into .venv (idempotent; reinstalls when pyproject changes).
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "lakehouse needs Python 3.11 or newer (found: $("$python_bin" --version 2>&1 || echo none))." >&2
  echo "Install it (e.g. 'apt-get install python3' on Debian 12+) or set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "lakehouse's local stack needs '$tool': install Java 17+ and Maven (Debian: apt-get install openjdk-17-jre-headless maven)." >&2
    exit 1
  fi
done

if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
stamp=.venv/.lakehouse-installed
# pyproject.toml and the C extension's source: a change to either reinstalls (and rebuilds it).
want="$(cat pyproject.toml lakehouse/kafka/*.c | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  # The C module of the columnar Kafka reader is optional: say whether it was built.
  .venv/bin/python -c 'from lakehouse.kafka.columnar import unavailable_reason as why
reason = why()
print("columnar Kafka reader: " + ("built" if reason is None else f"not available ({reason}); ingestion reads Kafka through confluent-kafka"))'
  echo "$want" > "$stamp"
fi
