"""``GET /health``: is the API connected to its database and broker, and are its loops alive."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ioc_api.deps import NO_UNIT, scoped_connection
from ioc_core.loops import report

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
    responses={503: {"description": "The database or the broker is unreachable, or a background loop is failing."}},
    summary="State of the database, the broker and the background loops (the live feed among them)",
)
async def health(request: Request) -> JSONResponse:
    database = await _database_ok(request)
    broker = request.app.state.bus.connected.is_set()
    loops = report()
    ok = database and broker and all(loop["healthy"] for loop in loops.values())
    body = {
        "status": "ok" if ok else "degraded",
        "database": "up" if database else "down",
        "broker": "up" if broker else "down",
        "feed": "up" if request.app.state.feed_loop.healthy() else "down",
        "loops": loops,
    }
    return JSONResponse(body, status_code=200 if ok else 503)
