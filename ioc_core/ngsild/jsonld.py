"""JSON-LD contexts and the terms they define: what a caller's short name means, and how the IOC's
own names are written back in the caller's terms.

Entities are held under the IOC's context (``contexts/ioc-context.jsonld``: the Smart Data Models'
terms), so one snapshot serves every caller: a name crosses over by its full IRI, expanded in one
context and compacted in the other (PyLD processes the contexts). The NGSI-LD core context is
bundled and never fetched; the IOC's own context is served by the API at ``IOC_CONTEXT_PATH`` and
a URL with that path is resolved from disk, on whatever host; any
other context a caller names is fetched once and kept for ``FETCHED_FOR_S``.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pyld import jsonld

CONTEXTS_DIR = Path(__file__).parent / "contexts"
CORE_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
# Earlier names of the core context: the same terms for what the IOC serves.
CORE_ALIASES = frozenset(
    {
        CORE_URL,
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        *(f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{n}.jsonld" for n in range(3, 9)),
    }
)
IOC_CONTEXT_PATH = "/ngsi-ld/v1/jsonldContexts/ioc-context.jsonld"
IOC_CONTEXT_URN = "urn:ioc:context"  # how the IOC's own context is named inside the process
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
FETCHED_FOR_S = 3600.0
FETCH_TIMEOUT_S = 5.0
MAX_CONTEXT_BYTES = 1_000_000
MAX_FETCHED = 256  # remote contexts held at once
# The names NGSI-LD itself gives meaning to: never expanded as attributes.
RESERVED = frozenset(
    {
        "id",
        "type",
        "@context",
        "scope",
        "location",
        "observationSpace",
        "operationSpace",
        "createdAt",
        "modifiedAt",
        "deletedAt",
    }
)
CORE_DOCUMENT = orjson.loads((CONTEXTS_DIR / "ngsi-ld-core-context-v1.8.jsonld").read_bytes())
IOC_DOCUMENT = orjson.loads((CONTEXTS_DIR / "ioc-context.jsonld").read_bytes())


class ContextError(Exception):
    """A context that cannot be used: ``unavailable`` when it could not be fetched (503
    LdContextNotAvailable), otherwise it is not a valid JSON-LD context (400)."""

    def __init__(self, detail: str, unavailable: bool = False):
        super().__init__(detail)
        self.unavailable = unavailable


class _Fetched:
    """Remote contexts, each fetched once per ``FETCHED_FOR_S``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, tuple[float, Any]] = {}

    def get(self, url: str) -> Any:
        with self._lock:
            held = self._documents.get(url)
        if held is not None and time.monotonic() - held[0] < FETCHED_FOR_S:
            return held[1]
        if not url.startswith(("http://", "https://")):
            raise ContextError(f"the context {url!r} is not an http(s) URL", unavailable=True)
        try:
            with httpx.stream(
                "GET",
                url,
                timeout=FETCH_TIMEOUT_S,
                follow_redirects=True,
                headers={"Accept": "application/ld+json, application/json;q=0.9"},
            ) as response:
                response.raise_for_status()
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_CONTEXT_BYTES:
                        raise ContextError(f"the context {url!r} is larger than {MAX_CONTEXT_BYTES} bytes")
            document = orjson.loads(body)
        except httpx.HTTPError as exc:
            raise ContextError(f"the context {url!r} could not be fetched: {exc}", unavailable=True) from exc
        except orjson.JSONDecodeError as exc:
            raise ContextError(f"the context {url!r} is not JSON: {exc}", unavailable=True) from exc
        if not isinstance(document, dict) or "@context" not in document:
            raise ContextError(f"the document at {url!r} has no @context", unavailable=True)
        with self._lock:
            while len(self._documents) >= MAX_FETCHED:  # the oldest go first
                self._documents.pop(next(iter(self._documents)))
            self._documents[url] = (time.monotonic(), document)
        return document


FETCHED = _Fetched()


