"""The API's defences: login limits and lockout, logout and token revocation, security headers,
CORS closed unless configured, and an audit entry for every state change, readable by admins."""

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import websockets

from ioc_api.cli import create_token, create_user
from tests.support import Broker, Service, as_, start_api

ORIGIN = "https://ops.danang.gov.vn"


@pytest.fixture(scope="module")
def strict_api(service_env: dict[str, str], broker: Broker) -> Iterator[str]:
    """An API node with small login limits (lockout after 3 failures, for 3 s; 5 attempts a
    minute per address), 3 public reports a minute per address, and one allowed web origin.
    Yields its base URL."""
    env = {
        **service_env,
        "IOC_MQTT_URL": broker.url_for("api"),
        "IOC_LOGIN_MAX_FAILURES": "3",
        "IOC_LOGIN_LOCKOUT_MINUTES": "0.05",
        "IOC_LOGIN_ATTEMPTS_PER_MINUTE": "5",
        "IOC_REPORTS_PER_MINUTE": "3",
        "IOC_CORS_ORIGINS": f'["{ORIGIN}"]',
    }
    service = start_api(env)
    yield f"http://127.0.0.1:{service.port}"
    service.stop()


def client_from(base: str, address: str) -> httpx.Client:
    """A client whose requests come from ``address`` (any 127.x.y.z is loopback), so that each
    test has a login allowance of its own."""
    return httpx.Client(base_url=f"{base}/api/v1", transport=httpx.HTTPTransport(local_address=address), timeout=10)


def new_user(database_url: str, role: str = "city_operator", units: list[str] | None = None) -> str:
    name = f"sec-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, name, role, units or [], "right-password")
    return name


def audit_actions(database_url: str, **where: str) -> list[str]:
    clause = " AND ".join(f"{column} = %({column})s" for column in where)
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(f"SELECT action FROM audit_log WHERE {clause} ORDER BY id", where)]


def test_failed_logins_lock_the_account_then_it_unlocks(strict_api: str, database_url: str) -> None:
    name = new_user(database_url)
    with client_from(strict_api, "127.0.0.11") as http:
        for _ in range(3):
            assert http.post("/auth/login", json={"username": name, "password": "guess"}).status_code == 401
        locked = http.post("/auth/login", json={"username": name, "password": "right-password"})
        assert locked.status_code == 429, locked.text  # even the right password, while locked
        assert "locked" in locked.json()["detail"] and 1 <= int(locked.headers["retry-after"]) <= 3
        assert audit_actions(database_url, target=name) == ["user.create", "user.lock"]
        time.sleep(int(locked.headers["retry-after"]) + 0.2)
    with client_from(strict_api, "127.0.0.12") as http:
        ok = http.post("/auth/login", json={"username": name, "password": "right-password"})
        assert ok.status_code == 200, ok.text
    assert audit_actions(database_url, target=name)[-1] == "auth.login"


def test_login_attempts_are_limited_per_client_address(strict_api: str) -> None:
    with client_from(strict_api, "127.0.0.13") as http:
        answers = [http.post("/auth/login", json={"username": "nobody", "password": "x"}) for _ in range(6)]
        assert [a.status_code for a in answers] == [401] * 5 + [429]
        assert "too many login attempts" in answers[-1].json()["detail"]
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
    with client_from(strict_api, "127.0.0.14") as other:  # another address is not held back
        assert other.post("/auth/login", json={"username": "nobody", "password": "x"}).status_code == 401


def test_public_reports_are_limited_per_client_address(strict_api: str) -> None:
    form = {"category": "other", "description": "x", "lat": 16.0637, "lon": 108.2225}
    with client_from(strict_api, "127.0.0.31") as one, client_from(strict_api, "127.0.0.32") as other:
        assert [one.post("/public/reports", data=form).status_code for _ in range(4)] == [201, 201, 201, 429]
        refused = one.post("/public/reports", data=form)
        assert int(refused.headers["retry-after"]) > 0 and "too many requests" in refused.json()["detail"]
        assert other.post("/public/reports", data=form).status_code == 201  # its own allowance


