"""The civic sprint's open data: counted right per unit, category and period, ranked, as JSON and
CSV, with nothing personal in it."""

import csv
import io
from datetime import datetime, timedelta

import psycopg

from ioc_core.working_days import VIETNAM


def test_the_sprint_counts_each_units_reports_and_ranks_the_units(http, database_url: str) -> None:
    day = datetime(2025, 6, 2, 9, 0, tzinfo=VIETNAM)  # a day no other test files reports on
    rows = [  # (unit, state, on time, working hours to resolve)
        ("hai-van", "resolved", True, 2.0),
        ("hai-van", "closed", True, 4.0),
        ("hai-van", "resolved", False, 30.0),
        ("hai-van", "received", None, None),
        ("lien-chieu", "resolved", False, 40.0),
        ("lien-chieu", "rejected", False, None),
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for unit, state, on_time, hours in rows:
            conn.execute(
                "INSERT INTO tickets (category, unit_id, emergency, lat, lon, description, received_at, deadline_at,"
                " state, on_time, working_s) VALUES ('traffic', %s, false, 16.1, 108.1, 'x', %s, %s, %s, %s, %s)",
                (unit, day, day + timedelta(days=3), state, on_time, hours * 3600 if hours else None),
            )
    span = {"start": "2025-06-01", "end": "2025-06-30"}
    figures = {(r["unit_id"], r["category"]): r for r in http.get("/open/sprint", params=span).json()}
    hai_van = figures[("hai-van", "traffic")]
    assert hai_van["period"] == "2025-06-01" and hai_van["received"] == 4 and hai_van["resolved"] == 3
    assert hai_van["resolved_on_time"] == 2 and hai_van["median_working_hours"] == 4.0
    assert hai_van["p90_working_hours"] == 24.8 and hai_van["overdue_now"] == 1
    by_day = http.get("/open/sprint", params={**span, "period": "day", "unit": "lien-chieu"}).json()
    assert [(r["period"], r["received"], r["resolved"]) for r in by_day] == [("2025-06-02", 2, 1)]
    ranking = http.get("/open/sprint/ranking", params=span).json()
    assert len(ranking) == 94 and [r["rank"] for r in ranking] == list(range(1, 95))
    order = [r["unit_id"] for r in ranking]
    assert order.index("hai-van") < order.index("lien-chieu")
    text = http.get("/open/sprint", params={**span, "format": "csv"}).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert {"unit_id", "category", "received", "median_working_hours"} <= set(table[0])
    assert "x" not in {v for r in table for v in r.values()}  # no description, no contact: figures only


def test_a_window_past_its_bound_is_refused(http) -> None:
    assert http.get("/open/sprint", params={"start": "2020-01-01", "end": "2026-01-01"}).status_code == 422
