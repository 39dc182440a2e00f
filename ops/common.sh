# Shared by the ops scripts: defaults, privilege helper, logging.
PG_MAJOR=${PG_MAJOR:-15}
PG_CLUSTER=${PG_CLUSTER:-ioc}
PG_PORT=${PG_PORT:-5433}
IOC_CACHE=${IOC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ioc}
export PG_MAJOR PG_CLUSTER PG_PORT IOC_CACHE
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

log() { echo "setup: $*"; }

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}
