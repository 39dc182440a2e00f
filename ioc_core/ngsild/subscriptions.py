"""NGSI-LD subscriptions: a consumer's body checked and compiled into what the notifier matches
changed entities against, and the notification it is sent.

A subscription is kept as its owner gave it, with the owner's ``@context``: its names are
translated when it is compiled, so that its answers and notifications speak the owner's terms.
Notifications follow the values ingest stores (observations and devices, the city's and the
partners'); periodic notifications (``timeInterval``) are not offered.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from ioc_core.ngsild.access import Viewer
from ioc_core.ngsild.entities import KIND_OF_TYPE, Entity, iso, parse_iso
from ioc_core.ngsild.jsonld import CORE_URL, Translation
from ioc_core.ngsild.present import present
from ioc_core.ngsild.query import QueryError, Selection, id_pattern, parse_geo, parse_q, rename

# What changes with the stored values: the observations of every model, and the devices.
NOTIFIED_TYPES = frozenset({*KIND_OF_TYPE, "Device"})
FORMATS = ("normalized", "keyValues", "concise")
ACCEPTS = ("application/json", "application/ld+json")
EDITABLE = frozenset(
    {
        "entities",
        "watchedAttributes",
        "q",
        "geoQ",
        "notification",
        "expiresAt",
        "throttling",
        "isActive",
        "description",
        "subscriptionName",
        "@context",
    }
)
_FIELDS = EDITABLE | {"id", "type"}
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")


class SubscriptionError(ValueError):
    """A subscription that cannot be kept as given (a BadRequestData)."""


def new_id() -> str:
    return f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"


def parse_time(name: str, raw: Any) -> datetime:
    t = parse_iso(raw)
    if t is None:
        raise SubscriptionError(f"{name} {raw!r} is not an ISO 8601 date and time")
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _names(field: str, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) and n for n in raw):
        raise SubscriptionError(f"{field} is a non-empty list of attribute names")
    return raw


@dataclass(slots=True)
class Endpoint:
    uri: str
    accept: str
    headers: dict[str, str]


@dataclass(slots=True)
class Compiled:
    """A subscription ready to match: everything in the IOC's names, its owner's view, and its
    notifications' shape in the owner's terms."""

    id: str
    tenant: str
    viewer: Viewer
    selectors: list[Selection]
    watched: frozenset[str] | None
    condition: Selection  # q and geoQ
    attrs: frozenset[str] | None
    form: str
    endpoint: Endpoint
    throttling_s: float
    expires_at: datetime | None
    active: bool
    terms: Translation
    context: Any

    def live(self, now: datetime) -> bool:
        return self.active and (self.expires_at is None or self.expires_at > now)

    def matches(self, entity: Entity, changed: frozenset[str]) -> bool:
        if not any(s.matches(entity) for s in self.selectors):
            return False
        if self.watched is not None and self.watched.isdisjoint(changed):
            return False
        return self.condition.matches(entity) and self.viewer.sees(entity)

    def notification(self, entities: list[Entity], now: datetime) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one notification of ``entities``."""
        data = [present(e, self.terms, self.form, self.attrs) for e in entities]
        headers = {"Content-Type": self.endpoint.accept, **self.endpoint.headers}
        if self.endpoint.accept == "application/ld+json":
            data = [{**d, "@context": self.context or CORE_URL} for d in data]
        elif isinstance(self.context, str):  # an inline context cannot travel in a header
            link = f'<{self.context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
            headers["Link"] = link
        body = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "Notification",
            "subscriptionId": self.id,
            "notifiedAt": iso(now),
            "data": data,
        }
        return orjson.dumps(body), headers


def check(body: Any, terms: Translation, now: datetime, *, partial: bool = False) -> dict[str, Any]:
    """``body`` checked (a whole subscription, or the fields of an update when ``partial``);
    refusals name the field. Returns it without the fields that are the server's."""
    if not isinstance(body, dict):
        raise SubscriptionError("a subscription is a JSON object")
    unknown = set(body) - _FIELDS - {"status", "timesSent", "timesFailed", "createdAt", "modifiedAt"}
    if "timeInterval" in unknown:
        raise SubscriptionError("timeInterval: periodic notifications are not offered here, only changes")
    if unknown:
        raise SubscriptionError(f"{', '.join(sorted(unknown))}: not a field of a subscription here")
    if not partial:
        if body.get("type") != "Subscription":
            raise SubscriptionError("type is Subscription")
        if "entities" not in body and "watchedAttributes" not in body:
            raise SubscriptionError("a subscription names entities or watchedAttributes")
        if "notification" not in body:
            raise SubscriptionError("notification says where and how to notify")
    if "id" in body and (not isinstance(body["id"], str) or ":" not in body["id"]):
        raise SubscriptionError("id is a URI")
    kept = {k: v for k, v in body.items() if k in EDITABLE and k != "@context"}
    compile_parts(kept, terms, now, check_expiry=True)
    return kept


