"""The open-data catalogue against the real API and database: one graph in JSON-LD, Turtle and
RDF/XML; conformant to the DCAT-AP 3 shapes (SEMIC's SHACL, no inference); a dataset per sensor
kind the public sees, and every download it names answering with its media type; the NGSI-LD
service answering; and the open readings it distributes, with their refusals."""

import csv
import io
from collections.abc import Iterator
from datetime import datetime, time, timedelta

import httpx
import psycopg
import pyshacl
import pytest
from rdflib import Graph, Namespace, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCTERMS, RDF

from ingest.maintenance import roll_up
from ioc_core.settings import Settings
from ioc_core.working_days import VIETNAM
from tests.support import Service

DCAT = Namespace("http://www.w3.org/ns/dcat#")  # rdflib's own warns when pytest looks into it
SHAPES = Settings().shared_dir / "interop" / "dcat-ap" / "dcat-ap-3.0.0-SHACL.ttl"
IANA = "http://www.iana.org/assignments/media-types/"
CSV_HEADER = "time,sensor_id,unit_id,metric,mean,min,max,samples"
# (id, kind, unit, extra columns): the public ones, a drill's and a partner's of the same kind,
# and a kind that only a drill has.
SENSORS = [
    ("cat-air-1", "air_quality", "hai-chau", {}),
    ("cat-air-2", "air_quality", "hoa-cuong", {}),
    ("cat-water-1", "water_level", "hai-chau", {}),
    ("cat-air-drill", "air_quality", "hai-chau", {"exercise": True}),
    ("cat-air-partner", "air_quality", "hai-chau", {"tenant": "cat-partner"}),
    ("cat-drill-only", "cat_drill_kind", "hai-chau", {"exercise": True}),
]
HIDDEN = {"cat-air-drill", "cat-air-partner", "cat-drill-only"}


def _days() -> list:
    """Yesterday and today in the city: the day a download names by default is one of them,
    whenever it is fetched."""
    today = datetime.now(VIETNAM).date()
    return [today - timedelta(days=1), today]


@pytest.fixture(scope="module")
def open_city(database_url: str) -> dict[str, object]:
    """Sensors with readings at 10:00, 10:20 and 10:40 (city time) yesterday and today, rolled up;
    and a public alert (its rule public)."""
    with psycopg.connect(database_url, autocommit=True) as db:
        for sensor_id, kind, unit, extra in SENSORS:
            columns = ["id", "kind", "name", "unit_id", "lat", "lon", *extra]
            db.execute(
                f"INSERT INTO sensors ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                [sensor_id, kind, f"Station {sensor_id}", unit, 16.06, 108.22, *extra.values()],
            )
        minutes = []
        for day in _days():
            ten = datetime.combine(day, time(10), VIETNAM)
            for sensor_id, *_ in SENSORS:
                for step, value in enumerate((10.0, 20.0, 60.0)):
                    at = ten + timedelta(minutes=20 * step)
                    metric = "level_m" if "water" in sensor_id else "pm25"
                    db.execute("INSERT INTO readings VALUES (%s, %s, %s, %s)", (at, sensor_id, metric, value))
                    db.execute(
                        "INSERT INTO latest VALUES (%s, %s, %s, %s) ON CONFLICT (sensor_id, metric) DO UPDATE"
                        " SET time = greatest(latest.time, EXCLUDED.time)",
                        (sensor_id, metric, at, value),
                    )
                    minutes.append(at.replace(second=0, microsecond=0))
        with db.cursor() as cur:
            cur.executemany("INSERT INTO rollup_dirty (minute) VALUES (%s)", [(m,) for m in minutes])
        roll_up(db)
        rule = db.execute(
            "INSERT INTO rules (name, type, sensor_kind, metric, severity, params, public)"
            " VALUES ('cat PM2.5 high', 'threshold', 'air_quality', 'pm25', 'major', '{\"above\": 50}', true)"
            " RETURNING id"
        ).fetchone()[0]
        alert = db.execute(
            "INSERT INTO alerts (rule_id, unit_id, source_type, source_id, severity, title, lat, lon)"
            " VALUES (%s, 'hai-chau', 'sensor', 'cat-air-1', 'major', 'cat PM2.5 high', 16.06, 108.22) RETURNING id",
            (rule,),
        ).fetchone()[0]
        kinds = db.execute(
            "SELECT DISTINCT kind FROM sensors WHERE registered AND NOT exercise AND tenant IS NULL"
        ).fetchall()
        tickets = db.execute("SELECT count(*) FROM tickets WHERE NOT exercise").fetchone()[0]
    return {"alert": alert, "kinds": {k for (k,) in kinds}, "tickets": tickets}


