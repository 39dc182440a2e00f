"""Active public alerts in OASIS Common Alerting Protocol 1.2, so national and third-party warning
systems can take them: one CAP ``alert`` document per alert, listed in an Atom feed (the form
public alert aggregators read)."""

from dataclasses import dataclass
from datetime import datetime
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from ioc_api.response_times import CITY_TIMEZONE

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
_ZONE = ZoneInfo(CITY_TIMEZONE)

# CAP categories by sensor kind ("Met" covers floods); cameras watch traffic.
_CATEGORY = {
    "air_quality": "Env",
    "noise": "Env",
    "water_level": "Met",
    "rainfall": "Met",
    "traffic": "Transport",
    "parking": "Transport",
    "camera": "Transport",
}
# Our severities on CAP's; critical is Severe, not Extreme: a sensor limit, not a confirmed disaster.
_SEVERITY = {"critical": "Severe", "major": "Moderate", "minor": "Minor", "info": "Unknown"}
_URGENCY = {"critical": "Immediate", "major": "Expected", "minor": "Future", "info": "Unknown"}


@dataclass
class PublicAlert:
    id: int
    state: str
    severity: str
    title: str
    rule_name: str
    reference: str | None
    sensor_kind: str | None
    source_type: str
    unit_id: str
    unit_name: str
    lat: float | None
    lon: float | None
    opened_at: datetime
    resolved_at: datetime | None
    last_value: float | None
    peak_value: float | None
    exercise: bool = False  # a drill's: CAP status Exercise


def cap_time(t: datetime) -> str:
    """CAP's dateTime: local time with its offset, never "Z"."""
    return t.astimezone(_ZONE).isoformat(timespec="seconds")


def identifier(alert: PublicAlert, sender: str) -> str:
    host = sender.rsplit("@", 1)[-1]
    return f"urn:ioc:{host}:alert:{alert.id}"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def cap_alert(alert: PublicAlert, sender: str) -> ET.Element:
    """An active alert is an ``Alert``; a resolved one a ``Cancel`` that references it."""
    root = ET.Element(f"{{{CAP_NS}}}alert")
    first_id = identifier(alert, sender)
    resolved = alert.resolved_at is not None
    _sub(root, "identifier", f"{first_id}:cancel" if resolved else first_id)
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(alert.resolved_at or alert.opened_at))
    _sub(root, "status", "Exercise" if alert.exercise else "Actual")
    _sub(root, "msgType", "Cancel" if resolved else "Alert")
    _sub(root, "scope", "Public")
    if resolved:
        _sub(root, "references", f"{sender},{first_id},{cap_time(alert.opened_at)}")
    info = _sub(root, "info")
    _sub(info, "language", "vi-VN")
    _sub(info, "category", _CATEGORY.get(alert.sensor_kind or alert.source_type, "Other"))
    _sub(info, "event", alert.rule_name)
    _sub(info, "urgency", "Past" if resolved else _URGENCY[alert.severity])
    _sub(info, "severity", _SEVERITY[alert.severity])
    _sub(info, "certainty", "Observed")
    _sub(info, "effective", cap_time(alert.opened_at))
    _sub(info, "senderName", "Da Nang Intelligent Operations Centre")
    _sub(info, "headline", alert.title[:160])
    description = alert.rule_name
    if alert.last_value is not None:
        description += f". Last value {alert.last_value:g}"
        if alert.peak_value is not None:
            description += f", peak {alert.peak_value:g}"
    if alert.reference:
        description += f". Reference: {alert.reference}"
    _sub(info, "description", description)
    area = _sub(info, "area")
    _sub(area, "areaDesc", f"{alert.unit_name}, Đà Nẵng")
    if alert.lat is not None and alert.lon is not None:
        _sub(area, "circle", f"{alert.lat:.5f},{alert.lon:.5f} 1.0")  # the sensor or camera, 1 km around
    geocode = _sub(area, "geocode")
    _sub(geocode, "valueName", "ioc_unit")
    _sub(geocode, "value", alert.unit_id)
    return root


def to_xml(element: ET.Element, default_namespace: str) -> bytes:
    ET.register_namespace("", default_namespace)
    return ET.tostring(element, encoding="utf-8", xml_declaration=True)


def atom_feed(alerts: list[PublicAlert], sender: str, base_url: str, now: datetime) -> ET.Element:
    feed = ET.Element(f"{{{ATOM_NS}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    sub(feed, "id", f"{base_url}/cap.atom")
    sub(feed, "title", "Đà Nẵng IOC: active public alerts (CAP 1.2)")
    sub(feed, "updated", cap_time(now))
    sub(sub(feed, "author"), "name", sender)
    sub(feed, "link", rel="self", href=f"{base_url}/cap.atom")
    for alert in alerts:
        entry = sub(feed, "entry")
        sub(entry, "id", identifier(alert, sender))
        sub(entry, "title", alert.title)
        sub(entry, "updated", cap_time(alert.opened_at))
        sub(entry, "summary", f"{alert.rule_name} ({alert.unit_name})")
        sub(entry, "link", rel="alternate", type="application/cap+xml", href=f"{base_url}/cap/{alert.id}.xml")
    return feed
