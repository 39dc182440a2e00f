#!/usr/bin/env bash
# A local certificate authority and the broker's certificate, made once: ops/tls.sh DIR.
# Devices trust DIR/ca.crt. The server certificate names localhost, 127.0.0.1 and this host;
# IOC_BROKER_TLS_NAMES adds more (comma-separated DNS names). A city uses its own CA instead:
# put its ca.crt, server.crt and server.key in DIR.
set -euo pipefail
dir=${1:?directory}
[ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ] && [ -f "$dir/ca.crt" ] && exit 0
mkdir -p "$dir"
cd "$dir"
names="DNS:localhost,IP:127.0.0.1,DNS:$(hostname)"
extra=${IOC_BROKER_TLS_NAMES:-}
for name in ${extra//,/ }; do names="$names,DNS:$name"; done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=IOC local broker CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -out server.crt \
  -extfile <(printf "subjectAltName=%s\nextendedKeyUsage=serverAuth\n" "$names") 2>/dev/null
chmod 600 ca.key server.key
rm -f server.csr
