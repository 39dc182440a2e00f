"""An incident worked to its end in headless Chromium: a flooding report opens a flood incident in
An Hải; the ward room and the city screen are told on the desktop; the ward works the flood SOP's
steps, the city does its own and approves the evacuation, while its screen follows the progress;
then the ward closes it."""

import httpx
import psycopg
from playwright.sync_api import Browser, Page, expect

from ioc_api.cli import create_user
from tests.dashboards.test_screen import on_console
from tests.support import Service

WARD_STEPS = ["confirm", "warn", "block_roads", "evacuate", "report"]


def screen(browser: Browser, api: Service, username: str, password: str) -> Page:
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, permissions=["notifications"])
    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda e: print("pageerror:", e))
    page.on("response", lambda r: r.status >= 400 and print("http:", r.status, r.url))
    page.goto(f"http://127.0.0.1:{api.port}/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_function("() => window.ioc && window.ioc.stats().connection === 'live'", timeout=30_000)
    return page


def incident_item(page: Page, incident_id: int):
    return page.locator(f"#incidents > li[data-incident-id='{incident_id}']")


def test_a_ward_room_works_a_flood_sop_to_the_end_while_the_city_follows(
    browser: Browser, api: Service, ingest: Service, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, "e2e-an-hai", "ward_operator", ["an-hai"], "pw-an-hai")
        create_user(conn, "e2e-city", "city_operator", [], "pw-e2e-city")
        lon, lat = conn.execute("SELECT (committee)[0], (committee)[1] FROM units WHERE id = 'an-hai'").fetchone()
    ward = screen(browser, api, "e2e-an-hai", "pw-an-hai")
    city = screen(browser, api, "e2e-city", "pw-e2e-city")
    report = httpx.post(
        f"http://127.0.0.1:{api.port}/api/v1/public/reports",
        data={"category": "flooding", "description": "Nước ngập qua đầu gối", "lat": lat, "lon": lon},
    ).json()
    ward.wait_for_function("() => window.ioc.stats().incidents > 0", timeout=30_000)
    (incident_id,) = ward.evaluate("window.ioc.stats().incidentIds")
    with psycopg.connect(database_url) as conn:
        held = conn.execute(
            "SELECT incident_id FROM incident_members WHERE member_type = 'ticket' AND member_id = %s",
            (report["ticket_id"],),
        ).fetchone()
    assert held == (incident_id,)
    for page in (ward, city):
        page.wait_for_function("() => window.ioc.stats().desktop > 0", timeout=10_000)  # told on the desktop

    incident_item(ward, incident_id).locator("button[data-action='checklist']").click()
    incident_item(city, incident_id).locator("button[data-action='checklist']").click()
    expect(incident_item(ward, incident_id).locator("li[data-step='pumps'] button")).to_have_count(0)  # the city's
    for done, key in enumerate(WARD_STEPS, start=1):
        step = incident_item(ward, incident_id).locator(f"li[data-step='{key}']")
        step.locator("button[data-action='tick']").click()
        step.locator("form.tick input[name=note]").fill(f"{key}: xong")
        step.locator("form.tick button").click()
        expect(incident_item(ward, incident_id).locator(f"li[data-step='{key}']")).to_have_class("done")
        expect(incident_item(city, incident_id).locator(".state")).to_contain_text(f"{done}/6", timeout=10_000)
    pumps = incident_item(city, incident_id).locator("li[data-step='pumps']")
    pumps.locator("button[data-action='tick']").click()
    pumps.locator("form.tick button").click()
    incident_item(city, incident_id).locator("li[data-step='evacuate'] button[data-action='approve']").click()
    expect(incident_item(city, incident_id).locator("li[data-step='evacuate']")).to_contain_text("e2e-city")
    expect(incident_item(ward, incident_id).locator(".state")).to_contain_text("6/6", timeout=10_000)
    for next_state in ("responding", "stabilised", "closed"):
        incident_item(ward, incident_id).locator(f"button[data-action='{next_state}']").click()
        if next_state != "closed":
            expect(incident_item(ward, incident_id)).to_have_attribute("data-state", next_state, timeout=10_000)
    expect(incident_item(ward, incident_id)).to_have_count(0, timeout=10_000)  # closed: off the screen
    expect(incident_item(city, incident_id)).to_have_count(0, timeout=10_000)
    for page in (ward, city):
        page.context.close()
