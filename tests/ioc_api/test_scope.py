"""A unit's scope is enforced in one place, the database: a route that forgets its caller's units
still returns only theirs, a connection whose scope was not set sees nothing, and the services
that never set one (ingest, the CLI) see everything. Also: PATCH bodies with explicit nulls."""

from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute
from psycopg_pool import AsyncConnectionPool

from ioc_api.app import create_app
from ioc_api.deps import EVERY_UNIT, NO_UNIT, Db, OpenDb, Staff, clear_scope, scoped_connection
from ioc_core.settings import Settings
from tests.support import Broker, as_

SCOPED_TABLES = ("sensors", "cameras", "alerts", "events", "rules")


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def rows(conn: psycopg.Connection) -> Iterator[dict[str, dict[str | None, int | str]]]:
    """A sensor, a camera, an alert with a comment, an event and a rule in Hải Châu, in Hòa Cường
    and in no unit; and a rule of every unit. Rules are disabled, so that the running ingest opens
    no alert from them; all of it is removed afterwards, for the tests that follow."""
    made: dict[str, dict[str | None, int | str]] = {t: {} for t in (*SCOPED_TABLES, "alert_comments")}
    for unit in ("hai-chau", "hoa-cuong", None):
        tag = unit or "nowhere"
        made["sensors"][unit] = conn.execute(
            "INSERT INTO sensors (id, kind, unit_id) VALUES (%s, 'water', %s) RETURNING id", (f"scope-{tag}", unit)
        ).fetchone()[0]
        made["cameras"][unit] = conn.execute(
            "INSERT INTO cameras (id, unit_id) VALUES (%s, %s) RETURNING id", (f"scope-cam-{tag}", unit)
        ).fetchone()[0]
        alert = conn.execute(
            "INSERT INTO alerts (unit_id, source_type, source_id, metric, severity, title)"
            " VALUES (%s, 'sensor', %s, 'level', 'major', 'Scope') RETURNING id",
            (unit, f"scope-{tag}"),
        ).fetchone()[0]
        made["alerts"][unit] = alert
        made["alert_comments"][unit] = conn.execute(
            "INSERT INTO alert_comments (alert_id, author, body) VALUES (%s, 'test', 'on it') RETURNING id", (alert,)
        ).fetchone()[0]
        made["events"][unit] = conn.execute(
            "INSERT INTO events (time, kind, severity, unit_id, source_type, source_id, title)"
            " VALUES (now(), 'alert.opened', 'major', %s, 'sensor', %s, 'Scope') RETURNING id",
            (unit, f"scope-{tag}"),
        ).fetchone()[0]
        if unit is not None:
            made["rules"][unit] = conn.execute(
                "INSERT INTO rules (name, type, unit_id, severity, params, enabled) VALUES (%s, 'no_data', %s,"
                " 'minor', '{\"factor\": 3, \"default_interval_s\": 60}', false) RETURNING id",
                (f"scope rule {tag}", unit),
            ).fetchone()[0]
    made["rules"][None] = conn.execute("SELECT min(id) FROM rules WHERE unit_id IS NULL").fetchone()[0]
    yield made
    for table in ("alerts", "events"):  # comments go with their alerts
        conn.execute(f"DELETE FROM {table} WHERE source_id LIKE 'scope-%'")
    conn.execute("DELETE FROM sensors WHERE id LIKE 'scope-%'")
    conn.execute("DELETE FROM cameras WHERE id LIKE 'scope-%'")
    conn.execute("DELETE FROM rules WHERE name LIKE 'scope %'")


def _units_of(table: str) -> str:
    """Each row's unit, for a table with a unit or for alert comments (their alert's)."""
    if table == "alert_comments":
        return "SELECT a.unit_id, c.id FROM alert_comments c JOIN alerts a ON a.id = c.alert_id"
    return f"SELECT unit_id, id FROM {table}"


