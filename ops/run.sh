#!/usr/bin/env bash
# Starts the whole system in the foreground under supervisord (after ops/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/common.sh
export IOC_INGEST_WORKERS=${IOC_INGEST_WORKERS:-1}
mkdir -p var
.venv/bin/python -m ioc_core migrate
.venv/bin/python -m ioc_api.cli bootstrap
# Each service's own broker account; their URLs (with passwords) stay in a file only its owner
# reads, and each program gets its own (ops/as-service.sh).
.venv/bin/python -m ioc_api.cli mqtt bootstrap --env-file var/secrets/mqtt.env
# The simulated city files its citizens' reports through Open311 with a key of its own, new at
# each start (the last one is revoked), which only the simulator's programs read.
key=$(.venv/bin/python -m ioc_api.cli apikey create simulator --channel simulated --replace --per-minute 600)
install -m 600 /dev/null var/secrets/simulator.env
echo "IOC_SIM_OPEN311_KEY=$key" > var/secrets/simulator.env
# A small simulated city by default (IOC_SIM_SENSORS=0 turns it off), and its camera streams.
export IOC_SIM_SENSORS=${IOC_SIM_SENSORS:-1000}
[ "$IOC_SIM_SENSORS" -gt 0 ] && export IOC_SIM_AUTOSTART=true || export IOC_SIM_AUTOSTART=false
# The vision worker: YOLOX-Nano (Apache-2.0) from the shared models unless told otherwise, chosen by
# measurement (docs/vision.md, "The default": the most accurate shared detector that keeps up with
# the demo's cameras on two cores beside everything else).
default_model=${IOC_SHARED_DIR:-$(cd .. && pwd)/shared}/models/yolox_nano_416.onnx
if [ -z "${IOC_VISION_MODEL:-}" ] && [ -f "$default_model" ]; then
  export IOC_VISION_ENGINE=onnx IOC_VISION_MODEL=$default_model
fi
if [ -n "${IOC_VISION_MODEL:-}" ]; then
  export IOC_VISION_AUTOSTART=true
else
  export IOC_VISION_AUTOSTART=false
  echo "run: no detector weights (IOC_VISION_MODEL) and no shared model: the vision worker stays stopped" >&2
fi
port=${IOC_API_PORT:-8080}
cat <<TXT

  IOC backend starting: screen and API at http://127.0.0.1:$port/
  API docs at http://127.0.0.1:$port/docs, health at http://127.0.0.1:$port/health
  Ctrl-C stops every service; 'make stop' also stops the database cluster.

TXT
exec .venv/bin/supervisord -c ops/supervisord.conf
