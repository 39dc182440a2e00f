"""Incidents through the API: the ward works the flood SOP's checklist (notes, a photo, the city's
approval), the steps that are late stand out, the incident is acknowledged and moved to closed,
two incidents are merged and one is split, and the timeline is exported; a ward sees only its own,
and every action is an event and an audit line."""

import csv
import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.ioc_api.test_tickets import jpeg_with_gps
from tests.support import as_


def incident(db: psycopg.Connection, unit: str, opened: datetime, members: int = 1, severity: str = "major") -> int:
    sop = db.execute("SELECT id FROM sops WHERE type = 'flood' ORDER BY version DESC LIMIT 1").fetchone()[0]
    incident_id = db.execute(
        "INSERT INTO incidents (unit_id, type, sop_id, title, severity, lat, lon, opened_at, last_member_at, members)"
        " VALUES (%s, 'flood', %s, 'Ngập', %s, 16.06, 108.22, %s, %s, %s) RETURNING id",
        (unit, sop, severity, opened, opened, members),
    ).fetchone()[0]
    for i in range(members):
        db.execute(
            "INSERT INTO incident_members (incident_id, member_type, member_id, kind, severity, unit_id, at, title)"
            " VALUES (%s, 'ticket', %s, 'citizen.report', %s, %s, %s, %s)",
            (
                incident_id,
                incident_id * 1000 + i,
                "critical" if i == 0 and severity == "critical" else "minor",
                unit,
                opened + timedelta(minutes=i),
                f"member {i}",
            ),
        )
    return incident_id


@pytest.fixture
def flood(db: psycopg.Connection) -> int:
    return incident(db, "hai-chau", datetime.now(UTC) - timedelta(minutes=40))


def test_a_ward_works_the_checklist_and_the_city_approves_and_owns_its_steps(
    http, tokens, flood: int, database_url: str
) -> None:
    ward, city, other = as_(tokens["hai_chau"]), as_(tokens["city"]), as_(tokens["hoa_cuong"])
    seen = http.get(f"/incidents/{flood}", headers=ward).json()
    assert [s["key"] for s in seen["checklist"]] == ["confirm", "warn", "block_roads", "evacuate", "pumps", "report"]
    assert {s["key"] for s in seen["checklist"] if s["overdue"]} == {"confirm", "warn"}  # 40 min: 15 and 30 due
    assert http.get(f"/incidents/{flood}", headers=other).status_code == 404
    assert flood not in {i["id"] for i in http.get("/incidents", headers=other).json()}

    photo = {"photo": ("water.jpg", jpeg_with_gps(16.06, 108.22), "image/jpeg")}
    done = http.post(f"/incidents/{flood}/steps/confirm", headers=ward, data={"note": "Nước 40 cm"}, files=photo)
    assert done.status_code == 200, done.text
    confirm = next(s for s in done.json()["checklist"] if s["key"] == "confirm")
    assert confirm["done_by"] == "t-hai_chau" and confirm["note"] == "Nước 40 cm" and not confirm["overdue"]
    assert http.get(confirm["photo_url"].removeprefix("/api/v1"), headers=ward).headers["content-type"] == "image/jpeg"
    assert http.post(f"/incidents/{flood}/steps/confirm", headers=ward).status_code == 409
    assert http.post(f"/incidents/{flood}/steps/pumps", headers=ward).status_code == 403  # the city's
    assert http.post(f"/incidents/{flood}/steps/pumps", headers=city).status_code == 200
    assert http.post(f"/incidents/{flood}/steps/evacuate", headers=ward, data={"note": "12 hộ"}).status_code == 200
    assert http.post(f"/incidents/{flood}/steps/evacuate/approve", headers=ward).status_code == 403
    approved = http.post(f"/incidents/{flood}/steps/evacuate/approve", headers=city).json()
    assert next(s for s in approved["checklist"] if s["key"] == "evacuate")["approved_by"] == "t-city"
    assert approved["steps_done"] == 3

    assert http.post(f"/incidents/{flood}/acknowledge", headers=ward).json()["acknowledged_by"] == "t-hai_chau"
    for state in ("responding", "stabilised", "closed"):
        assert http.post(f"/incidents/{flood}/state", headers=ward, json={"state": state}).json()["state"] == state
    with psycopg.connect(database_url) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT kind FROM events WHERE source_type = 'incident' AND source_id = %s ORDER BY id", (str(flood),)
            )
        ]
        audited = conn.execute("SELECT count(*) FROM audit_log WHERE target = %s", (str(flood),)).fetchone()[0]
    assert kinds == [
        "incident.step_done",
        "incident.step_done",
        "incident.step_done",
        "incident.step_approved",
        "incident.acknowledged",
        "incident.responding",
        "incident.stabilised",
        "incident.closed",
    ]
    assert audited == len(kinds)

    rows = list(csv.DictReader(io.StringIO(http.get(f"/incidents/{flood}/timeline?format=csv", headers=city).text)))
    whats = [r["what"] for r in rows]
    assert whats[0] == "member" and {"step", "approval", "event"} <= set(whats)
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)


def test_two_incidents_merge_into_one_and_one_splits_in_two(http, tokens, db: psycopg.Connection) -> None:
    city = as_(tokens["city"])
    start = datetime.now(UTC) - timedelta(minutes=5)
    keep, other = incident(db, "hai-chau", start, 2), incident(db, "hai-chau", start, 3, severity="critical")
    merged = http.post(f"/incidents/{keep}/merge", headers=city, json={"other": other})
    assert merged.status_code == 200, merged.text
    assert merged.json()["members"] == 5 and merged.json()["severity"] == "critical"
    assert http.get(f"/incidents/{other}", headers=city).json()["state"] == "closed"
    moving = [{"member_type": "ticket", "member_id": other * 1000 + i} for i in range(3)]
    split = http.post(f"/incidents/{keep}/split", headers=city, json={"members": moving})
    assert split.status_code == 201, split.text
    assert split.json()["members"] == 3 and split.json()["severity"] == "critical" and split.json()["id"] != keep
    assert http.get(f"/incidents/{keep}", headers=city).json()["members"] == 2
    everything = moving + [{"member_type": "ticket", "member_id": keep * 1000 + i} for i in range(2)]
    assert http.post(f"/incidents/{keep}/split", headers=city, json={"members": everything}).status_code == 422


def test_the_city_hands_an_incident_to_a_department(http, tokens, db: psycopg.Connection) -> None:
    owned = incident(db, "hai-chau", datetime.now(UTC))
    to_city = {"unit_id": "danang", "department": "Sở Xây dựng", "note": "Sạt lở kè"}
    assert http.post(f"/incidents/{owned}/owner", headers=as_(tokens["hai_chau"]), json=to_city).status_code == 403
    handed = http.post(f"/incidents/{owned}/owner", headers=as_(tokens["city"]), json=to_city).json()
    assert (handed["unit_id"], handed["department"]) == ("danang", "Sở Xây dựng")
    assert http.get(f"/incidents/{owned}", headers=as_(tokens["hai_chau"])).status_code == 404  # no longer the ward's
