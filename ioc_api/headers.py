"""Security headers on every response, and a content security policy on the screen's pages.

The screen loads nothing from elsewhere (its libraries are vendored), so its policy allows only
its own origin, plus the tile server when one is set. Plain ASGI, not a BaseHTTPMiddleware: it
adds headers to the response's first message and costs nothing else.
"""

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # The public report page asks for the phone's position (and may take a photo with its camera).
    (b"permissions-policy", b"camera=(self), microphone=(), geolocation=(self), payment=()"),
]
# The interactive API docs load Swagger UI and ReDoc from a CDN: they keep the common headers only.
_DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc"}


def content_security_policy(tile_url: str | None) -> str:
    tiles = ""
    if tile_url:  # Leaflet's {s} subdomains: any subdomain of the tile server
        parts = urlsplit(tile_url.replace("{s}", "*"))
        tiles = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none';"
        f" img-src 'self' data: blob:{tiles}; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp, tile_url: str | None = None) -> None:
        self.app = app
        self.screen = [*COMMON, (b"content-security-policy", content_security_policy(tile_url).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = COMMON if scope["path"] in _DOCS else self.screen

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