@pytest.fixture(scope="module")
async def forgetful_app(database_url: str, broker: Broker, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The real application, with routes that read scoped tables with no WHERE clause at all."""
    app = create_app(Settings(database_url=database_url, mqtt_url=broker.url_for("api")))

    async def everything(table: str, db: Db, principal: Staff) -> dict:
        """What a route sees that forgot its caller's units: before and after a commit."""
        assert table in (*SCOPED_TABLES, "alert_comments")
        before = await (await db.execute(_units_of(table))).fetchall()
        await db.commit()  # as alerts' transitions do, between the stored event and its push
        after = await (await db.execute(_units_of(table))).fetchall()
        return {"before": before, "after": after}

    async def no_caller(db: Db) -> int:
        """A route that never asked who calls: its connection sees no scoped row."""
        return sum([(await (await db.execute(f"SELECT count(*) FROM {t}")).fetchone())[0] for t in SCOPED_TABLES])

    async def open_data(db: OpenDb) -> int:
        return (await (await db.execute("SELECT count(*) FROM sensors WHERE id LIKE 'scope-%'")).fetchone())[0]

    # Ahead of the screens' static files, which take every other path.
    for path, endpoint in (("/forgetful/{table}", everything), ("/no-caller", no_caller), ("/open", open_data)):
        app.router.routes.insert(0, APIRoute(path, endpoint, methods=["GET"]))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


@pytest.mark.parametrize("table", [*SCOPED_TABLES, "alert_comments"])
async def test_a_route_that_forgets_its_filter_still_sees_only_the_callers_units(
    forgetful_app: httpx.AsyncClient, tokens: dict[str, str], rows: dict, table: str
) -> None:
    ward = await forgetful_app.get(f"/forgetful/{table}", headers=as_(tokens["hai_chau"]))
    assert ward.status_code == 200, ward.text
    for seen in (ward.json()["before"], ward.json()["after"]):
        ids = {row_id for _, row_id in seen}
        units = {unit for unit, _ in seen}
        assert rows[table]["hai-chau"] in ids
        assert rows[table]["hoa-cuong"] not in ids
        if table == "rules":  # a rule of no unit applies to every unit: every scope sees it
            assert units == {"hai-chau", None} and rows["rules"][None] in ids
        else:
            assert units == {"hai-chau"}
    city = (await forgetful_app.get(f"/forgetful/{table}", headers=as_(tokens["city"]))).json()["after"]
    assert set(rows[table].values()) <= {row_id for _, row_id in city}


async def test_a_connection_whose_scope_was_not_set_sees_no_scoped_row(
    forgetful_app: httpx.AsyncClient, tokens: dict[str, str], rows: dict
) -> None:
    await forgetful_app.get("/forgetful/sensors", headers=as_(tokens["city"]))  # a scope set, then returned
    assert (await forgetful_app.get("/no-caller")).json() == 0
    assert (await forgetful_app.get("/open")).json() == 3  # open data says so: every unit, and no unit


async def test_the_pool_clears_the_scope_of_every_connection_it_lends_again(database_url: str, rows: dict) -> None:
    def count(result: list) -> int:
        return result[0][0]

    sql = "SELECT count(*) FROM sensors WHERE id LIKE 'scope-%'"
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=1, configure=clear_scope, reset=clear_scope, open=False
    ) as pool:
        async with pool.connection() as conn:
            assert count(await (await conn.execute(sql)).fetchall()) == 0
        async with scoped_connection(pool, frozenset({"hai-chau"})) as conn:
            assert count(await (await conn.execute(sql)).fetchall()) == 1
            await conn.rollback()  # the scope was set outside the block's transactions
            assert count(await (await conn.execute(sql)).fetchall()) == 1
        async with pool.connection() as conn:  # the same connection, back from the pool
            assert count(await (await conn.execute(sql)).fetchall()) == 0
            await conn.execute("RESET ALL")  # or DISCARD ALL: the empty scope, never "unset"
            assert count(await (await conn.execute(sql)).fetchall()) == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            async with scoped_connection(pool, frozenset({"hai-chau"})) as conn:  # nor write outside it
                await conn.execute(
                    "INSERT INTO events (time, kind, severity, unit_id, source_type, source_id, title)"
                    " VALUES (now(), 'alert.opened', 'major', 'hoa-cuong', 'sensor', 'scope-hoa-cuong', 'x')"
                )
        async with scoped_connection(pool, EVERY_UNIT) as conn:
            assert count(await (await conn.execute(sql)).fetchall()) == 3
        async with scoped_connection(pool, NO_UNIT) as conn:
            assert count(await (await conn.execute(sql)).fetchall()) == 0
            assert (await (await conn.execute("SELECT count(*) FROM units")).fetchone())[0] > 90  # not scoped
        with pytest.raises(TypeError, match="EVERY_UNIT"):
            async with scoped_connection(pool, None) as conn:  # type: ignore[arg-type]
                pass


