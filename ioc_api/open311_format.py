"""Open311 GeoReport v2's two formats of one answer: JSON, and the XML it mirrors (a list is a
plural element holding singular ones: ``<services><service>``; JSON drops the root)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from fastapi.responses import JSONResponse, Response

# The element each list's items take in XML.
SINGULAR = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return escape(str(value))


def _xml(name: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"<{name}>{''.join(_xml(k, v) for k, v in value.items())}</{name}>"
    if isinstance(value, list):
        item = SINGULAR.get(name, "item")
        return f"<{name}>{''.join(_xml(item, v) for v in value)}</{name}>"
    return f"<{name}>{_text(value)}</{name}>"


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def answer(fmt: str, root: str, body: Any, status: int = 200) -> Response:
    """``body`` (the JSON form) in ``fmt``, under ``root`` in XML."""
    if fmt == "xml":
        document = '<?xml version="1.0" encoding="utf-8"?>' + _xml(root, body)
        return Response(document, status_code=status, media_type="text/xml; charset=utf-8")
    return JSONResponse(_json(body), status_code=status)


def errors(fmt: str, status: int, *descriptions: str) -> Response:
    """Open311's error list: each ``{code, description}``, the code the HTTP status."""
    return answer(fmt, "errors", [{"code": status, "description": d} for d in descriptions], status)
