"""``python -m ioc_api``: serve the API and the screens."""

import socket

import uvicorn

from ioc_api.app import create_app
from ioc_core.logs import setup_logging
from ioc_core.settings import Settings, get_settings


def listener(settings: Settings) -> socket.socket:
    """The listening socket; connections accepted from it inherit its send buffer size (Linux)."""
    family = socket.AF_INET6 if ":" in settings.api_host else socket.AF_INET
    sock = socket.create_server((settings.api_host, settings.api_port), family=family, backlog=2048)
    if settings.api_send_buffer_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.api_send_buffer_bytes)
    return sock


def main() -> None:
    settings = get_settings()
    log = setup_logging(settings, "ioc_api")
    log.info("serving", extra={"url": f"http://{settings.api_host}:{settings.api_port}/"})
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,  # keep our structured lines
        access_log=False,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # Compressing each copy of a fanned-out message for each client cost a third of the CPU.
        ws_per_message_deflate=False,
    )
    uvicorn.Server(config).run(sockets=[listener(settings)])


if __name__ == "__main__":
    main()