async def test_logout_revokes_the_token_for_rest_and_the_websocket(api: Service, database_url: str) -> None:
    name = new_user(database_url)
    base = f"http://127.0.0.1:{api.port}/api/v1"
    token = httpx.post(f"{base}/auth/login", json={"username": name, "password": "right-password"}).json()[
        "access_token"
    ]
    assert httpx.get(f"{base}/auth/me", headers=as_(token)).status_code == 200
    screen = await websockets.connect(f"ws://127.0.0.1:{api.port}/ws")  # open before the logout
    await screen.send(f'{{"type": "auth", "token": "{token}"}}')
    assert '"welcome"' in await screen.recv()

    assert httpx.post(f"{base}/auth/logout", headers=as_(token)).status_code == 204
    assert httpx.get(f"{base}/auth/me", headers=as_(token)).status_code == 401
    with pytest.raises(websockets.ConnectionClosed) as closed:  # within IOC_LIVE_TOKEN_RECHECK_S (1 s here)
        async with asyncio.timeout(10):
            while True:
                await screen.recv()
    assert closed.value.rcvd.code == 4401
    async with websockets.connect(f"ws://127.0.0.1:{api.port}/ws") as ws:
        await ws.send(f'{{"type": "auth", "token": "{token}"}}')
        with pytest.raises(websockets.ConnectionClosed) as refused:
            await ws.recv()
        assert refused.value.rcvd.code == 4401
    assert audit_actions(database_url, actor=name) == ["auth.login", "token.revoke"]


