"""A unit whose photo storage is full: the report that would pass its quota is refused whole, and
nothing of it is kept (no ticket, no row, no file)."""

import io
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from ioc_api.photos import PhotoStore, clean
from ioc_api.tickets import NewReport, Refused, Tickets
from ioc_core.addresses import Gazetteer
from ioc_core.working_days import WorkingCalendar


async def test_a_report_past_its_units_photo_quota_is_refused_and_nothing_is_kept(
    database_url: str, tmp_path: Path
) -> None:
    out = io.BytesIO()
    Image.new("RGB", (200, 100), (10, 120, 200)).save(out, "PNG")
    photo = clean(out.getvalue(), 1_000_000)
    tickets = Tickets(WorkingCalendar(), Gazetteer([]), PhotoStore(tmp_path), 100, 72, photo_quota_bytes=100)
    report = NewReport(category="other", description="quota", channel="web", lat=16.0637, lon=108.2225)
    async with await psycopg.AsyncConnection.connect(database_url) as db:
        with pytest.raises(Refused) as refused:
            await tickets.file(db, report, [photo], "test")
        await db.rollback()  # as the route's connection does on the refusal
        cur = await db.execute("SELECT count(*) FROM tickets WHERE description = 'quota'")
        assert (await cur.fetchone())[0] == 0
    assert refused.value.status == 507 and "photo storage of unit 'hai-chau' is full" in str(refused.value)
    assert list(tmp_path.iterdir()) == []
