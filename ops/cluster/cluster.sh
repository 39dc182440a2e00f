#!/usr/bin/env bash
# Cluster mode on one machine (docs/cluster.md): a 3-node RabbitMQ cluster with quorum queues,
# PostgreSQL + TimescaleDB as a primary and a synchronous streaming replica under Patroni and
# etcd, HAProxy in front of the brokers' MQTT and of two API nodes, two ingest workers reading the
# cluster's queues, the notifier, and (with make cluster) the simulated city and vision.
#
#   ops/cluster/cluster.sh up [--foreground]   start (or join what runs), migrate, bootstrap
#   ops/cluster/cluster.sh down                stop every process of this cluster
#   ops/cluster/cluster.sh env                 the settings a service of this cluster runs with
#
# IOC_CLUSTER_DIR (default var/cluster) holds its state; IOC_CLUSTER_PORT_BASE (default 17000)
# places its ports (docs/cluster.md lists them), so a test's cluster and make run's system can
# run side by side. IOC_CLUSTER_EXTRAS=false leaves out the city, the cameras and vision.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
source ops/common.sh
dir=$(realpath -m "${IOC_CLUSTER_DIR:-var/cluster}")
base=${IOC_CLUSTER_PORT_BASE:-17000}
extras=${IOC_CLUSTER_EXTRAS:-true}
mkdir -p "$dir"
conf="$dir/supervisord.conf"
ctl() { .venv/bin/supervisorctl -c "$conf" "$@"; }

# --- ports (docs/cluster.md)
mqtt_front=$base; api_front=$((base + 80)); auth_port=$((base + 90))
etcd_client=$((base + 79)); etcd_peer=$((base + 78))
pg_port() { echo $((base + 40 + $1)); }
patroni_port() { echo $((base + 50 + $1)); }
amqp_port() { echo $((base + 10 + $1)); }
rabbit_mqtt_port() { echo $((base + 20 + $1)); }
rabbit_dist_port() { echo $((base + 30 + $1)); }
api_port() { echo $((base + 80 + $1)); }
rabbit_node() { echo "ioc-$base-$1@localhost"; }

database_url() {  # every node; libpq picks the one that takes writes (or a standby)
  echo "postgresql://ioc:ioc@127.0.0.1:$(pg_port 1),127.0.0.1:$(pg_port 2)/ioc?target_session_attrs=$1&connect_timeout=3"
}

print_env() {
  cat <<ENV
IOC_DATABASE_URL=$(database_url read-write)
IOC_DATABASE_READ_URL=$(database_url prefer-standby)
IOC_MQTT_URL=mqtt://127.0.0.1:$mqtt_front
IOC_INGEST_SOURCE=amqp
IOC_AMQP_HOSTS=127.0.0.1:$(amqp_port 1),127.0.0.1:$(amqp_port 2),127.0.0.1:$(amqp_port 3)
IOC_INGEST_WORKERS=2
IOC_INGEST_METRICS_PORT=$((base + 61))
IOC_NOTIFY_METRICS_PORT=$((base + 63))
IOC_VISION_METRICS_PORT=$((base + 64))
IOC_SECRETS_DIR=$dir/secrets
IOC_BROKER_DIR=$dir/mosquitto-files
IOC_PHOTO_DIR=$dir/photos
IOC_SIM_API_URL=http://127.0.0.1:$api_front
ENV
}

