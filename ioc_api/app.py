"""The FastAPI application: database pool, live bus and hub, routes, and the screens."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from psycopg_pool import AsyncConnectionPool

from ioc_api.bus import LiveBus
from ioc_api.live import LiveHub
from ioc_api.routes import health, live, units
from ioc_core.settings import REPO_ROOT, Settings, get_settings

DASHBOARDS_DIR = REPO_ROOT / "dashboards"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            settings.database_url, min_size=1, max_size=10, open=False, kwargs={"connect_timeout": 3}
        )
        await pool.open(wait=False)
        hub = LiveHub()
        bus = LiveBus(settings.mqtt_url, hub)
        bus_task = asyncio.create_task(bus.run(), name="live-bus")
        app.state.pool, app.state.hub, app.state.bus = pool, hub, bus
        try:
            yield
        finally:
            bus_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bus_task
            await pool.close()

    app = FastAPI(
        title="IOC API",
        version="1",
        summary="REST and live WebSocket of the city's Intelligent Operations Centre.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(units.router, prefix="/api/v1")
    app.include_router(live.router)
    app.mount("/", StaticFiles(directory=DASHBOARDS_DIR, html=True), name="dashboards")
    return app
