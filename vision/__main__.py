"""``python -m vision``: run one vision worker on its share of the registry's cameras until SIGTERM;
``/metrics`` and ``/ready`` (each camera's health among its loops) on ``IOC_VISION_METRICS_PORT``."""

import signal

from ioc_core.health_http import database_answers, serve
from ioc_core.logs import setup_logging
from ioc_core.settings import get_settings
from vision.service import VisionService


def main() -> None:
    settings = get_settings()
    log = setup_logging(settings, "vision")
    service = VisionService(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop.set())
    serve(settings.vision_metrics_port, {"database": lambda: database_answers(settings.database_url)})
    log.info(
        "vision worker started",
        extra={"engine": settings.vision_engine, "model": str(settings.vision_model), "shard": settings.vision_shard},
    )
    service.run()


if __name__ == "__main__":
    main()