def test_services_that_never_set_a_scope_see_every_row(conn: psycopg.Connection, rows: dict) -> None:
    """Ingest, the CLI and vision connect as the same role and are not held to any scope."""
    assert conn.execute("SELECT count(*) FROM sensors WHERE id LIKE 'scope-%'").fetchone() == (3,)
    conn.execute(
        "INSERT INTO events (time, kind, severity, source_type, source_id, title)"
        " VALUES (now(), 'device.online', 'info', 'sensor', 'scope-nowhere', 'online')"
    )


def test_ward_operators_see_their_rules_and_those_of_every_unit(
    http: httpx.Client, tokens: dict[str, str], rows: dict
) -> None:
    ward = http.get("/rules", headers=as_(tokens["hai_chau"]))
    assert ward.status_code == 200
    assert {r["unit_id"] for r in ward.json()} == {"hai-chau", None}
    assert http.get(f"/rules/{rows['rules']['hai-chau']}", headers=as_(tokens["hai_chau"])).status_code == 200
    assert http.get(f"/rules/{rows['rules'][None]}", headers=as_(tokens["hai_chau"])).status_code == 200
    assert http.get(f"/rules/{rows['rules']['hoa-cuong']}", headers=as_(tokens["hai_chau"])).status_code == 404
    city = {r["id"] for r in http.get("/rules", headers=as_(tokens["city"])).json()}
    assert set(rows["rules"].values()) <= city


def test_scoped_rest_routes_answer_within_scope(http: httpx.Client, tokens: dict[str, str], rows: dict) -> None:
    ward = as_(tokens["hai_chau"])
    cameras = http.get("/cameras", headers=ward).json()
    assert {c["unit_id"] for c in cameras} == {"hai-chau"}
    assert http.get("/cameras/scope-cam-hoa-cuong", headers=ward).status_code == 404
    assert http.get("/cameras", params={"unit": "hoa-cuong"}, headers=ward).status_code == 403  # the better error
    assert http.get("/sensors/scope-nowhere", headers=ward).status_code == 404  # no unit: city scope only
    assert http.get("/sensors/scope-nowhere", headers=as_(tokens["engineer"])).status_code == 200
    assert http.get("/sensors/scope-hoa-cuong/readings", params={"metric": "level"}, headers=ward).status_code == 404
    assert {s["unit_id"] for s in http.get("/sensors", headers=ward).json()} == {"hai-chau"}
    own = http.get(f"/alerts/{rows['alerts']['hai-chau']}", headers=ward).json()
    assert [c["body"] for c in own["comments"]] == ["on it"]
    times = http.get("/response-times", headers=ward).json()
    assert {r["unit_id"] for r in times} == {"hai-chau"}


def test_open_data_and_health_read_every_unit(http: httpx.Client, rows: dict) -> None:
    times = http.get("/open-data/response-times", params={"period": "day"}).json()
    assert {"hai-chau", "hoa-cuong"} <= {r["unit_id"] for r in times}
    assert http.get("/open-data/cap.atom").status_code == 200
    assert len(http.get("/units").json()["features"]) > 90
    assert httpx.get(str(http.base_url).removesuffix("/api/v1/") + "/health").status_code == 200