def compile_parts(body: dict[str, Any], terms: Translation, now: datetime | None = None, check_expiry: bool = False):
    """The parts of a subscription in the IOC's names; raises SubscriptionError on any that are wrong."""
    selectors: list[Selection] = []
    for item in body.get("entities") or ([] if "entities" not in body else [None]):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise SubscriptionError("each of entities is an object with a type")
        entity_type = terms.to_ioc(item["type"])
        if entity_type not in NOTIFIED_TYPES:
            known = ", ".join(sorted(terms.to_caller(t) for t in NOTIFIED_TYPES))
            raise SubscriptionError(f"entities: {item['type']!r} does not change with stored values; these do: {known}")
        selector = Selection(types=frozenset({entity_type}))
        if "id" in item:
            if not isinstance(item["id"], str) or ":" not in item["id"]:
                raise SubscriptionError("entities: an id is a URI")
            selector.ids = frozenset({item["id"]})
        if "idPattern" in item:
            try:
                selector.id_pattern = id_pattern(str(item["idPattern"]))
            except QueryError as exc:
                raise SubscriptionError(f"entities: {exc}") from exc
        selectors.append(selector)
    if not selectors:
        selectors.append(Selection())
    watched = None
    if "watchedAttributes" in body:
        watched = frozenset(terms.to_ioc(n) for n in _names("watchedAttributes", body["watchedAttributes"]))
    condition = Selection()
    try:
        if (q := body.get("q")) is not None:
            if not isinstance(q, str):
                raise SubscriptionError("q is a query string")
            condition.q = parse_q(q)
            rename(condition.q, terms.to_ioc)
        if (geo := body.get("geoQ")) is not None:
            if not isinstance(geo, dict):
                raise SubscriptionError("geoQ is an object with georel, geometry and coordinates")
            coordinates = geo.get("coordinates")
            if isinstance(coordinates, list):
                coordinates = orjson.dumps(coordinates).decode()
            geoproperty = terms.to_ioc(geo["geoproperty"]) if geo.get("geoproperty") else None
            condition.geo = parse_geo(str(geo.get("georel", "")), geo.get("geometry"), coordinates, geoproperty)
    except QueryError as exc:
        raise SubscriptionError(str(exc)) from exc
    notification = body.get("notification", {}) if "notification" in body else None
    endpoint, attrs, form = None, None, "normalized"
    if notification is not None:
        endpoint, attrs, form = _notification(notification, terms)
    expires = None
    if body.get("expiresAt") is not None:
        expires = parse_time("expiresAt", body["expiresAt"])
        if check_expiry and now is not None and expires <= now:
            raise SubscriptionError("expiresAt is in the past")
    throttling = body.get("throttling", 0)
    if not isinstance(throttling, int | float) or isinstance(throttling, bool) or throttling < 0:
        raise SubscriptionError("throttling is a number of seconds, 0 or more")
    if "isActive" in body and not isinstance(body["isActive"], bool):
        raise SubscriptionError("isActive is true or false")
    for text in ("description", "subscriptionName"):
        if text in body and not isinstance(body[text], str):
            raise SubscriptionError(f"{text} is a string")
    return selectors, watched, condition, endpoint, attrs, form, expires, float(throttling)


def _notification(raw: Any, terms: Translation) -> tuple[Endpoint, frozenset[str] | None, str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("endpoint"), dict):
        raise SubscriptionError("notification has an endpoint")
    endpoint = raw["endpoint"]
    uri = endpoint.get("uri")
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise SubscriptionError("notification.endpoint.uri is an http or https URL (MQTT endpoints are not offered)")
    accept = endpoint.get("accept", "application/json")
    if accept not in ACCEPTS:
        raise SubscriptionError(f"notification.endpoint.accept is one of {', '.join(ACCEPTS)}")
    headers = {}
    for info in endpoint.get("receiverInfo", []) or []:
        key, value = (info.get("key"), info.get("value")) if isinstance(info, dict) else (None, None)
        if not isinstance(key, str) or not _HEADER.match(key) or not isinstance(value, str):
            raise SubscriptionError("notification.endpoint.receiverInfo holds {key, value} pairs: HTTP headers")
        if not (value.isascii() and value.isprintable()):
            raise SubscriptionError(f"notification.endpoint.receiverInfo: {key}'s value is printable ASCII")
        headers[key] = value
    form = raw.get("format", "normalized")
    form = "keyValues" if form == "simplified" else form
    if form not in FORMATS:
        raise SubscriptionError(f"notification.format is one of {', '.join(FORMATS)}")
    attrs = None
    if "attributes" in raw:
        attrs = frozenset(terms.to_ioc(n) for n in _names("notification.attributes", raw["attributes"]))
    return Endpoint(uri, accept, headers), attrs, form


def compile_subscription(
    sub_id: str, tenant: str, viewer: Viewer, body: dict[str, Any], terms: Translation, context: Any, active: bool
) -> Compiled:
    selectors, watched, condition, endpoint, attrs, form, expires, throttling = compile_parts(body, terms)
    assert endpoint is not None
    return Compiled(
        sub_id,
        tenant,
        viewer,
        selectors,
        watched,
        condition,
        attrs,
        form,
        endpoint,
        throttling,
        expires,
        active,
        terms,
        context,
    )


def status_of(active: bool, expires_at: datetime | None, now: datetime) -> str:
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active" if active else "paused"
