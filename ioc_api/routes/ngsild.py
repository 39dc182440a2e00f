"""NGSI-LD (ETSI GS CIM 009): the IOC's sensors, cameras, alerts and units as entities of the
Smart Data Models; query them, their types and their attributes.

Open to anyone for the open subset (observations, public alerts, units); a token shows what its
role and units allow (``Caller.sees``). The IOC's own context, which gives the Smart Data Models'
short names, is served at ``/ngsi-ld/v1/jsonldContexts/ioc-context.jsonld``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request, Response

from ioc_api.ngsild.protocol import (
    GEO_JSON,
    JSON,
    JSON_LD,
    Caller,
    NgsiError,
    ReadingCaller,
    answer,
    bad_request,
    negotiate,
    not_found,
)
from ioc_core.ngsild.entities import Entity
from ioc_core.ngsild.jsonld import IOC_DOCUMENT, Translation
from ioc_core.ngsild.present import feature, present
from ioc_core.ngsild.query import QueryError, Selection, id_pattern, parse_geo, parse_q, rename
from ioc_core.ngsild.store import Snapshot

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])
MAX_LIMIT = 1000
DEFAULT_LIMIT = 20
_LIST_SPLIT = re.compile(r"[,|;()]")


def _int(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(f"{name} must be an integer, not {raw!r}") from exc
    if value < low or (high is not None and value > high):
        raise bad_request(f"{name} must be between {low} and {high}" if high else f"{name} must be at least {low}")
    return value


def form_of(request: Request) -> tuple[str, bool]:
    """The representation asked for (``options`` or ``format``) and whether sysAttrs are wanted."""
    options = {o for raw in request.query_params.getlist("options") for o in raw.split(",") if o}
    unknown = options - {"keyValues", "concise", "normalized", "sysAttrs", "simplified"}
    if unknown:
        raise bad_request(f"options {', '.join(sorted(unknown))} are not known here")
    form = request.query_params.get("format")
    if form not in (None, "normalized", "keyValues", "simplified", "concise"):
        raise bad_request(f"format {form!r} is not one of normalized, simplified (keyValues), concise")
    form = form or next((o for o in ("keyValues", "simplified", "concise") if o in options), "normalized")
    return ("keyValues" if form == "simplified" else form), "sysAttrs" in options


def _names(caller: Caller, raw: str | None) -> frozenset[str] | None:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise bad_request("attrs is empty")
    return frozenset(caller.terms.to_ioc(n) for n in names)


def selection(request: Request, caller: Caller, need_filter: bool = True) -> Selection:
    """The entities a query names, in the IOC's terms."""
    params = request.query_params
    types = ids = None
    if (raw := params.get("type")) is not None:
        names = [t.strip() for t in _LIST_SPLIT.split(raw) if t.strip()]
        if not names:
            raise bad_request("type is empty")
        types = frozenset(caller.terms.to_ioc(t) for t in names)
    if (raw := params.get("id")) is not None:
        ids = frozenset(i.strip() for i in raw.split(",") if i.strip())
        for entity_id in ids:
            _check_uri(entity_id)
    query = Selection(types=types, ids=ids, attrs=_names(caller, params.get("attrs")))
    try:
        if (raw := params.get("idPattern")) is not None:
            query.id_pattern = id_pattern(raw)
        if (raw := params.get("q")) is not None:
            query.q = parse_q(raw)
            rename(query.q, caller.terms.to_ioc)
        if (raw := params.get("georel")) is not None or params.get("geometry") is not None:
            geoproperty = params.get("geoproperty")
            query.geo = parse_geo(
                raw or "",
                params.get("geometry"),
                params.get("coordinates"),
                caller.terms.to_ioc(geoproperty) if geoproperty else None,
            )
    except QueryError as exc:
        raise bad_request(str(exc)) from exc
    named = (types, ids, query.id_pattern, query.attrs, query.q, query.geo)
    if need_filter and all(n is None for n in named):
        raise bad_request("name a type, attrs, id, idPattern, q or a geo-query: the whole city is not one answer")
    return query