write_configs() {
  local i
  # etcd: one member on one machine; three on three machines in production.
  mkdir -p "$dir/etcd" "$dir/secrets" "$dir/photos"
  # PostgreSQL under Patroni: synchronous replication, so that a commit ingest acknowledges to
  # the broker is on both nodes, and a failover loses none.
  for i in 1 2; do
    mkdir -p "$dir/pg$i"
    cat > "$dir/pg$i/patroni.yml" <<YML
scope: ioc-$base
name: pg$i
restapi:
  listen: 127.0.0.1:$(patroni_port $i)
  connect_address: 127.0.0.1:$(patroni_port $i)
etcd3:
  hosts: 127.0.0.1:$etcd_client
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        shared_preload_libraries: timescaledb
        timescaledb.telemetry_level: "off"
        wal_level: replica
        wal_log_hints: "on"
        hot_standby: "on"
        max_connections: 300
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 1GB
        shared_buffers: 256MB
        track_commit_timestamp: "on"  # when each row was committed: ingest's latency, bench/cluster.py
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
  post_bootstrap: $repo/ops/cluster/post_bootstrap.sh
postgresql:
  listen: 127.0.0.1:$(pg_port $i)
  connect_address: 127.0.0.1:$(pg_port $i)
  data_dir: $dir/pg$i/data
  bin_dir: /usr/lib/postgresql/$PG_MAJOR/bin
  pgpass: $dir/pg$i/pgpass
  basebackup:
    - checkpoint: fast  # a replica is made at once, not after a spread checkpoint (minutes)
  authentication:
    replication: {username: replicator, password: replicator}
    superuser: {username: postgres, password: postgres}
    rewind: {username: postgres, password: postgres}
  parameters:
    unix_socket_directories: $dir/pg$i
YML
  done
  # RabbitMQ: three nodes, MQTT for devices and services, AMQP for ingest's queues; accounts and
  # topic rights come from the database through the broker-auth service.
  echo "ioc-cluster-$base-$(sha256sum <<<"$dir" | cut -c1-16)" > "$dir/cookie"
  for i in 1 2 3; do
    mkdir -p "$dir/rabbit$i/home"
    install -m 400 "$dir/cookie" "$dir/rabbit$i/home/.erlang.cookie" 2>/dev/null || true
    echo "[rabbitmq_mqtt,rabbitmq_auth_backend_http,rabbitmq_auth_backend_cache,rabbitmq_consistent_hash_exchange]." \
      > "$dir/rabbit$i/enabled_plugins"
    cat > "$dir/rabbit$i/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$(amqp_port $i)
mqtt.listeners.tcp.1 = 127.0.0.1:$(rabbit_mqtt_port $i)
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = amq.topic
mqtt.durable_queue_type = quorum
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(rabbit_node 1)
cluster_formation.classic_config.nodes.2 = $(rabbit_node 2)
cluster_formation.classic_config.nodes.3 = $(rabbit_node 3)
cluster_partition_handling = pause_minority
auth_backends.1 = cache
auth_cache.cached_backend = http
auth_cache.cache_ttl = 15000
auth_http.http_method = post
auth_http.user_path = http://127.0.0.1:$auth_port/broker-auth/user
auth_http.vhost_path = http://127.0.0.1:$auth_port/broker-auth/vhost
auth_http.resource_path = http://127.0.0.1:$auth_port/broker-auth/resource
auth_http.topic_path = http://127.0.0.1:$auth_port/broker-auth/topic
loopback_users = none
vm_memory_high_watermark.relative = 0.2
disk_free_limit.absolute = 500MB
log.console = true
log.console.level = warning
log.file = false
CONF
  done
  # HAProxy: one address for MQTT (any live broker node) and one for the API (any live node,
  # WebSocket included; a screen that loses its node reconnects to another and resumes).
  cat > "$dir/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  # A connection refused by a node that just died is tried on another, before the checks mark it down.
  retries 3
  option redispatch 1
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
frontend mqtt
  mode tcp
  bind 127.0.0.1:$mqtt_front
  default_backend brokers
backend brokers
  mode tcp
  balance leastconn
  server r1 127.0.0.1:$(rabbit_mqtt_port 1) check
  server r2 127.0.0.1:$(rabbit_mqtt_port 2) check
  server r3 127.0.0.1:$(rabbit_mqtt_port 3) check
frontend api
  mode http
  bind 127.0.0.1:$api_front
  option forwardfor
  default_backend api_nodes
backend api_nodes
  mode http
  balance roundrobin
  option httpchk GET /health
  server a1 127.0.0.1:$(api_port 1) check
  server a2 127.0.0.1:$(api_port 2) check
CFG
}

