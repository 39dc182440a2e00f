"""Citizens' reports in headless Chromium: a citizen files one from a phone with a photo, the ward
room shows it at once, the ward accepts and resolves it with a photo of the work, and the tracking
page shows it resolved; a second citizen's report of the same thing joins it; another ward sees
none of it. A hotline operator enters a call in under a minute, the address as the caller says it."""

import io
import re
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from ioc_api.cli import create_user
from tests.dashboards.test_screen import csp_violations, on_console, open_screen
from tests.support import ARTIFACTS, Service

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
SPOT = (16.0712, 108.2174)  # in Hải Châu
SHOWN_WITHIN_MS = 2000


@pytest.fixture(autouse=True)
def within_the_content_security_policy() -> Iterator[None]:
    """The public pages work under the screen's policy too."""
    csp_violations.clear()
    yield
    assert csp_violations == []


def photo(colour: tuple[int, int, int]) -> dict:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(out, "JPEG")
    return {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": out.getvalue()}


def file_from_phone(browser: Browser, api: Service, at: tuple[float, float], text: str) -> Page:
    page = browser.new_context(**PHONE).new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda e: print("pageerror:", e))
    page.goto(f"http://127.0.0.1:{api.port}/report.html")
    page.wait_for_function("() => window.ioc && document.querySelectorAll('#category option').length > 5")
    page.select_option("#category", "lighting")
    page.evaluate("([lat, lon]) => window.ioc.place(lat, lon)", list(at))  # as a tap on the map
    page.fill("#description", text)
    page.set_input_files("#photo", [photo((30, 30, 30))])
    page.fill("input[name=contact_phone]", "0905777888")
    page.click("#send")
    page.wait_for_function("() => document.getElementById('code').textContent.startsWith('DN')", timeout=30_000)
    return page


def ticket_item(room: Page, text: str):
    return room.locator("#tickets li", has_text=text)


def test_a_report_from_a_phone_reaches_its_ward_is_resolved_with_a_photo_and_its_citizen_sees_it(
    browser: Browser, api: Service, tokens: dict[str, str]
) -> None:
    room = open_screen(browser, api, "hai_chau")
    other = open_screen(browser, api, "hoa_cuong")
    citizen = file_from_phone(browser, api, SPOT, "Đèn đường tắt cả dãy phố")
    filed_at = time.monotonic()
    code = citizen.locator("#code").text_content()
    expect(ticket_item(room, "Đèn đường tắt cả dãy phố")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    assert time.monotonic() - filed_at < SHOWN_WITHIN_MS / 1000 + 0.5
    assert room.evaluate("window.ioc.stats().ticketCues") >= 1
    citizen.screenshot(path=str(ARTIFACTS / "report-phone.png"))

    second = file_from_phone(browser, api, (SPOT[0] + 0.0002, SPOT[1]), "Cả đoạn đường tối om")
    expect(second.locator("#joined")).to_be_visible()
    expect(ticket_item(room, "Đèn đường tắt cả dãy phố")).to_contain_text("2 người", timeout=10_000)

    item = ticket_item(room, "Đèn đường tắt cả dãy phố")
    item.locator("button[data-step='accept']").click()
    expect(ticket_item(room, "Đèn đường tắt cả dãy phố")).to_have_attribute("data-state", "accepted", timeout=10_000)
    ticket_item(room, "Đèn đường tắt cả dãy phố").locator("button[data-step='resolve']").click()
    form = room.locator("#tickets form.resolve")
    form.locator("textarea").fill("Đã thay bộ đèn")
    form.locator("input[type=file]").set_input_files([photo((240, 220, 90))])
    form.locator("button[type=submit]").click()
    expect(ticket_item(room, "Đèn đường tắt cả dãy phố")).to_have_count(0, timeout=10_000)  # no longer open

    track = browser.new_context(**PHONE).new_page()
    track.on("console", on_console)
    track.goto(f"http://127.0.0.1:{api.port}/track.html?code={code}")
    expect(track.locator("#state")).to_have_attribute("data-state", "resolved", timeout=10_000)
    expect(track.locator("#steps")).to_contain_text("Đã thay bộ đèn")
    expect(track.locator("#photos img")).to_have_count(1)  # the resolution's; not the reporters'
    assert "0905777888" not in track.content()
    track.screenshot(path=str(ARTIFACTS / "track-phone.png"))

    assert ticket_item(other, "Đèn đường tắt cả dãy phố").count() == 0  # another ward's
    for page in (room, other, citizen, second, track):
        page.context.close()


def test_a_hotline_operator_enters_a_call_with_a_former_address_and_sees_the_report_it_repeats(
    browser: Browser, api: Service, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, "e2e-hotline", "hotline_operator", [], "pw-e2e-hotline")
    hoa_cuong = (16.038544573026545, 108.22187291569671)  # its people's committee, where an address puts a report
    earlier = httpx.post(
        f"http://127.0.0.1:{api.port}/api/v1/public/reports",
        data={"category": "noise", "description": "Karaoke hàng xóm", "lat": hoa_cuong[0], "lon": hoa_cuong[1]},
    ).json()
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("console", on_console)
    page.goto(f"http://127.0.0.1:{api.port}/hotline.html")
    page.fill("#username", "e2e-hotline")
    page.fill("#password", "pw-e2e-hotline")
    page.click("#login-button")
    page.wait_for_function("() => document.querySelectorAll('#category option').length > 5")
    started = time.monotonic()
    page.fill("#caller_phone", "0935111222")
    page.select_option("#category", "noise")
    page.fill("#address", "Kiệt 12 Núi Thành, P. Hòa Cường Bắc, Q. Hải Châu")  # as the caller says it
    expect(page.locator("#places option[value='Hòa Cường']")).to_have_count(1)
    page.fill("#address", "Hòa Cường")  # the suggestion taken
    expect(page.locator("#near")).to_contain_text(f"#{earlier['ticket_id']}")  # the duplicate it may be
    page.fill("#description", "Hát karaoke đến nửa đêm")
    page.click("#send")
    expect(page.locator("#code")).to_have_text(re.compile(r"^DN[2-9A-Z]{8}$"))
    assert time.monotonic() - started < 60
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT t.id, t.unit_id, r.contact_phone, r.entered_by FROM ticket_reports r JOIN tickets t"
            " ON t.id = r.ticket_id WHERE r.code = %s",
            (page.locator("#code").text_content(),),
        ).fetchone()
    assert row == (earlier["ticket_id"], "hoa-cuong", "0935111222", "e2e-hotline")  # joined, its number kept
    page.context.close()