def test_tokens_are_listed_and_revoked_by_their_owner_or_an_admin(
    http: httpx.Client, database_url: str, tokens: dict[str, str]
) -> None:
    owner, other = new_user(database_url), new_user(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        owner_token, other_token = create_token(conn, owner, "sensor feed", 30), create_token(conn, other, None, 30)
    mine = http.get("/auth/tokens", headers=as_(owner_token)).json()
    assert [(t["username"], t["name"], t["kind"]) for t in mine] == [(owner, "sensor feed", "service")]
    other_id = http.get("/auth/tokens", headers=as_(other_token)).json()[0]["id"]
    assert http.delete(f"/auth/tokens/{other_id}", headers=as_(owner_token)).status_code == 404  # not its own
    assert http.delete(f"/auth/tokens/{other_id}", headers=as_(tokens["admin"])).status_code == 204
    assert http.get("/auth/me", headers=as_(other_token)).status_code == 401
    everyone = http.get("/auth/tokens", params={"active": False}, headers=as_(tokens["admin"])).json()
    assert {owner, other} <= {t["username"] for t in everyone}
    assert audit_actions(database_url, target=str(other_id)) == ["token.revoke"]


def test_the_screen_and_the_api_send_security_headers(http: httpx.Client) -> None:
    root = str(http.base_url).removesuffix("/api/v1/")
    for path in ("/", "/index.html", "/app.js", "/api/v1/units"):
        headers = httpx.get(root + path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "content-security-policy" not in httpx.get(root + "/docs").headers  # Swagger UI comes from a CDN


def test_cors_is_closed_by_default_and_open_only_to_configured_origins(http: httpx.Client, strict_api: str) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    default_api = str(http.base_url).removesuffix("/")
    answer = httpx.options(f"{default_api}/units", headers={"Origin": ORIGIN, **preflight})
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in httpx.get(f"{default_api}/units", headers={"Origin": ORIGIN}).headers

    allowed = httpx.options(f"{strict_api}/api/v1/units", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(f"{strict_api}/api/v1/units", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers


def test_every_state_change_is_audited_and_only_admins_read_the_log(
    http: httpx.Client, tokens: dict[str, str], database_url: str
) -> None:
    engineer, ward = as_(tokens["engineer"]), as_(tokens["hai_chau"])
    sensor, camera = f"aud-{uuid.uuid4().hex[:6]}", f"aud-cam-{uuid.uuid4().hex[:6]}"
    steps = [
        (
            "post",
            "/sensors",
            engineer,
            {"id": sensor, "kind": "water", "unit_id": "hai-chau", "lat": 16.06, "lon": 108.22},
        ),
        ("patch", f"/sensors/{sensor}", engineer, {"name": "Cầu Rồng"}),
        (
            "post",
            "/cameras",
            engineer,
            {"id": camera, "unit_id": "hai-chau", "lat": 16.06, "lon": 108.22, "stream_url": "rtsp://10.0.0.1/s"},
        ),
        ("patch", f"/cameras/{camera}", engineer, {"name": "Cầu Rồng, bắc"}),
        ("delete", f"/cameras/{camera}", engineer, None),
        ("delete", f"/sensors/{sensor}", engineer, None),
    ]
    for method, path, headers, body in steps:
        answer = http.request(method.upper(), path, headers=headers, json=body)
        assert answer.status_code < 300, (path, answer.text)
    rule = http.post(
        "/rules",
        headers=engineer,
        json={"name": "audit test", "type": "threshold", "metric": "aud_m", "params": {"op": "above", "value": 99}},
    )
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]
    assert http.patch(f"/rules/{rule_id}", headers=engineer, json={"name": "audit test 2"}).status_code == 200
    assert http.delete(f"/rules/{rule_id}", headers=engineer).status_code == 204
    with psycopg.connect(database_url, autocommit=True) as conn:
        alert = conn.execute(
            "INSERT INTO alerts (unit_id, source_type, source_id, metric, severity, title)"
            " VALUES ('hai-chau', 'sensor', 'aud-x', 'level_m', 'minor', 'audit') RETURNING id"
        ).fetchone()[0]
    for action in ("acknowledge", "resolve"):
        assert http.post(f"/alerts/{alert}/{action}", headers=ward, json={"comment": "on it"}).status_code == 200
    assert http.post(f"/alerts/{alert}/comments", headers=ward, json={"body": "done"}).status_code == 201

    assert http.get("/audit", headers=ward).status_code == 403
    assert http.get("/audit", headers=engineer).status_code == 403
    log = http.get("/audit", params={"limit": 1000}, headers=as_(tokens["admin"])).json()["entries"]
    targets = {"sensor": sensor, "camera": camera, "rule": str(rule_id), "alert": str(alert)}
    mine = [
        (e["actor"], e["action"], e["target"])
        for e in reversed(log)
        if targets.get(e["action"].split(".")[0]) == e["target"]
    ]
    assert mine == [
        ("t-engineer", "sensor.create", sensor),
        ("t-engineer", "sensor.update", sensor),
        ("t-engineer", "camera.create", camera),
        ("t-engineer", "camera.update", camera),
        ("t-engineer", "camera.delete", camera),
        ("t-engineer", "sensor.delete", sensor),
        ("t-engineer", "rule.create", str(rule_id)),
        ("t-engineer", "rule.update", str(rule_id)),
        ("t-engineer", "rule.delete", str(rule_id)),
        ("t-hai_chau", "alert.acknowledged", str(alert)),
        ("t-hai_chau", "alert.resolved", str(alert)),
        ("t-hai_chau", "alert.comment", str(alert)),
    ]
    assert all(e["time"] for e in log)
    alerts_only = http.get("/audit", params={"action": "alert."}, headers=as_(tokens["admin"])).json()["entries"]
    assert alerts_only and all(e["action"].startswith("alert.") for e in alerts_only)
    page = http.get("/audit", params={"limit": 2}, headers=as_(tokens["admin"])).json()
    older = http.get("/audit", params={"limit": 2, "before": page["next"]}, headers=as_(tokens["admin"])).json()
    assert older["entries"][0]["id"] < page["entries"][-1]["id"]
