"""A worker's own small HTTP endpoint: ``/metrics`` (Prometheus) and ``/ready``.

``/ready`` answers 200 only while each of the worker's checks holds (for ingest: subscribed to
the broker, the database answers) and every background loop of the process has succeeded within
a few of its periods (``ioc_core.loops``), so an orchestrator stops counting on a worker that
cannot do its job or has a loop failing. The body says which.
"""

import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
import psycopg
from prometheus_client import make_wsgi_app

from ioc_core.loops import report


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


def database_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def serve(port: int, checks: dict[str, Callable[[], bool]]) -> None:
    """``/metrics`` and ``/ready`` on 127.0.0.1:``port``, in a thread of their own."""
    metrics_app = make_wsgi_app()

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/ready":
            return metrics_app(environ, start_response)
        state = {name: check() for name, check in checks.items()}
        loops = report()
        ok = all(state.values()) and all(loop["healthy"] for loop in loops.values())
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [orjson.dumps({**{k: "up" if v else "down" for k, v in state.items()}, "loops": loops})]

    server = make_server("127.0.0.1", port, app, _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