def _check_uri(entity_id: str) -> None:
    if ":" not in entity_id or any(c.isspace() for c in entity_id):
        raise bad_request(f"{entity_id!r} is not a URI")


def check_tenant(caller: Caller, snapshot: Snapshot) -> None:
    tenant = caller.tenant
    if tenant and tenant not in snapshot.tenants and not (caller.principal and caller.principal.tenant == tenant):
        raise NgsiError(404, "NonexistentTenant", f"no tenant {tenant!r}")


async def current(request: Request, caller: Caller) -> Snapshot:
    snapshot = await request.app.state.entities.snapshot()
    check_tenant(caller, snapshot)
    return snapshot


def visible(caller: Caller, entities: list[Entity], query: Selection) -> list[Entity]:
    return [e for e in entities if caller.sees(e) and query.matches(e)]


def render(media: str, bodies: list[dict], geoproperty: str) -> list[dict] | dict:
    if media == GEO_JSON:
        return {"type": "FeatureCollection", "features": [feature(b, geoproperty) for b in bodies]}
    return bodies


@router.get("/entities", summary="Query entities (type, id, idPattern, attrs, q, geo-query, pagination)")
async def query_entities(request: Request, caller: ReadingCaller) -> Response:
    media = negotiate(request, (JSON, JSON_LD, GEO_JSON))
    form, sys_attrs = form_of(request)
    query = selection(request, caller)
    limit = _int(request, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
    offset = _int(request, "offset", 0, 0)
    count = request.query_params.get("count") == "true"
    if limit == 0 and not count:
        raise bad_request("limit=0 answers only with count=true")
    snapshot = await current(request, caller)
    found = visible(caller, snapshot.entities(caller.tenant, query.types), query)
    page = found[offset : offset + limit]
    bodies = [present(e, caller.terms, form, query.attrs, sys_attrs) for e in page]
    headers = {}
    if count:
        headers["NGSILD-Results-Count"] = str(len(found))
    links = []
    if offset + limit < len(found) and limit:
        links.append(_page_link(request, offset + limit, "next"))
    if offset > 0 and limit:
        links.append(_page_link(request, max(0, offset - limit), "prev"))
    if links:
        headers["Link"] = ", ".join(links)
    geoproperty = caller.terms.to_caller(query.geo.geoproperty if query.geo else "location")
    response = answer(caller, media, render(media, bodies, geoproperty), headers=headers)
    if media == JSON and links:  # both links in one header
        response.headers["Link"] = ", ".join([caller.link_header(), *links])
    return response


def _page_link(request: Request, offset: int, rel: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"] + [("offset", str(offset))]
    return f'<{request.url.path}?{urlencode(params)}>; rel="{rel}"'


@router.get("/entities/{entity_id:path}", summary="One entity")
async def retrieve_entity(entity_id: str, request: Request, caller: ReadingCaller) -> Response:
    media = negotiate(request, (JSON, JSON_LD, GEO_JSON))
    _check_uri(entity_id)
    form, sys_attrs = form_of(request)
    names = _names(caller, request.query_params.get("attrs"))
    snapshot = await current(request, caller)
    entity = snapshot.get(caller.tenant, entity_id)
    if entity is None or not caller.sees(entity):
        raise not_found(f"no entity {entity_id!r}")
    body = present(entity, caller.terms, form, names, sys_attrs)
    if media == GEO_JSON:
        geoproperty = request.query_params.get("geoproperty") or "location"
        return answer(caller, media, feature(body, geoproperty))
    return answer(caller, media, body)


def _list_id(kind: str, names: list[str]) -> str:
    return f"urn:ngsi-ld:{kind}:{hashlib.sha256(','.join(names).encode()).hexdigest()[:16]}"


def _named(terms: Translation, name: str, kind: str, key: str) -> dict[str, Any]:
    """The head of a type's or an attribute's description: its IRI, its kind, its name to the caller."""
    shown = terms.to_caller(name)
    return {"id": terms.caller.expand(shown), "type": kind, key: shown}


def _attribute_kinds(entities: list[Entity]) -> dict[str, dict[str, set[str]]]:
    """For each attribute: the attribute types it has and the entity types that have it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"types": set(), "entities": set()})
    for entity in entities:
        for name, attr in entity.attrs.items():
            found[name]["types"].add(attr.get("type", "Property") if isinstance(attr, dict) else "Property")
            found[name]["entities"].add(entity.type)
    return found


@router.get("/types", summary="The entity types, with their attributes when details=true")
async def entity_types(request: Request, caller: ReadingCaller) -> Response:
    media = negotiate(request)
    snapshot = await current(request, caller)
    seen = [e for e in snapshot.entities(caller.tenant) if caller.sees(e)]
    by_type: dict[str, set[str]] = defaultdict(set)
    for entity in seen:
        by_type[entity.type].update(entity.attrs)
    terms = caller.terms
    if request.query_params.get("details") == "true":
        body: list | dict = [
            {
                **_named(terms, t, "EntityType", "typeName"),
                "attributeNames": sorted(terms.to_caller(a) for a in attrs),
            }
            for t, attrs in sorted(by_type.items())
        ]
    else:
        names = sorted(terms.to_caller(t) for t in by_type)
        body = {"id": _list_id("EntityTypeList", names), "type": "EntityTypeList", "typeList": names}
    return answer(caller, media, body)


@router.get("/types/{type_name:path}", summary="One entity type: how many entities, which attributes")
async def entity_type(type_name: str, request: Request, caller: ReadingCaller) -> Response:
    media = negotiate(request)
    snapshot = await current(request, caller)
    name = caller.terms.to_ioc(type_name)
    seen = [e for e in snapshot.entities(caller.tenant, frozenset({name})) if caller.sees(e)]
    if not seen:
        raise not_found(f"no entity of type {type_name!r}")
    terms = caller.terms
    body = {
        **_named(terms, name, "EntityTypeInfo", "typeName"),
        "entityCount": len(seen),
        "attributeDetails": [
            {**_named(terms, a, "Attribute", "attributeName"), "attributeTypes": sorted(info["types"])}
            for a, info in sorted(_attribute_kinds(seen).items())
        ],
    }
    return answer(caller, media, body)


@router.get("/attributes", summary="The attributes, with their types when details=true")
async def attributes(request: Request, caller: ReadingCaller) -> Response:
    media = negotiate(request)
    snapshot = await current(request, caller)
    found = _attribute_kinds([e for e in snapshot.entities(caller.tenant) if caller.sees(e)])
    terms = caller.terms
    if request.query_params.get("details") == "true":
        body: list | dict = [
            {
                **_named(terms, a, "Attribute", "attributeName"),
                "typeNames": sorted(terms.to_caller(t) for t in info["entities"]),
            }
            for a, info in sorted(found.items())
        ]
    else:
        names = sorted(terms.to_caller(a) for a in found)
        body = {"id": _list_id("AttributeList", names), "type": "AttributeList", "attributeList": names}
    return answer(caller, media, body)


@router.get("/attributes/{attr_name:path}", summary="One attribute: how many entities have it, of which types")
async def attribute(attr_name: str, request: Request, caller: ReadingCaller) -> Response:
    media = negotiate(request)
    snapshot = await current(request, caller)
    name = caller.terms.to_ioc(attr_name)
    having = [e for e in snapshot.entities(caller.tenant) if name in e.attrs and caller.sees(e)]
    if not having:
        raise not_found(f"no attribute {attr_name!r}")
    info = _attribute_kinds(having)[name]
    terms = caller.terms
    body = {
        **_named(terms, name, "Attribute", "attributeName"),
        "attributeCount": len(having),
        "attributeTypes": sorted(info["types"]),
        "typeNames": sorted(terms.to_caller(t) for t in info["entities"]),
    }
    return answer(caller, media, body)


@router.get("/jsonldContexts/ioc-context.jsonld", summary="The IOC's @context: the Smart Data Models' terms")
async def ioc_context() -> Response:
    return Response(orjson.dumps(IOC_DOCUMENT), media_type=JSON_LD, headers={"Cache-Control": "max-age=3600"})
