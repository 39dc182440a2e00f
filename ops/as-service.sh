#!/usr/bin/env bash
# ops/as-service.sh NAME COMMAND...: runs COMMAND with IOC_MQTT_URL set to service NAME's broker
# URL from var/secrets/mqtt.env (written by `python -m ioc_api.cli mqtt bootstrap`), and with no
# other service's, so that no program holds another's password; and with the settings of
# var/secrets/NAME.env, if there is one (the simulator's Open311 key).
set -euo pipefail
name=${1:?service name}
shift
url=$(sed -n "s|^IOC_MQTT_URL_${name^^}=||p" "$(dirname "$0")/../var/secrets/mqtt.env")
[ -n "$url" ] || { echo "as-service: no broker account for $name in var/secrets/mqtt.env" >&2; exit 1; }
own="$(dirname "$0")/../var/secrets/$name.env"
if [ -f "$own" ]; then set -a; . "$own"; set +a; fi
IOC_MQTT_URL=$url exec "$@"
