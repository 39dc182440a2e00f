#!/usr/bin/env bash
# ops/cluster/backup.sh TARGET: a physical backup of the cluster's database (docs/cluster.md),
# taken from the replica when there is one, so the primary is not loaded: every database,
# TimescaleDB's catalogue and chunks as they are, and the WAL to make it consistent (-X stream).
# Restore: copy TARGET to a data directory, start PostgreSQL 15 with TimescaleDB on it (as a new
# primary, or as the first node of a new Patroni cluster), and point IOC_DATABASE_URL at it.
# IOC_CLUSTER_DIR and IOC_CLUSTER_PORT_BASE as for cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source ops/common.sh
target=$(realpath -m "${1:?target directory}")
base=${IOC_CLUSTER_PORT_BASE:-17000}
source_port=$((base + 41))
for node in 1 2; do  # the replica, if one answers as such
  if curl -sf "http://127.0.0.1:$((base + 50 + node))/replica" >/dev/null; then source_port=$((base + 40 + node)); fi
done
mkdir -p "$target" && chmod 700 "$target"  # PostgreSQL starts only on a private directory
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$target"; fi
run() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGPASSWORD=replicator run /usr/lib/postgresql/"$PG_MAJOR"/bin/pg_basebackup \
  -h 127.0.0.1 -p "$source_port" -U replicator -D "$target" -X stream -c fast --no-password
echo "backup: $target from 127.0.0.1:$source_port"
