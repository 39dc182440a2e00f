"""Each scenario file, run at 1200x through the real broker, ingest and database, opens exactly the
alerts it states, and they close; the citizens who report its incidents (through Open311, to an
API of its own) make the tickets it states. Each runs in a database of its own with ingest on the
data clock (``IOC_ALERT_CLOCK=data``), so no-data rules and escalation keep the scenario's time."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from bench.scratch import scratch_stack
from ioc_api.report_cli import create_api_key
from ioc_core.settings import REPO_ROOT, Settings
from simulators.scenarios import CITY_TZ, Scenario, run_scenario
from tests.conftest import start_ingest
from tests.support import free_port, start_api, wait_until

SCENARIOS = sorted((REPO_ROOT / "simulators" / "scenarios").glob("*.yaml"))


@pytest.fixture
def scenario_env() -> Iterator[Settings]:
    """A database, a broker and an ingest of its own: an ingest that left a broker's share group
    would still be given its share of the next scenario's messages."""
    with scratch_stack("ioc_scenario") as (url, broker):
        port = free_port()
        env = {
            "IOC_DATABASE_URL": url,
            "IOC_MQTT_URL": broker.url_for("ingest"),
            "IOC_INGEST_METRICS_PORT": str(port),
            "IOC_ALERT_CLOCK": "data",
            "IOC_ALERT_CHECK_S": "0.25",
            "IOC_RULES_REFRESH_S": "0.5",
            "IOC_INGEST_REGISTRY_REFRESH_S": "0.5",
        }
        ingest = start_ingest(env)
        api = start_api({**env, "IOC_MQTT_URL": broker.url_for("api")})  # the reports go through Open311
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                key = create_api_key(conn, "scenario", "simulated", 10_000)
            yield Settings(
                database_url=url,
                mqtt_url=broker.url_for("simulator"),
                sim_api_url=f"http://127.0.0.1:{api.port}",
                sim_open311_key=key,
            )
        finally:
            api.stop()
            ingest.stop()


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_a_scenario_opens_exactly_the_alerts_it_states_and_they_close(path: Path, scenario_env: Settings) -> None:
    plan = Scenario.load(path)
    stats = run_scenario(plan, scenario_env, speed=1200)
    expected = plan.expected_alerts(plan.city(scenario_env.database_url, plan.start_time()))
    with psycopg.connect(scenario_env.database_url, autocommit=True) as db:
        wait_until(
            lambda: db.execute("SELECT count(*) FROM readings").fetchone()[0] == stats.values,
            timeout=30,
            what="every reading stored",
        )

        def alerts() -> dict[tuple[str, str], str]:
            rows = db.execute("SELECT r.name, a.source_id, a.state FROM alerts a JOIN rules r ON r.id = a.rule_id")
            return {(name, source): state for name, source, state in rows}

        def settled() -> bool:
            now = alerts()
            return now.keys() == expected.keys() and all(
                (state == "resolved") == expected[key] for key, state in now.items()
            )

        try:
            wait_until(settled, timeout=60, what="exactly the stated alerts, closed")
        except TimeoutError:
            assert alerts() == {key: "resolved" if closes else "open" for key, closes in expected.items()}
            raise
        # The citizens who report the incident make the tickets it states: near each other, one.
        tickets = {
            (unit, category): (n, reports)
            for unit, category, n, reports in db.execute(
                "SELECT unit_id, category, count(*), sum(reporters) FROM tickets GROUP BY 1, 2"
            )
        }
        assert tickets == {(e.unit, e.category): (e.tickets, e.reports) for e in plan.expect_tickets}
        assert stats.reports_filed == sum(e.reports for e in plan.expect_tickets)


def test_a_scenario_run_as_a_drill_is_marked_so_and_left_out_of_published_figures(scenario_env: Settings) -> None:
    plan = Scenario.load(REPO_ROOT / "simulators" / "scenarios" / "flood.yaml")
    stats = run_scenario(plan, scenario_env, speed=1200, exercise=True)
    api = httpx.Client(base_url=f"{scenario_env.sim_api_url}/api/v1", timeout=30)
    with psycopg.connect(scenario_env.database_url, autocommit=True) as db:
        wait_until(lambda: db.execute("SELECT count(*) FROM readings").fetchone()[0] == stats.values, what="stored")
        wait_until(lambda: db.execute("SELECT count(*) FROM alerts").fetchone()[0] >= 3, what="the alerts")
        wait_until(
            lambda: (
                db.execute("SELECT count(*) FROM incident_members").fetchone()[0]
                == db.execute("SELECT (SELECT count(*) FROM alerts) + (SELECT count(*) FROM tickets)").fetchone()[0]
            ),
            what="every alert and report in an incident",
        )
        marks = db.execute(
            "SELECT (SELECT bool_and(exercise) FROM alerts), (SELECT bool_and(exercise) FROM tickets),"
            " (SELECT bool_and(exercise) FROM incidents), (SELECT array_agg(DISTINCT type) FROM incidents)"
        ).fetchone()
        assert marks == (True, True, True, ["flood"])
        public = db.execute(
            "SELECT id FROM alerts a WHERE EXISTS (SELECT 1 FROM rules r WHERE r.id = a.rule_id AND r.public)"
            " AND state <> 'resolved'"
        ).fetchall()
    for (alert_id,) in public:
        assert "<status>Exercise</status>" in api.get(f"/cap/{alert_id}.xml").text
    day = datetime.fromtimestamp(plan.start_time(), CITY_TZ).date()
    window = {"start": (day - timedelta(days=1)).isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    assert api.get("/open-data/response-times", params=window).json() == []
    assert api.get("/open/sprint", params=window).json() == []
