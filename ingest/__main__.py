"""``python -m ingest``: run one ingest worker until SIGTERM or SIGINT."""

import argparse
import gc
import signal

from ingest.service import IngestService
from ioc_core.health_http import database_answers, serve
from ioc_core.logs import setup_logging
from ioc_core.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", type=int, default=1, help="worker number: client id and metrics port follow it")
    parser.add_argument(
        "--retire",
        action="store_true",
        help="store this worker's remaining share, leave the share group, end its session and exit",
    )
    args = parser.parse_args()
    settings = get_settings()
    if not 1 <= args.worker <= settings.ingest_workers:
        # A worker the setting does not count would subscribe plainly beside the others and take
        # every message a second time.
        parser.error(f"--worker must be from 1 to IOC_INGEST_WORKERS ({settings.ingest_workers})")
    log = setup_logging(settings, "ingest")
    metrics_port = settings.ingest_metrics_port + args.worker - 1
    service = IngestService(settings, worker=args.worker)
    serve(
        metrics_port,
        {"broker": service.connected.is_set, "database": lambda: database_answers(settings.database_url)},
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    log.info("metrics and readiness served", extra={"url": f"http://127.0.0.1:{metrics_port}/metrics"})
    collect_less_often()
    service.run(retire=args.retire)


def collect_less_often() -> None:
    """A message leaves a handful of objects and hardly ever a cycle, but a batch keeps tens of
    thousands alive: at CPython's default (a collection every 700 allocations, the oldest
    generation whenever a quarter more has survived) the collector took half of parsing. What
    start-up built is set aside for good; the young are looked at every 50,000 allocations."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


if __name__ == "__main__":
    main()
