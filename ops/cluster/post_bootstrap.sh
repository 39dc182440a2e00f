#!/usr/bin/env bash
# Patroni runs this once, on the first primary: the project's role, database and TimescaleDB.
# $1 is a connection string to the new cluster as its superuser.
set -euo pipefail
psql "$1" -v ON_ERROR_STOP=1 -qAt <<SQL
CREATE ROLE ioc LOGIN CREATEDB PASSWORD 'ioc';
CREATE DATABASE ioc OWNER ioc;
\c ioc
CREATE EXTENSION IF NOT EXISTS timescaledb;
SQL
