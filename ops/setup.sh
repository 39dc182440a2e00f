#!/usr/bin/env bash
# Installs what is missing and prepares the local system: Debian packages, TimescaleDB, the
# Python environment, the project's PostgreSQL cluster and database. Every step checks first
# and is skipped when already done, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source ops/common.sh

# 1. Debian packages.
packages=(postgresql-15 postgresql-client-15 postgresql-common mosquitto mosquitto-clients
          postgresql-server-dev-15 cmake dpkg-dev gcc make git chromium openssl
          rabbitmq-server etcd-server patroni haproxy)  # the last four: cluster mode (docs/cluster.md)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)  # a machine may have Node.js from elsewhere
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. TimescaleDB.
$SUDO env IOC_CACHE="$IOC_CACHE" PG_MAJOR="$PG_MAJOR" bash ops/install_timescaledb.sh

# 3. Python environment, cached outside the checkout and keyed by the dependency list.
deps=$(python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))')
key=$( (python3 --version; echo "$deps") | sha256sum | cut -c1-16)
venv="$IOC_CACHE/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  log "creating the Python environment $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  echo "$deps" | "$venv/bin/pip" install -q -r /dev/stdin 2>&1 | grep -v "is ignored: it is neither" || true
  "$venv/bin/python" -c "import fastapi, psycopg, paho.mqtt, shapely, cv2, onnxruntime, supervision, trackers, ultralytics"
  touch "$venv/.complete"
fi
[ "$(readlink .venv 2>/dev/null)" = "$venv" ] || { rm -rf .venv; ln -s "$venv" .venv; }

# 4. The screen's front-end libraries from npm, cached by their lock file, copied where the API
#    serves them: nothing is fetched from a CDN at run time.
lock_key=$(sha256sum dashboards/package-lock.json | cut -c1-16)
npm_dir="$IOC_CACHE/npm-$lock_key"
if [ ! -f "$npm_dir/.complete" ]; then
  log "installing the screen's libraries with npm"
  rm -rf "$npm_dir" && mkdir -p "$npm_dir"
  cp dashboards/package.json dashboards/package-lock.json "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --silent)
  touch "$npm_dir/.complete"
fi
mkdir -p dashboards/vendor
cp -r "$npm_dir/node_modules/leaflet/dist/leaflet.js" "$npm_dir/node_modules/leaflet/dist/leaflet.css" \
      "$npm_dir/node_modules/leaflet/dist/images" "$npm_dir/node_modules/uplot/dist/uPlot.iife.min.js" \
      "$npm_dir/node_modules/uplot/dist/uPlot.min.css" dashboards/vendor/

# 5. The project's PostgreSQL cluster on its own port, its role and its database.
conf_dir=/etc/postgresql/$PG_MAJOR/$PG_CLUSTER
if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$PG_MAJOR/$PG_CLUSTER"; then
  log "creating PostgreSQL cluster $PG_MAJOR/$PG_CLUSTER on port $PG_PORT"
  $SUDO pg_createcluster "$PG_MAJOR" "$PG_CLUSTER" -p "$PG_PORT" --start-conf=manual >/dev/null
fi
if ! cmp -s ops/postgres/ioc.conf "$conf_dir/conf.d/ioc.conf"; then
  $SUDO install -m 644 ops/postgres/ioc.conf "$conf_dir/conf.d/ioc.conf"
  pg_lsclusters -h | awk '$1"/"$2=="'"$PG_MAJOR/$PG_CLUSTER"'" {print $4}' | grep -q online \
    && $SUDO pg_ctlcluster "$PG_MAJOR" "$PG_CLUSTER" restart
fi
if ! pg_lsclusters -h | awk '$1"/"$2=="'"$PG_MAJOR/$PG_CLUSTER"'" {print $4}' | grep -q online; then
  log "starting PostgreSQL cluster $PG_MAJOR/$PG_CLUSTER"
  $SUDO pg_ctlcluster "$PG_MAJOR" "$PG_CLUSTER" start
fi
as_postgres psql -qAt -p "$PG_PORT" -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ioc') THEN
    CREATE ROLE ioc LOGIN CREATEDB PASSWORD 'ioc';
  END IF;
END \$\$;
SQL
if ! as_postgres psql -qAt -p "$PG_PORT" -c "SELECT 1 FROM pg_database WHERE datname = 'ioc'" | grep -q 1; then
  as_postgres createdb -p "$PG_PORT" -O ioc ioc
fi
# The extension is created by the superuser once per template, so every database has it.
PGOPTIONS="-c client_min_messages=warning" as_postgres psql -qAt -p "$PG_PORT" -d template1 -c "CREATE EXTENSION IF NOT EXISTS timescaledb" >/dev/null 2>&1 || true
PGOPTIONS="-c client_min_messages=warning" as_postgres psql -qAt -p "$PG_PORT" -d ioc -c "CREATE EXTENSION IF NOT EXISTS timescaledb" >/dev/null