write_supervisor() {
  local i pg_user=""
  [ "$(id -u)" -eq 0 ] && pg_user="user=postgres"
  local env; env=$(print_env | sed 's/^\([^=]*\)=\(.*\)$/\1="\2"/' | paste -sd, -)
  cat > "$conf" <<CONF
; Generated by ops/cluster/cluster.sh: the cluster's processes on one machine.
[supervisord]
directory=$repo
logfile=$dir/supervisord.log
pidfile=$dir/supervisord.pid
loglevel=info
nodaemon=false
environment=$env

[unix_http_server]
file=$dir/supervisor.sock

[supervisorctl]
serverurl=unix://$dir/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:etcd]
command=etcd --name etcd1 --data-dir $dir/etcd --listen-client-urls http://127.0.0.1:$etcd_client
  --advertise-client-urls http://127.0.0.1:$etcd_client --listen-peer-urls http://127.0.0.1:$etcd_peer
  --initial-advertise-peer-urls http://127.0.0.1:$etcd_peer --initial-cluster etcd1=http://127.0.0.1:$etcd_peer
  --log-level warn
priority=1
autorestart=true
stdout_logfile=$dir/etcd.log
redirect_stderr=true

[program:broker-auth]
command=.venv/bin/python -m ioc_api.broker_auth --port $auth_port
priority=5
autorestart=true
stdout_logfile=$dir/broker-auth.log
redirect_stderr=true

[program:haproxy]
command=haproxy -W -db -f $dir/haproxy.cfg
priority=5
autorestart=true
stdout_logfile=$dir/haproxy.log
redirect_stderr=true
CONF
  # A database or broker node that dies stays down, as a dead machine would, until started again
  # (supervisorctl start); Patroni itself restarts a PostgreSQL that crashed under it.
  for i in 1 2; do
    cat >> "$conf" <<CONF

[program:pg$i]
command=patroni $dir/pg$i/patroni.yml
$pg_user
priority=10
autorestart=false
stopwaitsecs=30
stdout_logfile=$dir/pg$i.log
redirect_stderr=true
CONF
  done
  for i in 1 2 3; do
    cat >> "$conf" <<CONF

[program:rabbit$i]
command=/usr/lib/rabbitmq/bin/rabbitmq-server
environment=HOME="$dir/rabbit$i/home",RABBITMQ_NODENAME="$(rabbit_node $i)",RABBITMQ_NODE_PORT="$(amqp_port $i)",RABBITMQ_DIST_PORT="$(rabbit_dist_port $i)",RABBITMQ_CONFIG_FILE="$dir/rabbit$i/rabbitmq.conf",RABBITMQ_ENABLED_PLUGINS_FILE="$dir/rabbit$i/enabled_plugins",RABBITMQ_MNESIA_BASE="$dir/rabbit$i/mnesia",RABBITMQ_LOG_BASE="$dir/rabbit$i/log",RABBITMQ_PID_FILE="$dir/rabbit$i/pid"
priority=10
autorestart=false
stopwaitsecs=60
stdout_logfile=$dir/rabbit$i.log
redirect_stderr=true
CONF
  done
  # Services start once the database is migrated (cmd_up); supervisord restarts a killed one.
  cat >> "$conf" <<CONF

[group:services]
programs=ingest,api1,api2,notify

[program:ingest]
command=ops/as-service.sh ingest .venv/bin/python -m ingest --worker %(process_num)d
process_name=ingest-%(process_num)d
numprocs=2
numprocs_start=1
autostart=false
autorestart=true
stopwaitsecs=15
stdout_logfile=$dir/ingest-%(process_num)d.log
redirect_stderr=true

[program:notify]
command=.venv/bin/python -m notify
autostart=false
autorestart=true
stdout_logfile=$dir/notify.log
redirect_stderr=true
CONF
  for i in 1 2; do
    cat >> "$conf" <<CONF

[program:api$i]
command=ops/as-service.sh api .venv/bin/python -m ioc_api
environment=IOC_API_PORT="$(api_port $i)"
autostart=false
autorestart=true
stdout_logfile=$dir/api$i.log
redirect_stderr=true
CONF
  done
  cat >> "$conf" <<CONF

[group:extras]
programs=city,cameras,vision

[program:city]
command=ops/as-service.sh simulator .venv/bin/python -m simulators city --sensors ${IOC_SIM_SENSORS:-1000}
autostart=false
autorestart=unexpected
exitcodes=0,2
stdout_logfile=$dir/city.log
redirect_stderr=true

[program:cameras]
command=.venv/bin/python -m simulators cameras --port $((base + 54))
autostart=false
autorestart=unexpected
exitcodes=0,1
stdout_logfile=$dir/cameras.log
redirect_stderr=true

[program:vision]
command=ops/as-service.sh vision .venv/bin/python -m vision
environment=IOC_VISION_ENGINE="${IOC_VISION_ENGINE:-onnx}",IOC_VISION_MODEL="$(vision_model)"
autostart=false
autorestart=true
stdout_logfile=$dir/vision.log
redirect_stderr=true
CONF
}

