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
from ioc_core.ngsild.access import Viewer
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

    @property
    def viewer(self) -> Viewer:
        p = self.principal
        return Viewer(None) if p is None else Viewer(p.role, p.scope, p.tenant)

    def sees(self, entity: Entity) -> bool:
        return self.viewer.sees(entity)


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


def tenant_of(request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant", "")
    if tenant and not TENANT.fullmatch(tenant):
        raise NgsiError(404, "NonexistentTenant", f"no tenant {tenant!r}")
    return tenant


async def caller(request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]) -> Caller:
    """A reading caller: its context comes from the ``Link`` header."""
    url = link_context(request)
    terms = translation(await vocabulary_of(url))
    return Caller(principal, tenant_of(request), terms, url)


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


async def read_body(request: Request, allowed: tuple[str, ...] = (JSON, JSON_LD)) -> tuple[str, Any]:
    """The request's media type and JSON body; 415 and 400 say what is wrong with them."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in allowed:
        raise NgsiError(
            415, "UnsupportedMediaType", f"the body is one of {', '.join(allowed)}, not {media or 'untyped'}"
        )
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise NgsiError(400, "InvalidRequest", f"the body is not JSON: {exc}") from exc
    return media, body


def context_of(request: Request, media: str, body: Any) -> Any:
    """The ``@context`` a body speaks: in the body with JSON-LD, in ``Link`` with JSON."""
    inline = body.get("@context") if isinstance(body, dict) else None
    if media == JSON_LD:
        if link_context(request) is not None:
            raise bad_request("application/ld+json carries its @context in the body, not in Link")
        if inline is None:
            raise bad_request("application/ld+json needs @context in the body")
        return inline
    if inline is not None:
        raise bad_request("@context in the body comes with Content-Type application/ld+json")
    return link_context(request)


async def body_terms(request: Request, media: str, entity: Any) -> Translation:
    """The vocabulary an entity speaks: ``@context`` in the body with JSON-LD, ``Link`` with JSON."""
    return translation(await vocabulary_of(context_of(request, media, entity)))
