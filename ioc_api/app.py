"""The FastAPI application: database pool, live bus and hub, routes, and the screens."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from psycopg_pool import AsyncConnectionPool

from ioc_api import problems
from ioc_api.body_cache import BodyCache
from ioc_api.bus import LiveBus
from ioc_api.live import LiveHub
from ioc_api.routes import (
    alerts,
    auth,
    cap,
    dead_letters,
    events,
    health,
    live,
    performance,
    readings,
    registry,
    rules,
    screen,
    units,
)
from ioc_core.settings import REPO_ROOT, Settings, get_settings

DASHBOARDS_DIR = REPO_ROOT / "dashboards"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each connection is checked as it is lent (one round trip), so that after a database
        # restart no request gets a connection that died with it.
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=10,
            open=False,
            kwargs={"connect_timeout": 3},
            check=AsyncConnectionPool.check_connection,
        )
        await pool.open(wait=False)
        hub = LiveHub()
        bus = LiveBus(settings.mqtt_url, hub)
        tasks = [asyncio.create_task(bus.run(), name="live-bus"), asyncio.create_task(hub.run_ticker(), name="ticker")]
        app.state.pool, app.state.hub, app.state.bus, app.state.settings = pool, hub, bus, settings
        app.state.latest_bodies = BodyCache(settings.latest_max_age_s)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await pool.close()

    app = FastAPI(
        title="IOC API",
        version="1",
        summary="REST and live WebSocket of the city's Intelligent Operations Centre.",
        description=(
            "Authenticate with `POST /api/v1/auth/login` (or a service token from `python -m ioc_api.cli`) and send "
            "`Authorization: Bearer <token>`. Ward operators see only their units. Errors are "
            "`application/problem+json`. The live WebSocket `/ws` is described in docs/live-protocol.md."
        ),
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(health.router)
    for module in (auth, units, registry, readings, events, alerts, rules, performance, cap, dead_letters, screen):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(live.router)
    app.mount("/", StaticFiles(directory=DASHBOARDS_DIR, html=True), name="dashboards")
    return app
