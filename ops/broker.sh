#!/usr/bin/env bash
# Runs the project's Mosquitto in the foreground: ops/broker.sh STATE_DIR PORT.
# Used by `make run` (under supervision) and by the tests (a private broker per run).
set -euo pipefail
state_dir=$(realpath -m "${1:?state dir}")
port=${2:?port}
mkdir -p "$state_dir"
sed -e "s|@STATE_DIR@|$state_dir|g" -e "s|@PORT@|$port|g" \
  "$(dirname "$0")/mosquitto/mosquitto.conf.in" > "$state_dir/mosquitto.conf"
if [ "$(id -u)" -eq 0 ]; then
  # Started as root, Mosquitto drops to its own user, which must own its state.
  chown -R mosquitto: "$state_dir"
fi
exec mosquitto -c "$state_dir/mosquitto.conf"
