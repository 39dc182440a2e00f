"""``python -m vision``: run one vision worker on its share of the registry's cameras until SIGTERM."""

import signal

from prometheus_client import start_http_server

from ioc_core.logs import setup_logging
from ioc_core.settings import get_settings
from vision.service import VisionService


def main() -> None:
    settings = get_settings()
    log = setup_logging(settings, "vision")
    service = VisionService(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop.set())
    start_http_server(settings.vision_metrics_port, addr="127.0.0.1")
    log.info(
        "vision worker started",
        extra={"engine": settings.vision_engine, "model": str(settings.vision_model), "shard": settings.vision_shard},
    )
    service.run()


if __name__ == "__main__":
    main()
