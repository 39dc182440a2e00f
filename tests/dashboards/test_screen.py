"""The IOC screen and the ward room in headless Chromium (Debian's, driven by Playwright) against the
running API, ingest, broker and database: logging in, live alerts, acting on them from two
browsers, what a ward may not see, the languages. Screenshots go to tests.support.ARTIFACTS
(``make screenshots``: docs/screenshots/)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ingest_reloaded
from tests.support import ARTIFACTS, Broker, Service, as_, publish_all, publisher, wait_until

ARRIVES_MS = 20_000  # a bound on a loaded machine, not a speed target: bench/live.py measures that
SENSORS = {  # id: (unit, lat, lon)
    "scr-air-hc-1": ("hai-chau", 16.0600, 108.2200),
    "scr-air-hc-2": ("hai-chau", 16.0560, 108.2150),
    "scr-air-hc-3": ("hai-chau", 16.0620, 108.2180),
    "scr-air-hcg-1": ("hoa-cuong", 16.0190, 108.2200),
}


@pytest.fixture(scope="module")
def screen_data(database_url: str, ingest: Service, tokens: dict[str, str], service_env: dict[str, str]) -> None:
    """The users of the `tokens` fixture, three sensors in two wards and a rule that fires at once."""
    with psycopg.connect(database_url, autocommit=True) as db, db.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, unit_id, lat, lon, interval_s) VALUES (%s, 'scr_air', %s, %s, %s, 60)"
            " ON CONFLICT DO NOTHING",
            [(sid, unit, lat, lon) for sid, (unit, lat, lon) in SENSORS.items()],
        )
        cur.execute(
            "INSERT INTO rules (name, type, sensor_kind, metric, severity, params)"
            " VALUES ('Screen test: PM2.5 above 300', 'threshold', 'scr_air', 'pm25', 'critical', %s)",
            (orjson.dumps({"op": "above", "value": 300, "clear": 250, "for_s": 0}).decode(),),
        )
    ingest_reloaded(int(service_env["IOC_INGEST_METRICS_PORT"]))


csp_violations: list[str] = []


@pytest.fixture(autouse=True)
def within_the_content_security_policy() -> Iterator[None]:
    """The screen works under its own policy: the browser reported nothing it blocked."""
    csp_violations.clear()
    yield
    assert csp_violations == []


def on_console(message) -> None:
    print("console:", message.type, message.text)
    if "Content Security Policy" in message.text:
        csp_violations.append(message.text)


def open_screen(browser: Browser, api: Service, who: str) -> Page:
    page = browser.new_context(viewport={"width": 1600, "height": 900}).new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda e: print("pageerror:", e))
    page.on("response", lambda r: r.status >= 400 and print("http:", r.status, r.url))
    page.goto(f"http://127.0.0.1:{api.port}/")
    page.fill("#username", f"t-{who}")
    page.fill("#password", f"pw-{who}")
    page.click("#login-button")
    page.wait_for_function("() => window.ioc && window.ioc.stats().connection === 'live'", timeout=15000)
    return page


def breach(broker: Broker, sensor_id: str, value: float = 420.0) -> None:
    client = publisher(broker.port)
    payload = orjson.dumps({"values": {"pm25": value}})
    publish_all(client, [(f"ioc/v1/sensors/{sensor_id}/readings", payload)])
    client.disconnect()


def alert_item(page: Page, sensor_id: str, state: str = "open"):
    return page.locator(f"#alerts li[data-state='{state}']", has_text=sensor_id)


def test_a_city_operator_sees_the_city_gets_alerts_live_and_acts_on_them_in_two_browsers(
    browser: Browser, api: Service, broker: Broker, database_url: str, screen_data: None
) -> None:
    city = open_screen(browser, api, "city")
    stats = city.evaluate("window.ioc.stats()")
    assert stats["units"] == 94 and set(SENSORS) <= set(stats["sensorIds"])
    other = open_screen(browser, api, "admin")

    breach(broker, "scr-air-hc-1")
    expect(alert_item(city, "scr-air-hc-1")).to_be_visible(timeout=ARRIVES_MS)
    expect(alert_item(other, "scr-air-hc-1")).to_be_visible(timeout=ARRIVES_MS)

    alert_item(city, "scr-air-hc-1").locator("button[data-action='acknowledge']").click()
    expect(alert_item(other, "scr-air-hc-1", "acknowledged")).to_be_visible(timeout=ARRIVES_MS)
    with psycopg.connect(database_url) as db:
        row = db.execute(
            "SELECT state, acknowledged_by FROM alerts WHERE source_id = 'scr-air-hc-1' AND state <> 'resolved'"
        ).fetchone()
    assert row == ("acknowledged", "t-city")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    city.screenshot(path=str(ARTIFACTS / "city.png"))

    # A sensor's history on a click; the connection cut and resumed without a gap.
    city.wait_for_function("() => window.ioc.valuesOf('scr-air-hc-1').includes('pm25')")
    city.evaluate("() => { window.ioc.open('scr-air-hc-1'); }")
    expect(city.locator("#chart")).to_be_visible()
    expect(city.locator("#chart-plot canvas").first).to_be_visible()
    city.evaluate("() => { window.ioc.drop(); }")
    expect(city.locator("#connection[data-status='reconnecting']")).to_be_visible()
    breach(broker, "scr-air-hc-3")  # while reconnecting: an alert the screen must not miss
    expect(city.locator("#connection[data-status='live']")).to_be_visible(timeout=5000)
    expect(alert_item(city, "scr-air-hc-3")).to_be_visible(timeout=ARRIVES_MS)

    # The language: Vietnamese by default, English on a click, numbers written the English way.
    expect(city.locator("#kpi-open .label")).to_have_text("Cảnh báo đang mở")
    city.click("#lang")
    expect(city.locator("#kpi-open .label")).to_have_text("Open alerts")
    expect(city.locator("#alerts li[data-state='acknowledged'] .state").first).to_contain_text("Acknowledged")
    city.click("#lang")
    for page in (city, other):
        page.context.close()


def test_a_ward_room_sees_its_own_units_only_and_is_cued_on_a_new_alert(
    browser: Browser, api: Service, broker: Broker, screen_data: None
) -> None:
    ward = open_screen(browser, api, "hai_chau")
    city = open_screen(browser, api, "city")
    stats = ward.evaluate("window.ioc.stats()")
    assert "scr-air-hc-2" in stats["sensorIds"] and "scr-air-hcg-1" not in stats["sensorIds"]
    expect(ward.locator("#title")).to_contain_text("Hải Châu")
    expect(ward.locator("#response")).to_be_visible()

    breach(broker, "scr-air-hcg-1")  # another ward's
    expect(alert_item(city, "scr-air-hcg-1")).to_be_visible(timeout=ARRIVES_MS)
    assert alert_item(ward, "scr-air-hcg-1").count() == 0
    assert ward.evaluate("window.ioc.stats().cues") == 0

    breach(broker, "scr-air-hc-2")  # its own
    expect(alert_item(ward, "scr-air-hc-2")).to_be_visible(timeout=ARRIVES_MS)
    wait_until(lambda: ward.evaluate("window.ioc.stats().cues") >= 1, what="the new-alert cue")
    assert ward.evaluate("window.ioc.stats().cues") == 1
    assert alert_item(ward, "scr-air-hcg-1").count() == 0
    # The key figure counts what the panel lists: its own alerts, this one and the earlier test's.
    expect(ward.locator("#kpi-open .value")).to_have_text(str(ward.locator("#alerts li[data-alert-id]").count()))
    ward.screenshot(path=str(ARTIFACTS / "ward.png"))
    for page in (ward, city):
        page.context.close()


def test_a_history_with_a_silent_stretch_shows_a_gap_not_a_line_across_it(
    browser: Browser, api: Service, database_url: str, tokens: dict[str, str], screen_data: None
) -> None:
    """Two hours of a sensor's minutes, an hour and a half of nothing (a camera offline, a sensor
    silent), then an hour: the chart breaks at the silence."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = [now - timedelta(hours=5) + timedelta(minutes=m) for m in range(120)]
    minutes += [now - timedelta(hours=1, minutes=30) + timedelta(minutes=m) for m in range(60)]
    with psycopg.connect(database_url, autocommit=True) as db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO sensors (id, kind, unit_id, lat, lon, interval_s) VALUES ('scr-gap', 'scr_gap', 'hai-chau',"
            " 16.058, 108.21, 60)"
        )
        cur.execute("INSERT INTO latest VALUES ('scr-gap', 'level', %s, 1)", (minutes[-1],))
        cur.executemany(
            "INSERT INTO readings_1m (bucket, sensor_id, metric, avg, min, max, count, last, last_time)"
            " VALUES (%s, 'scr-gap', 'level', 1, 1, 1, 1, 1, %s)",
            [(m, m) for m in minutes],
        )

    def in_latest() -> bool:  # /latest shares a body up to two seconds old: one from before the insert
        body = httpx.get(f"http://127.0.0.1:{api.port}/api/v1/latest", headers=as_(tokens["city"])).json()
        return any(f["id"] == "scr-gap" for f in body["features"])

    wait_until(in_latest, what="the sensor in /latest")
    page = open_screen(browser, api, "city")
    page.wait_for_function("() => window.ioc.valuesOf('scr-gap').includes('level')")
    page.evaluate("() => { window.ioc.open('scr-gap'); }")
    expect(page.locator("#chart-plot canvas").first).to_be_visible()
    chart = page.wait_for_function("() => window.ioc.chart()").json_value()
    gaps = [i for i, y in enumerate(chart["ys"]) if y is None]
    assert len(gaps) == 1  # one silence, one break; none in the stretches with data
    before, after = chart["xs"][gaps[0] - 1], chart["xs"][gaps[0] + 1]
    assert after - before >= 3600
    page.context.close()
