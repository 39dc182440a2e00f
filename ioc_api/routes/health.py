"""``GET /health``: is the API connected to its database and broker."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ioc_api.deps import NO_UNIT, scoped_connection

router = APIRouter(tags=["health"])


async def _database_ok(request: Request) -> bool:
    try:
        async with asyncio.timeout(2):
            async with scoped_connection(request.app.state.pool, NO_UNIT) as conn:
                await conn.execute("SELECT 1")
        return True
    except Exception:
        return False


@router.get(
    "/health",
    responses={503: {"description": "The database or the broker is unreachable."}},
    summary="State of the database and the broker",
)
async def health(request: Request) -> JSONResponse:
    database = await _database_ok(request)
    broker = request.app.state.bus.connected.is_set()
    body = {
        "status": "ok" if database and broker else "degraded",
        "database": "up" if database else "down",
        "broker": "up" if broker else "down",
    }
    return JSONResponse(body, status_code=200 if database and broker else 503)
