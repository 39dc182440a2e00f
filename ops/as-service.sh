#!/usr/bin/env bash
# ops/as-service.sh NAME COMMAND...: runs COMMAND with IOC_MQTT_URL set to service NAME's broker
# URL from mqtt.env (written by `python -m ioc_api.cli mqtt bootstrap`), and with no other
# service's, so that no program holds another's password; and with the settings of NAME.env, if
# there is one (the simulator's Open311 key). Both are in var/secrets, or IOC_SECRETS_DIR (a
# cluster's own, ops/cluster/cluster.sh).
set -euo pipefail
name=${1:?service name}
shift
secrets=${IOC_SECRETS_DIR:-$(dirname "$0")/../var/secrets}
url=$(sed -n "s|^IOC_MQTT_URL_${name^^}=||p" "$secrets/mqtt.env")
[ -n "$url" ] || { echo "as-service: no broker account for $name in $secrets/mqtt.env" >&2; exit 1; }
own="$secrets/$name.env"
if [ -f "$own" ]; then set -a; . "$own"; set +a; fi
IOC_MQTT_URL=$url exec "$@"
