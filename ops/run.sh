#!/usr/bin/env bash
# Starts the whole system in the foreground under supervisord (after ops/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/common.sh
export IOC_INGEST_WORKERS=${IOC_INGEST_WORKERS:-1}
mkdir -p var
.venv/bin/python -m ioc_core migrate
.venv/bin/python -m ioc_api.cli bootstrap
port=${IOC_API_PORT:-8080}
cat <<TXT

  IOC backend starting: screen and API at http://127.0.0.1:$port/
  API docs at http://127.0.0.1:$port/docs, health at http://127.0.0.1:$port/health
  Ctrl-C stops every service; 'make stop' also stops the database cluster.

TXT
exec .venv/bin/supervisord -c ops/supervisord.conf