# Explicit nulls in PATCH bodies: refused with a 422 that names the field where the database cannot
# hold NULL, applied where null means something.
RULE_NULLS = {
    "name": 422,
    "severity": 422,
    "params": 422,
    "public": 422,
    "enabled": 422,
    "sensor_kind": 200,  # every kind
    "metric": 200,  # a no-data rule: any metric
    "unit_id": 200,  # every unit
    "reference": 200,
}
SENSOR_NULLS = {
    "kind": 422,
    "metrics": 422,
    "name": 200,
    "lat": 200,
    "lon": 200,
    "unit_id": 200,  # the unit that holds its position
    "interval_s": 200,
    "gateway_id": 200,
}
CAMERA_NULLS = {"analytics": 422, "name": 200, "lat": 200, "lon": 200, "unit_id": 200, "stream_url": 200}


@pytest.fixture
def patchable(conn: psycopg.Connection) -> Iterator[dict[str, str]]:
    """A rule (disabled), a sensor and a camera with every nullable field set, as new for each test."""
    conn.execute("DELETE FROM rules WHERE name = 'scope patch'")
    conn.execute("DELETE FROM sensors WHERE id = 'scope-patch'")
    conn.execute("DELETE FROM cameras WHERE id = 'scope-patch-cam'")
    rule = conn.execute(
        "INSERT INTO rules (name, type, sensor_kind, metric, unit_id, severity, params, reference, enabled)"
        " VALUES ('scope patch', 'no_data', 'water', 'level', 'hai-chau', 'minor',"
        " '{\"factor\": 3, \"default_interval_s\": 60}', 'a reference', false) RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO sensors (id, kind, name, lat, lon, unit_id, interval_s, gateway_id)"
        " VALUES ('scope-patch', 'water', 'Patch', 16.06, 108.22, 'hai-chau', 60, 'scope-gw')"
    )
    conn.execute(
        "INSERT INTO cameras (id, name, lat, lon, unit_id, stream_url)"
        " VALUES ('scope-patch-cam', 'Patch', 16.06, 108.22, 'hai-chau', 'rtsp://10.0.0.5/1')"
    )
    yield {"rules": f"/rules/{rule}", "sensors": "/sensors/scope-patch", "cameras": "/cameras/scope-patch-cam"}
    conn.execute("DELETE FROM rules WHERE id = %s", (rule,))
    conn.execute("DELETE FROM sensors WHERE id = 'scope-patch'")
    conn.execute("DELETE FROM cameras WHERE id = 'scope-patch-cam'")


@pytest.mark.parametrize(
    ("resource", "field", "status"),
    [("rules", f, s) for f, s in RULE_NULLS.items()]
    + [("sensors", f, s) for f, s in SENSOR_NULLS.items()]
    + [("cameras", f, s) for f, s in CAMERA_NULLS.items()],
)
def test_an_explicit_null_in_a_patch_is_a_422_or_means_something(
    http: httpx.Client, tokens: dict[str, str], patchable: dict[str, str], resource: str, field: str, status: int
) -> None:
    engineer = as_(tokens["engineer"])
    response = http.patch(patchable[resource], json={field: None}, headers=engineer)
    assert response.status_code == status, response.text
    if status == 422:
        assert response.headers["content-type"] == "application/problem+json"
        [error] = response.json()["errors"]
        assert error["loc"] == ["body", field] and error["type"] == "null_not_allowed"
        assert f"{field} cannot be null" in error["msg"]
    elif field == "unit_id" and resource != "rules":
        assert response.json()["unit_id"] is not None  # placed by its position again
    elif field not in ("lat", "lon"):  # moving clears the unit the position gave
        assert response.json()[field] is None
    else:
        assert response.json()[field] is None and response.json()["unit_id"] is None


def test_a_threshold_rule_refuses_a_null_metric(
    http: httpx.Client, tokens: dict[str, str], conn: psycopg.Connection
) -> None:
    rule = conn.execute(
        "INSERT INTO rules (name, type, metric, severity, params, enabled) VALUES ('scope threshold', 'threshold',"
        " 'level', 'minor', '{\"op\": \"above\", \"value\": 2}', false) RETURNING id"
    ).fetchone()[0]
    response = http.patch(f"/rules/{rule}", json={"metric": None}, headers=as_(tokens["engineer"]))
    assert response.status_code == 422 and "needs a metric" in response.json()["detail"]
    conn.execute("DELETE FROM rules WHERE id = %s", (rule,))