def _load(url: str, options: Any = None) -> dict:
    """PyLD's document loader: the bundled contexts from disk, any other one fetched."""
    if url in CORE_ALIASES:
        document = CORE_DOCUMENT
    elif url == IOC_CONTEXT_URN or urlsplit(url).path == IOC_CONTEXT_PATH:
        document = IOC_DOCUMENT  # wherever the API is reached, its own context is on disk
    else:
        try:
            document = FETCHED.get(url)
        except ContextError as exc:
            _failures.last = exc  # PyLD wraps what a loader raises without its cause
            raise
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url, "document": document}


_OPTIONS = {"documentLoader": _load}
_failures = threading.local()


class Vocabulary:
    """One context with the core context after it (the core's terms always win, as NGSI-LD
    says): expands a caller's names to IRIs and compacts IRIs to its names, each once."""

    def __init__(self, context: list):
        self.context = [*context, CORE_URL]
        self._expanded: dict[str, str] = {}
        self._compacted: dict[str, str] = {}
        self._lock = threading.Lock()
        self.expand("observedAt")  # processes the context now: a bad one fails here, not mid-answer

    def expand(self, term: str) -> str:
        found = self._expanded.get(term)
        if found is not None:
            return found
        if term in RESERVED or term.startswith("@"):  # keywords are themselves, never attributes
            iri = term
        else:
            try:
                with self._lock:  # PyLD's caches are not thread-safe
                    _failures.last = None
                    out = jsonld.expand({"@context": self.context, term: {"@value": 0}}, _OPTIONS)
            except jsonld.JsonLdError as exc:
                raise _context_error(exc) from exc
            iri = next(iter(out[0]), term) if out else term
        self._expanded[term] = iri
        return iri

    def compact(self, iri: str) -> str:
        found = self._compacted.get(iri)
        if found is not None:
            return found
        if iri in RESERVED or iri.startswith("@"):
            term = iri
        else:
            try:
                with self._lock:
                    _failures.last = None
                    out = jsonld.compact({iri: 0}, {"@context": self.context}, _OPTIONS)
            except jsonld.JsonLdError as exc:
                raise _context_error(exc) from exc
            term = next((k for k in out if k != "@context"), iri)
        self._compacted[iri] = term
        return term


def _context_error(exc: jsonld.JsonLdError) -> ContextError:
    failure, _failures.last = getattr(_failures, "last", None), None
    if failure is not None:
        return failure
    return ContextError(f"the @context is not valid JSON-LD: {exc.args[0] if exc.args else exc}")


@lru_cache(maxsize=256)
def _vocabulary(key: bytes) -> Vocabulary:
    return Vocabulary(orjson.loads(key))


def vocabulary(context: Any) -> Vocabulary:
    """The vocabulary of a caller's ``@context`` (a URL, an object or a list of them; None for the
    core context alone). May fetch a remote context: call it off the event loop."""
    if context is None:
        items: list = []
    elif isinstance(context, list):
        items = context
    else:
        items = [context]
    items = [i for i in items if not (isinstance(i, str) and i in CORE_ALIASES)]
    try:
        key = orjson.dumps(items, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise ContextError(f"the @context is not JSON: {exc}") from exc
    return _vocabulary(key)


CORE = vocabulary(None)
IOC = vocabulary(IOC_CONTEXT_URN)


class Translation:
    """The IOC's names in a caller's vocabulary and back."""

    def __init__(self, caller: Vocabulary):
        self.caller = caller
        self._out: dict[str, str] = {}
        self._in: dict[str, str] = {}

    def to_caller(self, name: str) -> str:
        found = self._out.get(name)
        if found is None:
            found = self._out[name] = self.caller.compact(IOC.expand(name))
        return found

    def to_ioc(self, term: str) -> str:
        found = self._in.get(term)
        if found is None:
            found = self._in[term] = IOC.compact(self.caller.expand(term))
        return found


@lru_cache(maxsize=256)
def translation(caller: Vocabulary) -> Translation:
    return Translation(caller)
