#!/usr/bin/env bash
# Installs the TimescaleDB extension into the machine's PostgreSQL when it is missing.
# Debian 12 has no package for it, so the Apache-2 edition is built from Debian 13's source
# package, fetched through a private sources list: the system's apt sources are never touched.
# The build is kept in the cache, keyed by the source and PostgreSQL versions.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
TSDB_VERSION=${TSDB_VERSION:-2.19.3}
CACHE=${IOC_CACHE:-$HOME/.cache/ioc}
extdir=$(pg_config --sharedir)/extension

if ls "$extdir"/timescaledb--*.sql >/dev/null 2>&1; then
  exit 0
fi

work="$CACHE/timescaledb-$TSDB_VERSION-pg$PG_MAJOR"
if [ ! -f "$work/.built" ]; then
  echo "setup: building TimescaleDB $TSDB_VERSION (Apache-2 edition) for PostgreSQL $PG_MAJOR"
  rm -rf "$work" && mkdir -p "$work/apt/lists/partial" "$work/src"
  echo "deb-src http://deb.debian.org/debian trixie main" > "$work/apt/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=-"
            -o "Dir::State::Lists=$work/apt/lists" -o "APT::Sandbox::User=root")
  apt-get -qq "${apt_opts[@]}" update
  (cd "$work/src" && apt-get -qq "${apt_opts[@]}" source --download-only timescaledb \
     && dpkg-source -x --skip-patches ./*.dsc tsdb >/dev/null)
  (cd "$work/src/tsdb" && cmake -S . -B build -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF \
     -DUSE_TELEMETRY=OFF -DWARNINGS_AS_ERRORS=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null \
     && cmake --build build -j"$(nproc)" >/dev/null)
  touch "$work/.built"
fi
cmake --install "$work/src/tsdb/build" >/dev/null
echo "setup: TimescaleDB installed into $extdir"
