"""The FastAPI application: database pool, live bus and hub, routes, and the screens."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from psycopg_pool import AsyncConnectionPool

from ioc_api import problems
from ioc_api.body_cache import BodyCache
from ioc_api.bus import LiveBus
from ioc_api.deps import EVERY_UNIT, clear_scope, scoped_connection
from ioc_api.feed import EventFeed
from ioc_api.headers import SecurityHeaders
from ioc_api.live import VALUE_SLOTS, VALUES_PERIOD_S, LiveHub
from ioc_api.ngsild import protocol as ngsild_protocol
from ioc_api.photos import PhotoStore
from ioc_api.rate_limits import RateLimits
from ioc_api.routes import (
    alerts,
    audit_log,
    auth,
    cap,
    catalogue,
    dead_letters,
    duty,
    events,
    health,
    incidents,
    live,
    ngsild,
    ngsild_subscriptions,
    ngsild_temporal,
    ngsild_writes,
    open311,
    performance,
    public_reports,
    readings,
    registry,
    report_admin,
    rules,
    screen,
    sops,
    sprint,
    tickets,
    units,
)
from ioc_api.tickets import Tickets
from ioc_core.addresses import Gazetteer
from ioc_core.loops import Loop
from ioc_core.ngsild.store import EntityStore
from ioc_core.settings import REPO_ROOT, Settings, get_settings
from ioc_core.working_days import WorkingCalendar, parse_office_hours

DASHBOARDS_DIR = REPO_ROOT / "dashboards"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each connection is checked as it is lent (one round trip), so that after a database
        # restart no request gets a connection that died with it. The first dead one found has the
        # pool check all its idle connections at once: the pool would otherwise find them one at a
        # time, waiting 1, 2, 4... seconds between them, and hold a request for as long.
        sweeps: set[asyncio.Task] = set()

        async def check(conn) -> None:
            try:
                await AsyncConnectionPool.check_connection(conn)
            except Exception:
                if not sweeps:
                    sweep = asyncio.create_task(pool.check())
                    sweeps.add(sweep)
                    sweep.add_done_callback(sweeps.discard)
                raise

        def new_pool(url: str) -> AsyncConnectionPool:
            # Every connection starts, and goes back to the pool, with the empty scope: one whose
            # scope was not set for its current use sees no row of any unit (ioc_api/deps.py).
            return AsyncConnectionPool(
                url,
                min_size=1,
                max_size=10,
                open=False,
                kwargs={"connect_timeout": 3},
                check=check,
                configure=clear_scope,
                reset=clear_scope,
            )

        pool = new_pool(settings.database_url)
        await pool.open(wait=False)
        # History may come from a replica (cluster mode): a little lag is harmless there.
        read_pool = new_pool(settings.database_read_url) if settings.database_read_url else pool
        if read_pool is not pool:
            await read_pool.open(wait=False)
        hub = LiveHub()
        bus = LiveBus(settings.mqtt_url, hub)
        feed = EventFeed(lambda: scoped_connection(pool, EVERY_UNIT), hub, bus.connected.is_set)
        app.state.feed_loop = Loop("live-feed", settings.live_feed_period_s)
        values_loop = Loop("live-values", VALUES_PERIOD_S / VALUE_SLOTS)

        async def tick() -> None:
            hub.tick()

        tasks = [
            asyncio.create_task(bus.run(), name="live-bus"),
            asyncio.create_task(values_loop.run_async(tick), name="live-values"),
            asyncio.create_task(app.state.feed_loop.run_async(feed.look), name="live-feed"),
        ]
        app.state.pool, app.state.hub, app.state.bus, app.state.settings = pool, hub, bus, settings
        app.state.read_pool = read_pool
        app.state.feed = feed
        app.state.latest_bodies = BodyCache(settings.latest_max_age_s)
        app.state.entities = EntityStore(settings.database_url, settings.ngsild_max_age_s)
        app.state.sprint_bodies = BodyCache(settings.sprint_max_age_s)
        app.state.rate_limits = RateLimits()
        app.state.calendar = WorkingCalendar({}, parse_office_hours(settings.office_hours))
        app.state.tickets = Tickets(
            app.state.calendar,
            Gazetteer([]),
            PhotoStore(settings.photo_dir),
            settings.report_duplicate_m,
            settings.report_duplicate_hours,
            int(settings.photo_quota_mb * 1_000_000),
        )
        reference = Loop("report-reference", 60)

        async def load_reference() -> None:
            await app.state.tickets.reload(pool)

        tasks.append(asyncio.create_task(reference.run_async(load_reference), name="report-reference"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await pool.close()
            if read_pool is not pool:
                await read_pool.close()
            app.state.entities.close()

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
    ngsild_protocol.install(app)
    app.include_router(health.router)
    for module in (
        auth,
        units,
        registry,
        readings,
        events,
        alerts,
        rules,
        performance,
        cap,
        dead_letters,
        screen,
        audit_log,
        tickets,
        public_reports,
        report_admin,
        sprint,
        incidents,
        sops,
        duty,
    ):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(catalogue.router, prefix="/api/v1")  # with the open readings it lists
    app.include_router(open311.router)
    app.include_router(ngsild.router)
    app.include_router(ngsild_temporal.router)
    app.include_router(ngsild_writes.router)
    app.include_router(ngsild_subscriptions.router)
    app.include_router(live.rest, prefix="/api/v1")
    app.include_router(live.router)
    app.mount("/", StaticFiles(directory=DASHBOARDS_DIR, html=True), name="dashboards")
    # Closed unless origins are named: a page elsewhere cannot call the API from a browser.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, tile_url=settings.screen_tile_url)
    return app
