"""Citizens' reports end to end through the API: filed by the public page and the 1022 console,
routed to their unit, joined when they repeat, handled step by step by the ward (each step an
event and an audit line), followed by their code; photos and contacts kept as a city must."""

import io
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from ioc_api.cli import create_token, create_user
from tests.support import Service, as_

HAI_CHAU = (16.0678, 108.2208)
HOA_CUONG = (16.0385, 108.2219)  # by its committee


def dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    minutes = value % 1 * 60
    return IFDRational(int(value), 1), IFDRational(int(minutes), 1), IFDRational(round(minutes % 1 * 600_000), 10_000)


def jpeg_with_gps(lat: float, lon: float, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    """A photo as a phone takes it: with its position, the camera's make, and turned on its side."""
    image = Image.new("RGB", size, (200, 40, 40))
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif[0x0112] = 6  # to be shown turned: cleaning turns it upright
    exif.get_ifd(0x8825).update({1: "N", 2: dms(lat), 3: "E", 4: dms(lon)})
    out = io.BytesIO()
    image.save(out, fmt, exif=exif)
    return out.getvalue()


@pytest.fixture(scope="module")
def public(api: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}/api/v1", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def hotline(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, "t-hotline", "hotline_operator", [], "pw-hotline")
        return create_token(conn, "t-hotline", "tests", 1)


def file(public: httpx.Client, category: str, at: tuple[float, float], photos: list[bytes] = (), **fields) -> dict:
    response = public.post(
        "/public/reports",
        data={
            "category": category,
            "description": fields.pop("description", "Phản ánh"),
            "lat": at[0],
            "lon": at[1],
            **fields,
        },
        files=[("photo", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)],
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_a_report_goes_to_the_unit_its_place_lies_in_with_its_deadline(public: httpx.Client, http, tokens) -> None:
    filed = file(public, "urban_infrastructure", HAI_CHAU, description="Ổ gà lớn giữa đường")
    assert filed["unit_id"] == "hai-chau" and not filed["joined"] and filed["code"].startswith("DN")
    ticket = http.get(f"/tickets/{filed['ticket_id']}", headers=as_(tokens["hai_chau"])).json()
    assert ticket["state"] == "received" and 0 < ticket["working_hours_left"] <= 24
    assert http.get(f"/tickets/{filed['ticket_id']}", headers=as_(tokens["hoa_cuong"])).status_code == 404
    others = http.get("/tickets", headers=as_(tokens["hoa_cuong"])).json()
    assert filed["ticket_id"] not in {t["id"] for t in others}  # a ward sees its own tickets only


def test_a_second_report_nearby_joins_the_open_ticket_and_each_reporter_follows_it(public: httpx.Client) -> None:
    first = file(public, "trees", (16.0621, 108.2211), description="Cây nghiêng")
    second = file(public, "trees", (16.0622, 108.2212), description="Cành sắp gãy")
    elsewhere = file(public, "trees", (16.0700, 108.2300), description="Cây đổ")  # a kilometre away
    assert second["joined"] and second["ticket_id"] == first["ticket_id"] and second["code"] != first["code"]
    assert not elsewhere["joined"]
    for code in (first["code"], second["code"]):
        assert public.get(f"/public/reports/{code}").json()["reporters"] == 2


def test_the_ward_works_a_ticket_through_its_steps_each_an_event_and_an_audit_line(
    public: httpx.Client, http, tokens, database_url: str
) -> None:
    filed = file(public, "lighting", (16.0650, 108.2190), contact_phone="0905123456")
    ward, ticket = as_(tokens["hai_chau"]), filed["ticket_id"]
    assert http.post(f"/tickets/{ticket}/accept", headers=ward).json()["state"] == "accepted"
    assert http.post(f"/tickets/{ticket}/accept", headers=ward).status_code == 409
    assert http.post(f"/tickets/{ticket}/resolve", headers=ward, json={}).status_code == 422  # says why
    photo = [("photo", ("done.jpg", jpeg_with_gps(*HAI_CHAU), "image/jpeg"))]
    done = http.post(f"/tickets/{ticket}/resolve-with-photo", headers=ward, data={"note": "Đã thay bóng"}, files=photo)
    assert done.status_code == 200 and done.json()["state"] == "resolved"
    seen = public.get(f"/public/reports/{filed['code']}").json()
    assert seen["state"] == "resolved" and seen["steps"][-1]["note"] == "Đã thay bóng"
    assert [p["stage"] for p in seen["photos"]] == ["resolution"]
    assert public.get(seen["photos"][0]["url"].removeprefix("/api/v1")).headers["content-type"] == "image/jpeg"
    assert "0905123456" not in str(seen)
    assert public.post(f"/public/reports/{filed['code']}/confirm").json()["state"] == "closed"
    with psycopg.connect(database_url) as conn:
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT kind FROM events WHERE source_type = 'ticket' AND source_id = %s ORDER BY id", (str(ticket),)
            )
        ]
        audit = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE target IN (%s, %s) AND split_part(action, '.', 1) IN"
                " ('report', 'ticket') ORDER BY id",  # an incident may have the same number
                (str(ticket), filed["code"]),
            )
        ]
    assert kinds == [
        "citizen.report.received",
        "citizen.report.accepted",
        "citizen.report.resolved",
        "citizen.report.closed",
    ]
    assert audit == ["report.received", "ticket.accept", "ticket.resolve", "ticket.close"]


