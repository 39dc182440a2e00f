"""Open311 GeoReport v2 as existing clients speak it: the read side through ``georeport`` (a real
client, JSON and XML), the write side as FixMyStreet posts (form-encoded, to requests.xml), and
every error in Open311's own format."""

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from georeport import GeoReport
from lxml import etree

from ioc_api.report_cli import create_api_key
from tests.support import Service

HAI_CHAU = (16.0678, 108.2208)


@pytest.fixture(scope="module")
def o311(api: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}/open311/v2", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def key(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return create_api_key(conn, "test-app", "app", 1000)


def post(o311: httpx.Client, key: str, fmt: str = "json", **form) -> httpx.Response:
    return o311.post(f"/requests.{fmt}", data={"api_key": key, **form})


def client(api: Service, fmt: str = "json") -> GeoReport:
    """The real client, as a city's app would use it."""
    return GeoReport(f"http://127.0.0.1:{api.port}/open311/v2/", jurisdiction="danang.gov.vn", output_format=fmt)


def test_services_and_their_definitions_in_json_and_xml_through_a_real_client(api: Service) -> None:
    for fmt in ("json", "xml"):
        services = client(api, fmt).get_service_list()
        assert {"flooding", "lighting", "urban_infrastructure", "other"} <= {s["service_code"] for s in services}
        flooding = next(s for s in services if s["service_code"] == "flooding")
        assert flooding["service_name"] == "Ngập lụt" and flooding["type"] == "realtime"
        assert client(api, fmt).get_service_definition("flooding")["service_code"] == "flooding"


def test_a_request_posted_as_fixmystreet_posts_it_is_answered_in_xml_and_found_by_a_real_client(
    api: Service, o311: httpx.Client, key: str
) -> None:
    response = post(
        o311,
        key,
        "xml",
        service_code="lighting",
        lat=str(HAI_CHAU[0]),
        long=str(HAI_CHAU[1]),
        description="Đèn đường không sáng",
        first_name="An",
        last_name="Nguyễn",
        phone="0905000111",
        email="an@example.vn",
        media_url="https://example.vn/photo.jpg",
        **{"attribute[extra]": "1"},
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    assert root.tag == "service_requests"
    code = root.findtext("request/service_request_id")
    assert code.startswith("DN")
    for fmt in ("json", "xml"):
        found = client(api, fmt).get_service_request(code)
        assert found["status"] == "open" and found["service_code"] == "lighting"
        assert found["agency_responsible"] == "Hải Châu" and found["expected_datetime"]
    listed = client(api).get_service_requests(service_code="lighting", status="open")
    assert code in {r["service_request_id"] for r in listed}
    text = httpx.get(f"http://127.0.0.1:{api.port}/open311/v2/requests/{code}.json").text
    for private in ("0905000111", "an@example.vn", "Nguyễn", "photo.jpg"):
        assert private not in text  # nothing personal in an answer


def test_requests_are_listed_by_category_status_and_window(o311: httpx.Client, key: str) -> None:
    code = post(o311, key, service_code="trees", lat="16.0600", long="108.2150", description="Cây nghiêng").json()[0][
        "service_request_id"
    ]
    listed = o311.get("/requests.json", params={"service_code": "trees", "status": "open"}).json()
    assert code in {r["service_request_id"] for r in listed}
    assert o311.get("/requests.json", params={"service_code": "trees", "status": "closed"}).json() == []
    by_id = o311.get("/requests.json", params={"service_request_id": f"{code},DN22222222"}).json()
    assert [r["service_request_id"] for r in by_id] == [code]


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"service_code": "lighting", "lat": "16.06", "long": "108.22", "api_key": "wrong"}, 403, "invalid api_key"),
        ({"service_code": "lighting", "lat": "16.06", "long": "108.22", "api_key": ""}, 403, "api_key is required"),
        ({"lat": "16.06", "long": "108.22"}, 400, "service_code is required"),
        ({"service_code": "lighting"}, 400, "a location is required"),
        ({"service_code": "lighting", "lat": "16.06"}, 400, "lat and long go together"),
        ({"service_code": "lighting", "lat": "north", "long": "108.22"}, 400, "lat is not a number"),
        ({"service_code": "lighting", "lat": "21.03", "long": "105.85"}, 400, "outside Đà Nẵng"),  # Hà Nội
        ({"service_code": "potholes", "lat": "16.06", "long": "108.22"}, 404, "no category"),
        ({"service_code": "lighting", "address_string": "221B Baker Street"}, 400, "names no ward"),
        ({"service_code": "lighting", "lat": "16.06", "long": "108.22", "description": "x" * 4001}, 400, "4000"),
    ],
)
def test_each_refusal_is_an_open311_error_in_both_formats(
    o311: httpx.Client, key: str, form: dict, status: int, says: str
) -> None:
    form = {"api_key": key, **form}
    as_json = o311.post("/requests.json", data=form)
    assert as_json.status_code == status
    [error] = as_json.json()
    assert error["code"] == status and says in error["description"]
    as_xml = o311.post("/requests.xml", data=form)
    assert as_xml.status_code == status
    assert etree.fromstring(as_xml.content).findtext("error/code") == str(status)


def test_unknown_ids_services_and_tokens_are_404s_and_a_bad_window_a_400(o311: httpx.Client) -> None:
    for path in ("/requests/DN22222222.json", "/services/potholes.xml", "/tokens/abc.json"):
        response = o311.get(path)
        assert response.status_code == 404, path
    assert (
        o311.get(
            "/requests.json",
            params={"start_date": "2026-01-01T00:00:00+07:00", "end_date": "2026-06-01T00:00:00+07:00"},
        ).status_code
        == 400
    )
    assert o311.get("/requests.json", params={"start_date": "yesterday"}).status_code == 400
    assert o311.get("/services.yaml").status_code in (404, 422)


def test_an_address_in_the_pre_2025_form_routes_the_request(o311: httpx.Client, key: str, database_url: str) -> None:
    code = post(
        o311,
        key,
        service_code="noise",
        address_string="K12 Núi Thành, P. Hòa Cường Bắc, Q. Hải Châu",
        description="Karaoke",
    ).json()[0]["service_request_id"]
    with psycopg.connect(database_url) as conn:
        unit = conn.execute(
            "SELECT t.unit_id FROM tickets t JOIN ticket_reports r ON r.ticket_id = t.id WHERE r.code = %s", (code,)
        ).fetchone()[0]
    assert unit == "hoa-cuong"


def test_discovery_says_where_the_endpoint_is(o311: httpx.Client) -> None:
    body = o311.get("/discovery.json").json()
    assert body["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert etree.fromstring(o311.get("/discovery.xml").content).findtext("endpoints/endpoint/type") == "production"
