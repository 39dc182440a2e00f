"""The CAP 1.2 feed of public alerts: open data, no token needed."""

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from psycopg.rows import class_row

from ioc_api.cap import ATOM_NS, CAP_NS, PublicAlert, atom_feed, cap_alert, to_xml
from ioc_api.deps import OpenDb
from ioc_api.problems import PROBLEM_RESPONSES, Problem

router = APIRouter(prefix="/open-data", tags=["open data"], responses=PROBLEM_RESPONSES)

_SELECT = """
SELECT a.id, a.state, a.severity, a.title, r.name AS rule_name, r.reference, r.sensor_kind, a.source_type,
       a.unit_id, u.name AS unit_name, a.lat, a.lon, a.opened_at, a.resolved_at, a.last_value, a.peak_value,
       a.exercise
FROM alerts a JOIN rules r ON r.id = a.rule_id AND r.public JOIN units u ON u.id = a.unit_id
"""


@router.get(
    "/cap.atom",
    summary="Active public alerts: an Atom feed whose entries link to CAP 1.2 documents",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {}}}},
)
async def cap_feed(db: OpenDb, request: Request) -> Response:
    async with db.cursor(row_factory=class_row(PublicAlert)) as cur:
        await cur.execute(_SELECT + " WHERE a.state <> 'resolved' ORDER BY a.opened_at DESC LIMIT 500")
        alerts = await cur.fetchall()
    base = str(request.url_for("cap_feed")).removesuffix("/cap.atom")
    feed = atom_feed(alerts, request.app.state.settings.cap_sender, base, datetime.now(UTC))
    return Response(to_xml(feed, ATOM_NS), media_type="application/atom+xml")


@router.get(
    "/cap/{alert_id}.xml",
    summary="One public alert as a CAP 1.2 document (a Cancel once resolved)",
    response_class=Response,
    responses={200: {"content": {"application/cap+xml": {}}}},
)
async def cap_document(alert_id: int, db: OpenDb, request: Request) -> Response:
    async with db.cursor(row_factory=class_row(PublicAlert)) as cur:
        await cur.execute(_SELECT + " WHERE a.id = %s", (alert_id,))
        alert = await cur.fetchone()
    if alert is None:
        raise Problem(404, f"no public alert {alert_id}")
    document = cap_alert(alert, request.app.state.settings.cap_sender)
    return Response(to_xml(document, CAP_NS), media_type="application/cap+xml")
