# The two commands: `make run` starts the whole system, `make test` passes the tests.
# Both install whatever is missing first (ops/setup.sh), and skip what is already done.

.PHONY: help run test test-cluster cluster bench-cluster bench-nodered setup lint format bench bench-rest bench-ngsild bench-vision bench-reports bench-incidents soak screenshots stop

run: setup ## Install what is missing and start the whole system (Ctrl-C stops it)
	@ops/run.sh

test: setup ## Install what is missing and run the tests
	@.venv/bin/pytest $(PYTEST_ARGS)

cluster: setup ## Cluster mode on this machine: 3 RabbitMQ nodes, PostgreSQL primary and replica under Patroni, HAProxy, 2 API nodes, 2 ingest workers (docs/cluster.md; Ctrl-C stops it)
	@ops/cluster/cluster.sh up --foreground

test-cluster: setup ## Cluster mode's fault test: a broker node, the database primary, an ingest worker and each API node killed under 2,000 msg/s (about 2 minutes; CI runs it)
	@.venv/bin/pytest -m cluster tests/cluster $(PYTEST_ARGS)

setup: ## Debian packages, TimescaleDB, the Python environment, the database cluster
	@ops/setup.sh

bench: setup ## Ingest, rules, live-push, simulator and vision benchmarks; each prints its figures beside a baseline from the same run
	@.venv/bin/python -m bench.ingest
	@.venv/bin/python -m bench.rules
	@.venv/bin/python -m bench.rate_window
	@.venv/bin/python -m bench.live
	@.venv/bin/python -m bench.simulator
	@.venv/bin/python -m bench.vision

bench-vision: setup ## Each shared detector: its counts against the labelled footage, the worker against a naive loop, cameras per worker
	@.venv/bin/python -m bench.vision_accuracy
	@.venv/bin/python -m bench.vision

bench-rest: setup ## REST latency on a loaded dataset (50 million readings: about half an hour to load)
	@.venv/bin/python -m bench.rest

bench-ngsild: setup ## NGSI-LD entity and temporal queries against the REST API's on 10,000 sensors; notifications with 1,000 subscriptions
	@.venv/bin/python -m bench.ngsild
	@.venv/bin/python -m bench.ngsild_notify

bench-reports: setup ## Citizens' reports: filing at 50/s with photos; the tracking and civic sprint pages on a million tickets
	@.venv/bin/python -m bench.reports

bench-incidents: setup ## A storm of 1,000 alerts and 40 incidents: incidents and emails made, alert to inbox latency, escalation on time
	@.venv/bin/python -m bench.incidents

bench-nodered: setup ## Ingest against a Node-RED 4 flow (MQTT in, 1,000-row INSERTs) on the same messages: from a backlog and a live stream
	@.venv/bin/python -m bench.nodered

bench-cluster: setup ## Cluster mode against the single-node default: ingest throughput from a backlog, and time to recover from each fault
	@.venv/bin/python -m bench.cluster

soak: setup ## Half an hour at 5,000 messages/s: memory and latency of every service, first minutes against last (not in CI)
	@.venv/bin/python -m bench.soak

screenshots: setup ## The screen's pictures and the wall's frame trace in docs/screenshots, taken by the browser tests
	@IOC_TEST_ARTIFACTS=docs/screenshots .venv/bin/pytest -q tests/dashboards/test_screen.py tests/dashboards/test_screen_load.py \
		tests/dashboards/test_reports_e2e.py tests/dashboards/test_incidents_e2e.py

lint: setup ## ruff, as CI runs it
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: setup ## ruff: format the code and fix what it can
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .

help: ## Every target and what it does
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' Makefile

stop: ## Stop the project's database cluster (make run's services stop with Ctrl-C)
	@. ops/common.sh && $$SUDO pg_ctlcluster $$PG_MAJOR $$PG_CLUSTER stop || true
