"""Response bodies shared for a short while by every caller that asks the same question.

``/latest`` renders every sensor of the city as GeoJSON (about 70 ms for 10,000 sensors); every
screen of the same scope asks for the same body, and live values move at most once a second on
the WebSocket anyway. A body is kept for ``max_age_s``; callers that miss together share one
query instead of each running it.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable


class BodyCache:
    def __init__(self, max_age_s: float, max_entries: int = 1024) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._bodies: dict[Hashable, tuple[float, str]] = {}
        self._pending: dict[Hashable, asyncio.Future[str]] = {}

    async def get(self, key: Hashable, render: Callable[[], Awaitable[str]]) -> str:
        if self.max_age_s <= 0:
            return await render()
        kept = self._bodies.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.max_age_s:
            return kept[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            started = time.monotonic()
            body = await render()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._pending[key]
        if len(self._bodies) >= self.max_entries:
            self._bodies.clear()
        self._bodies[key] = (started, body)
        future.set_result(body)
        return body
