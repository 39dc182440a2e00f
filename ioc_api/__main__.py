"""``python -m ioc_api``: serve the API and the screens."""

import uvicorn

from ioc_api.app import create_app
from ioc_core.logs import setup_logging
from ioc_core.settings import get_settings


def main() -> None:
    settings = get_settings()
    log = setup_logging(settings, "ioc_api")
    log.info("serving", extra={"url": f"http://{settings.api_host}:{settings.api_port}/"})
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep our structured lines
        access_log=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # Compressing each copy of a fanned-out message for each client cost a third of the CPU.
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