def test_contacts_are_for_the_handling_units_staff_only(public: httpx.Client, http, tokens, hotline: str) -> None:
    filed = http.post(
        "/tickets",
        headers=as_(hotline),
        json={
            "category": "noise",
            "description": "Karaoke sau 23h",
            "lat": 16.0580,
            "lon": 108.2230,
            "caller_phone": "0914000222",
            "caller_name": "Bà Lan",
        },
    )
    assert filed.status_code == 201, filed.text
    ticket = filed.json()["ticket_id"]
    by_ward = http.get(f"/tickets/{ticket}", headers=as_(tokens["hai_chau"])).json()
    assert by_ward["reports"][0]["contact_phone"] == "0914000222"
    assert by_ward["reports"][0]["channel"] == "hotline"
    by_city = http.get(f"/tickets/{ticket}", headers=as_(tokens["city"])).json()
    assert by_city["reports"][0]["contact_phone"] is None
    assert http.get(f"/tickets/{ticket}", headers=as_(hotline)).status_code == 403  # entered, not read back
    near = http.get("/tickets/nearby", headers=as_(hotline), params={"lat": 16.0581, "lon": 108.2231}).json()
    assert ticket in {t["id"] for t in near} and all(r["contact_phone"] is None for t in near for r in t["reports"])


def test_a_transfer_hands_the_ticket_to_another_unit_with_its_reason(public: httpx.Client, http, tokens) -> None:
    filed = file(public, "environment_sanitation", (16.0655, 108.2195))
    ward = as_(tokens["hai_chau"])
    moved = http.post(
        f"/tickets/{filed['ticket_id']}/transfer",
        headers=ward,
        json={"to_unit": "hoa-cuong", "note": "Thuộc địa bàn Hòa Cường"},
    )
    assert moved.status_code == 200, moved.text
    assert http.get(f"/tickets/{filed['ticket_id']}", headers=ward).status_code == 404
    taken = http.get(f"/tickets/{filed['ticket_id']}", headers=as_(tokens["hoa_cuong"])).json()
    assert taken["unit_id"] == "hoa-cuong" and taken["state"] == "received"
    assert (
        http.post(f"/tickets/{filed['ticket_id']}/reject", headers=as_(tokens["hoa_cuong"]), json={}).status_code == 422
    )


def test_a_photo_is_checked_by_its_bytes_stripped_of_its_metadata_and_places_a_report(
    public: httpx.Client, http, tokens, database_url: str
) -> None:
    png = jpeg_with_gps(*HOA_CUONG, fmt="PNG")  # a PNG named .jpg: its bytes decide
    response = public.post(
        "/public/reports",
        data={"category": "other", "description": "Ảnh có GPS"},
        files=[("photo", ("named.jpg", png, "image/jpeg"))],
    )
    assert response.status_code == 201, response.text
    filed = response.json()
    assert filed["unit_id"] == "hoa-cuong"  # no pin, no address: the photo's GPS placed it
    with psycopg.connect(database_url) as conn:
        (name,) = conn.execute("SELECT name FROM ticket_photos WHERE ticket_id = %s", (filed["ticket_id"],)).fetchone()
    stored = http.get(f"/tickets/{filed['ticket_id']}/photos/{name}.jpg", headers=as_(tokens["hoa_cuong"]))
    image = Image.open(io.BytesIO(stored.content))
    assert image.format == "JPEG" and image.size == (48, 64)  # turned upright
    assert not image.getexif() and "icc_profile" not in image.info and "comment" not in image.info
    assert public.get(f"/public/photos/{name}.jpg").status_code == 404  # a report's photo is not public


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ([("photo", ("a.jpg", b"not an image at all", "image/jpeg"))], "not a JPEG, PNG or WebP"),
        ([("photo", (f"{i}.jpg", jpeg_with_gps(*HAI_CHAU), "image/jpeg")) for i in range(4)], "three photos"),
    ],
)
def test_a_refused_photo_stores_nothing(public: httpx.Client, database_url: str, files, says: str) -> None:
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM ticket_photos)").fetchone()
    response = public.post(
        "/public/reports",
        data={"category": "other", "description": "x", "lat": HAI_CHAU[0], "lon": HAI_CHAU[1]},
        files=files,
    )
    assert response.status_code == 422 and says in response.json()["detail"]
    with psycopg.connect(database_url) as conn:
        after = conn.execute("SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM ticket_photos)").fetchone()
    assert after == before


def test_a_place_outside_the_city_is_refused_clearly(public: httpx.Client) -> None:
    response = public.post(
        "/public/reports", data={"category": "other", "description": "x", "lat": 21.03, "lon": 105.85}
    )
    assert response.status_code == 422 and "outside Đà Nẵng" in response.json()["detail"]


def test_categories_are_the_citys_in_both_languages_and_admins_change_them(http, tokens) -> None:
    categories = {c["code"]: c for c in http.get("/categories").json()}
    assert categories["flooding"]["emergency"] and categories["flooding"]["deadline_days"] == 1
    assert categories["lighting"]["name_en"] == "Lighting" and categories["lighting"]["name_vi"] == "Chiếu sáng"
    changed = http.patch("/categories/other", headers=as_(tokens["admin"]), json={"deadline_days": 7})
    assert changed.status_code == 200 and changed.json()["deadline_days"] == 7
    assert http.patch("/categories/other", headers=as_(tokens["city"]), json={"deadline_days": 1}).status_code == 403
    assert (
        http.patch("/categories/other", headers=as_(tokens["admin"]), json={"deadline_days": None}).status_code == 422
    )
