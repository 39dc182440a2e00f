"""NGSI-LD's side of HTTP: errors as ProblemDetails with the NGSI-LD types, the caller's
``@context`` (``Link`` header or body), content negotiation, tenants, and who sees which entity."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from ioc_api.deps import EVERY_UNIT, Db, set_scope
from ioc_api.security import Principal, principal_for
from ioc_core.ngsild import TENANT
from ioc_core.ngsild.entities import Entity
from ioc_core.ngsild.jsonld import CORE_URL, ContextError, Translation, Vocabulary, translation, vocabulary

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
JSON, JSON_LD, GEO_JSON, MERGE_PATCH = (
    "application/json",
    "application/ld+json",
    "application/geo+json",
    "application/merge-patch+json",
)
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
CITY_ROLES = frozenset({"admin", "engineer", "city_operator"})
_bearer = HTTPBearer(auto_error=False)


class NgsiError(Exception):
    """Answered as a ProblemDetails of type ``ERRORS + kind``."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers


def bad_request(detail: str) -> NgsiError:
    return NgsiError(400, "BadRequestData", detail)


def not_found(detail: str) -> NgsiError:
    return NgsiError(404, "ResourceNotFound", detail)


def problem_body(status: int, kind: str, detail: str) -> dict[str, Any]:
    return {"type": ERRORS + kind, "title": _TITLES.get(kind, kind), "status": status, "detail": detail}


def problem_response(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = problem_body(status, kind, detail)
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


_TITLES = {
    "BadRequestData": "The request includes input data which does not meet the requirements of the operation",
    "InvalidRequest": "The request associated to the operation is syntactically invalid or includes wrong content",
    "ResourceNotFound": "The referred element does not exist",
    "AlreadyExists": "The referred element already exists",
    "OperationNotSupported": "The operation is not supported",
    "LdContextNotAvailable": "A remote JSON-LD @context referenced in a request cannot be retrieved",
    "NonexistentTenant": "The addressed tenant does not exist",
    "NotAcceptable": "None of the media types in Accept can be produced",
    "UnsupportedMediaType": "The request's Content-Type is not one the operation accepts",
    "Unauthorized": "A valid bearer token is required",
    "AccessDenied": "The caller may not do this",
    "InternalError": "An error occurred while executing the operation",
}


def install(app: FastAPI) -> None:
    """NGSI-LD errors, and the router's own refusals (no such path, method) under ``/ngsi-ld/``
    in NGSI-LD's form too; the rest of the API keeps its own."""
    http_problem = app.exception_handlers[HTTPException]

    @app.exception_handler(NgsiError)
    async def ngsi_problem(request: Request, exc: NgsiError) -> Response:
        return problem_response(exc.status, exc.kind, exc.detail, exc.headers)

    @app.exception_handler(HTTPException)
    async def router_problem(request: Request, exc: HTTPException) -> Response:
        if not request.url.path.startswith("/ngsi-ld/"):
            return await http_problem(request, exc)
        kind = {404: "ResourceNotFound", 405: "OperationNotSupported"}.get(exc.status_code, "BadRequestData")
        return problem_response(exc.status_code, kind, str(exc.detail), exc.headers)


def link_context(request: Request) -> str | None:
    """The context URL of the ``Link`` header, if any (several are a 400)."""
    found = []
    for header in request.headers.getlist("link"):
        for url, params in _LINK.findall(header):
            if CONTEXT_REL in params:
                found.append(url.strip())
    if len(found) > 1:
        raise bad_request("more than one JSON-LD context in the Link header")
    return found[0] if found else None


async def vocabulary_of(context: Any) -> Vocabulary:
    """The caller's vocabulary; a context fetched for the first time is fetched off the loop."""
    try:
        if context is None:
            return vocabulary(None)
        return await asyncio.to_thread(vocabulary, context)
    except ContextError as exc:
        if exc.unavailable:
            raise NgsiError(503, "LdContextNotAvailable", str(exc)) from exc
        raise bad_request(str(exc)) from exc


class Caller:
    """Who asks, in which tenant, with which terms, for which media type."""

    def __init__(self, principal: Principal | None, tenant: str, terms: Translation, context_url: str | None):
        self.principal, self.tenant, self.terms, self.context_url = principal, tenant, terms, context_url

    @property
    def context(self) -> Any:
        """The @context to write into a JSON-LD answer."""
        return self.context_url or CORE_URL

    def link_header(self) -> str:
        return f'<{self.context}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"'

    def sees(self, entity: Entity) -> bool:
        p = self.principal
        if p is not None and p.role == "partner":
            return entity.tenant == p.tenant or (entity.public and not entity.tenant)
        if p is None or p.role in ("public", "hotline_operator"):
            return entity.public and not entity.tenant
        if p.scope is None:
            return True
        return entity.unit_id in p.scope or entity.type == "AdministrativeUnit"

    @property
    def open_only(self) -> bool:
        p = self.principal
        return p is None or p.role in ("public", "hotline_operator")


async def optional_principal(
    db: Db, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    """The caller behind a bearer token; none for open data. A token that is not valid is a 401,
    not open data: a client with an expired token should know."""
    await set_scope(db, EVERY_UNIT)  # what an entity shows is held by ``Caller.sees``
    if credentials is None:
        return None
    principal = await principal_for(db, credentials.credentials)
    if principal is None:
        raise NgsiError(401, "Unauthorized", "the token is unknown, expired or revoked", {"WWW-Authenticate": "Bearer"})
    return principal


def tenant_of(request: Request, principal: Principal | None) -> str:
    tenant = request.headers.get("ngsild-tenant", "")
    if tenant and not TENANT.fullmatch(tenant):
        raise NgsiError(404, "NonexistentTenant", f"no tenant {tenant!r}")
    return tenant


async def caller(request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]) -> Caller:
    """A reading caller: its context comes from the ``Link`` header."""
    url = link_context(request)
    terms = translation(await vocabulary_of(url))
    return Caller(principal, tenant_of(request, principal), terms, url)


ReadingCaller = Annotated[Caller, Depends(caller)]


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media:
            ranges.append((media.lower(), q))
    return sorted(ranges, key=lambda r: -r[1])


def negotiate(request: Request, offered: tuple[str, ...] = (JSON, JSON_LD)) -> str:
    """The media type to answer with, from ``Accept``; 406 when none of ``offered`` is acceptable."""
    accept = request.headers.get("accept")
    if not accept:
        return offered[0]
    for media, q in _media_ranges(accept):
        if q <= 0:
            continue
        if media in ("*/*", "application/*"):
            return offered[0]
        if media in offered:
            return media
    raise NgsiError(406, "NotAcceptable", f"this answer is one of {', '.join(offered)}; Accept asked for {accept!r}")


def answer(caller: Caller, media: str, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as JSON with the context in ``Link``, or as JSON-LD with it inside."""
    headers = dict(headers or {})
    if media == JSON_LD:
        if isinstance(body, list):
            body = [{**b, "@context": caller.context} for b in body]
        elif isinstance(body, dict):
            body = {**body, "@context": caller.context}
    elif media == JSON:
        headers["Link"] = caller.link_header()
    return Response(orjson.dumps(body), status_code=status, media_type=media, headers=headers)
