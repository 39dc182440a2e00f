#!/usr/bin/env bash
# Runs the project's Mosquitto in the foreground: ops/broker.sh STATE_DIR PORT [DEVICE_TLS_PORT].
# PORT is the services' listener (loopback). DEVICE_TLS_PORT, when given, adds the devices'
# listener: TLS with the state directory's certificates (made by ops/tls.sh when missing), bound
# to IOC_BROKER_DEVICE_BIND (default 127.0.0.1; 0.0.0.0 to take devices from the network).
# Used by `make run` (under supervision) and by the tests (a private broker per run).
set -euo pipefail
ops=$(cd "$(dirname "$0")" && pwd)
state_dir=$(realpath -m "${1:?state dir}")
port=${2:?port}
device_port=${3:-}
mkdir -p "$state_dir"
# Accounts are written by `python -m ioc_api.cli mqtt ...`; until then nobody can connect.
[ -f "$state_dir/passwd" ] || install -m 600 /dev/null "$state_dir/passwd"
[ -f "$state_dir/acl" ] || install -m 600 "$ops/mosquitto/acl" "$state_dir/acl"
sed -e "s|@STATE_DIR@|$state_dir|g" -e "s|@PORT@|$port|g" \
  "$ops/mosquitto/mosquitto.conf.in" > "$state_dir/mosquitto.conf"
if [ -n "$device_port" ]; then
  "$ops/tls.sh" "$state_dir/tls"
  cat >> "$state_dir/mosquitto.conf" <<CONF

# Devices' listener. A device's client id is replaced by its username, so no device can take
# over another client's session (a service's included) by connecting under its id.
listener $device_port ${IOC_BROKER_DEVICE_BIND:-127.0.0.1}
use_username_as_clientid true
cafile $state_dir/tls/ca.crt
certfile $state_dir/tls/server.crt
keyfile $state_dir/tls/server.key
tls_version tlsv1.2
CONF
fi
if [ "$(id -u)" -eq 0 ]; then
  # Started as root, Mosquitto drops to its own user, which must own its state.
  chown -R mosquitto: "$state_dir"
fi
exec mosquitto -c "$state_dir/mosquitto.conf"
