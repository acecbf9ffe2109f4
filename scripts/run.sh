#!/usr/bin/env bash
# The main job: install, bring the local stack up, stream demo events, run `dagster dev` with
# sensors on at http://127.0.0.1:3000. Ctrl-C stops Dagster and the producer; the stack keeps
# running (`.venv/bin/lakehouse stack down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export LAKEHOUSE_HOME="${LAKEHOUSE_HOME:-$PWD/.lakehouse}"
export DAGSTER_HOME="${DAGSTER_HOME:-$LAKEHOUSE_HOME/dagster}"
mkdir -p "$DAGSTER_HOME" "$LAKEHOUSE_HOME/logs"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

.venv/bin/lakehouse stack up

rate="${LAKEHOUSE_DEMO_RATE:-20}"
.venv/bin/lakehouse demo produce all --rate "$rate" --late-fraction 0.02 \
  --malformed-fraction 0.002 --v2-after 3000 \
  >"$LAKEHOUSE_HOME/logs/demo-producer.log" 2>&1 &
producer=$!
trap 'kill "$producer" 2>/dev/null || true; wait "$producer" 2>/dev/null || true' EXIT
echo "demo producer: pid $producer, ${rate} events/s per stream, log $LAKEHOUSE_HOME/logs/demo-producer.log"

.venv/bin/dagster dev -w workspace.yaml -h "${DAGSTER_HOST:-127.0.0.1}" -p "${DAGSTER_PORT:-3000}"