vision_model() {  # as make run: the small offline detector on the shared footage unless told otherwise
  echo "${IOC_VISION_MODEL:-${IOC_SHARED_DIR:-$(cd .. && pwd)/shared}/models/yolo-fastestv2-coco.onnx}"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "cluster: $what not ready after ${limit}s (logs in $dir)" >&2; return 1; }
    sleep 1
  done
}

rabbitmqctl_() { HOME="$dir/rabbit1/home" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$(rabbit_node 1)" "$@"; }

cluster_formed() { [ "$(rabbitmqctl_ -q cluster_status --formatter json | python3 -c \
  'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')" = 3 ]; }

cmd_up() {
  write_configs
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$dir"/pg1 "$dir"/pg2
  if [ -S "$dir/supervisor.sock" ] && ctl pid >/dev/null 2>&1; then
    echo "cluster: already running in $dir"
  else
    write_supervisor
    .venv/bin/supervisord -c "$conf"
  fi
  export $(print_env | xargs)
  wait_for 120 "the writable database" .venv/bin/python -c \
    "import psycopg, sys; psycopg.connect(sys.argv[1]).close()" "$IOC_DATABASE_URL"
  wait_for 120 "the database replica" bash -c \
    "curl -sf http://127.0.0.1:$(patroni_port 1)/replica || curl -sf http://127.0.0.1:$(patroni_port 2)/replica"
  wait_for 180 "the broker cluster" cluster_formed
  .venv/bin/python -m ioc_core migrate
  .venv/bin/python -m ioc_api.cli bootstrap
  .venv/bin/python -m ioc_api.cli mqtt bootstrap --env-file "$IOC_SECRETS_DIR/mqtt.env"
  ctl start services:*
  if [ "$extras" = true ]; then
    key=$(.venv/bin/python -m ioc_api.cli apikey create simulator --channel simulated --replace --per-minute 600)
    install -m 600 /dev/null "$IOC_SECRETS_DIR/simulator.env"
    echo "IOC_SIM_OPEN311_KEY=$key" > "$IOC_SECRETS_DIR/simulator.env"
    ctl start extras:city extras:cameras
    if [ -f "$(vision_model)" ]; then ctl start extras:vision; else echo "cluster: no detector weights: vision stays stopped" >&2; fi
  fi
  wait_for 60 "the API" curl -sf "http://127.0.0.1:$api_front/health"
  echo "cluster: up; screen and API at http://127.0.0.1:$api_front/, MQTT at 127.0.0.1:$mqtt_front (state in $dir)"
}

cmd_down() {
  [ -S "$dir/supervisor.sock" ] && ctl shutdown >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 90))
  while [ -f "$dir/supervisord.pid" ] && kill -0 "$(cat "$dir/supervisord.pid")" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -9 "$(cat "$dir/supervisord.pid")"; break; }
    sleep 1
  done
}

case "${1:-}" in
  up)
    cmd_up
    if [ "${2:-}" = --foreground ]; then
      trap 'cmd_down; exit 0' INT TERM
      echo "cluster: Ctrl-C stops it"
      while kill -0 "$(cat "$dir/supervisord.pid")" 2>/dev/null; do sleep 2; done
    fi ;;
  down) cmd_down ;;
  env) print_env ;;
  *) echo "usage: $0 up [--foreground] | down | env" >&2; exit 2 ;;
esac