@pytest.fixture(scope="module")
def site(api: Service) -> Iterator[httpx.Client]:
    """The API at its root, without credentials: what a harvester sees."""
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def catalogue(site: httpx.Client, open_city: dict) -> Graph:
    response = site.get("/api/v1/open-data/catalogue")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/ld+json")
    return Graph().parse(data=response.text, format="json-ld")


def _datasets(graph: Graph) -> dict[str, URIRef]:
    return {str(graph.value(ds, DCTERMS.identifier)): ds for ds in graph.subjects(RDF.type, DCAT.Dataset)}


def test_catalogue_is_one_graph_in_json_ld_turtle_and_rdf_xml(site: httpx.Client, catalogue: Graph) -> None:
    turtle = site.get("/api/v1/open-data/catalogue", headers={"Accept": "text/turtle"})
    assert turtle.status_code == 200 and turtle.headers["content-type"].startswith("text/turtle")
    assert "Accept" in turtle.headers["vary"]
    by_param = site.get("/api/v1/open-data/catalogue", params={"format": "ttl"}, headers={"Accept": "application/json"})
    assert by_param.headers["content-type"].startswith("text/turtle")
    preferred = site.get("/api/v1/open-data/catalogue", headers={"Accept": "text/turtle;q=0.5, application/ld+json"})
    assert preferred.headers["content-type"].startswith("application/ld+json")
    rdf_xml = site.get("/api/v1/open-data/catalogue", params={"format": "rdf"})
    assert rdf_xml.headers["content-type"].startswith("application/rdf+xml")
    forms = [
        Graph().parse(data=turtle.text, format="turtle"),
        Graph().parse(data=by_param.text, format="turtle"),
        Graph().parse(data=rdf_xml.text, format="xml"),
    ]
    assert len(catalogue) > 100
    for form in forms:
        assert len(form) == len(catalogue)
        assert isomorphic(form, catalogue)
    bad = site.get("/api/v1/open-data/catalogue", params={"format": "html"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


def test_catalogue_conforms_to_dcat_ap_3(catalogue: Graph) -> None:
    shapes = Graph().parse(SHAPES, format="turtle")
    conforms, _, text = pyshacl.validate(catalogue, shacl_graph=shapes, inference="none", allow_warnings=True)
    assert conforms, text


def test_a_dataset_per_public_kind_and_the_other_open_data(catalogue: Graph, open_city: dict) -> None:
    datasets = _datasets(catalogue)
    kinds = {key.removeprefix("danang-ioc/readings/") for key in datasets if key.startswith("danang-ioc/readings/")}
    assert kinds == open_city["kinds"]
    assert {"air_quality", "water_level"} <= kinds and "cat_drill_kind" not in kinds
    assert {"danang-ioc/public-alerts", "danang-ioc/response-times"} <= set(datasets)
    assert ("danang-ioc/civic-sprint" in datasets) == (open_city["tickets"] > 0)
    (cat,) = catalogue.subjects(RDF.type, DCAT.Catalog)
    assert set(catalogue.objects(cat, DCAT.dataset)) == set(datasets.values())
    boxes = {str(catalogue.value(place, DCAT.bbox)) for place in catalogue.objects(cat, DCTERMS.spatial)}
    assert any(box.startswith("POLYGON((107.2") for box in boxes), boxes  # the seeded city boundary's
    # The span of the air readings holds the hours put in (others' readings may widen it).
    air = datasets["danang-ioc/readings/air_quality"]
    period = catalogue.value(air, DCTERMS.temporal)
    start = catalogue.value(period, DCAT.startDate).toPython()
    end = catalogue.value(period, DCAT.endDate).toPython()
    first, last = (datetime.combine(d, time(10), VIETNAM) for d in _days())
    assert start <= first and end >= last + timedelta(minutes=40)


def test_every_download_answers_with_its_media_type(site: httpx.Client, catalogue: Graph) -> None:
    distributions = list(catalogue.subjects(RDF.type, DCAT.Distribution))
    assert len(distributions) >= 8
    fetched = 0
    for dist in distributions:
        download = catalogue.value(dist, DCAT.downloadURL)
        url = str(download or catalogue.value(dist, DCAT.accessURL))
        assert url.startswith(str(site.base_url)), url  # made from the host asked
        response = site.get(url)
        assert response.status_code == 200, (url, response.text[:300])
        if download is not None:
            media = str(catalogue.value(dist, DCAT.mediaType))
            assert media == IANA + response.headers["content-type"].split(";")[0], url
            fetched += 1
    assert fetched >= 6


def test_the_readings_csv_has_the_hours_of_public_sensors_only(site: httpx.Client, catalogue: Graph) -> None:
    air = _datasets(catalogue)["danang-ioc/readings/air_quality"]
    (csv_url,) = (
        catalogue.value(d, DCAT.downloadURL)
        for d in catalogue.objects(air, DCAT.distribution)
        if str(catalogue.value(d, DCTERMS.format)).endswith("/CSV")
    )
    response = site.get(str(csv_url))
    assert response.text.splitlines()[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(response.text)))
    ours = [r for r in rows if r["sensor_id"].startswith("cat-")]
    assert {r["sensor_id"] for r in ours} == {"cat-air-1", "cat-air-2"}  # no drill's, no partner's
    row = next(r for r in ours if r["sensor_id"] == "cat-air-1")
    assert row["time"].endswith("T10:00:00+07:00") and row["unit_id"] == "hai-chau" and row["metric"] == "pm25"
    assert (float(row["mean"]), float(row["min"]), float(row["max"]), int(row["samples"])) == (30, 10, 60, 3)


def test_readings_of_a_named_day_as_json(site: httpx.Client, open_city: dict) -> None:
    yesterday = _days()[0]
    response = site.get("/api/v1/open-data/readings", params={"kind": "water_level", "date": yesterday.isoformat()})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    ours = [r for r in response.json() if r["sensor_id"] == "cat-water-1"]
    assert ours == [
        {
            "time": f"{yesterday.isoformat()}T10:00:00+07:00",
            "sensor_id": "cat-water-1",
            "unit_id": "hai-chau",
            "metric": "level_m",
            "mean": 30,
            "min": 10,
            "max": 60,
            "samples": 3,
        }
    ]
    old_day = {"kind": "water_level", "date": "2001-01-01", "format": "csv"}
    empty = site.get("/api/v1/open-data/readings", params=old_day)
    assert empty.status_code == 200 and empty.text.strip() == CSV_HEADER


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"kind": "volcano"},
        {"kind": "cat_drill_kind"},  # only a drill has it
        {"kind": "air_quality", "date": "2026-13-01"},
        {"kind": "air_quality", "date": "1999-12-31"},
        {"kind": "air_quality", "format": "xml"},
    ],
)
def test_readings_refusals_are_problems(site: httpx.Client, open_city: dict, params: dict) -> None:
    response = site.get("/api/v1/open-data/readings", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]


def test_the_ngsi_ld_service_answers(site: httpx.Client, catalogue: Graph) -> None:
    (service,) = catalogue.subjects(RDF.type, DCAT.DataService)
    endpoint = str(catalogue.value(service, DCAT.endpointURL))
    types = site.get(f"{endpoint}/types")
    assert types.status_code == 200 and types.json()
    assert "AirQualityObserved" in str(types.json())
    served = set(catalogue.objects(service, DCAT.servesDataset))
    assert served == {ds for key, ds in _datasets(catalogue).items() if key.startswith("danang-ioc/readings/")}
    assert site.get(str(catalogue.value(service, DCAT.endpointDescription))).json()["openapi"]


def test_links_follow_the_host_asked(site: httpx.Client, open_city: dict) -> None:
    host = {"Host": "data.danang.example"}
    response = site.get("/api/v1/open-data/catalogue", params={"format": "ttl"}, headers=host)
    graph = Graph().parse(data=response.text, format="turtle")
    links = {str(o) for o in graph.objects(None, DCAT.downloadURL)}
    assert links and all(link.startswith("http://data.danang.example/api/v1/") for link in links)
