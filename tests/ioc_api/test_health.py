"""``GET /health`` tells the state of the database and the broker."""

import httpx

from tests.support import Service, free_port, wait_until


def test_health_is_ok_with_database_and_broker_up(api: Service) -> None:
    # Within seconds of any earlier test's database or broker restart: the API's pool reconnects.
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{api.port}/health").status_code == 200, timeout=30)
    response = httpx.get(f"http://127.0.0.1:{api.port}/health")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "database", "broker", "feed")} == {
        "status": "ok",
        "database": "up",
        "broker": "up",
        "feed": "up",
    }
    assert {"live-feed", "live-values"} <= body["loops"].keys()


def _answer(env: dict[str, str]) -> httpx.Response:
    port = free_port()
    service = Service("ioc_api", {**env, "IOC_API_PORT": str(port)}).start()
    try:

        def answered():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            except httpx.TransportError:
                return None

        return wait_until(answered, timeout=60, what="an answer from /health")
    finally:
        service.stop()


def test_health_is_503_when_the_broker_is_unreachable(service_env: dict[str, str]) -> None:
    response = _answer({**service_env, "IOC_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}"})
    assert response.status_code == 503
    assert response.json()["broker"] == "down" and response.json()["database"] == "up"


def test_health_is_503_when_the_database_is_unreachable(service_env: dict[str, str]) -> None:
    response = _answer({**service_env, "IOC_DATABASE_URL": f"postgresql://ioc:ioc@127.0.0.1:{free_port()}/ioc"})
    assert response.status_code == 503
    assert response.json()["database"] == "down"
