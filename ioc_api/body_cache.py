"""Response bodies shared for a short while by every caller that asks the same question.

``/latest`` renders every sensor of the city as GeoJSON (about 70 ms for 10,000 sensors); every
screen of the same scope asks for the same body, and live values move at most once a second on
the WebSocket anyway. A body is fresh for ``max_age_s``; in the next ``max_age_s`` it is still
served while one renewal runs in the background, so a steady stream of callers never waits for a
render. Callers that find no usable body share one render instead of each running it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Body = TypeVar("Body")  # a rendered body, or several (one per format) made together

log = logging.getLogger(__name__)


class BodyCache(Generic[Body]):
    def __init__(self, max_age_s: float, max_entries: int = 1024) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._bodies: dict[Hashable, tuple[float, Body]] = {}
        self._renewing: dict[Hashable, asyncio.Task[Body]] = {}

    async def get(self, key: Hashable, render: Callable[[], Awaitable[Body]]) -> Body:
        """``render`` must not depend on the caller's request: a renewal may outlive it."""
        if self.max_age_s <= 0:
            return await render()
        kept = self._bodies.get(key)
        if kept is not None:
            age = time.monotonic() - kept[0]
            if age < self.max_age_s:
                return kept[1]
            if age < 2 * self.max_age_s:
                self._renew(key, render)
                return kept[1]
        return await asyncio.shield(self._renew(key, render))

    def _renew(self, key: Hashable, render: Callable[[], Awaitable[Body]]) -> asyncio.Task[Body]:
        task = self._renewing.get(key)
        if task is None:
            task = asyncio.create_task(self._render(key, render), name=f"render {key}")
            task.add_done_callback(_log_failure)
            self._renewing[key] = task
        return task

    async def _render(self, key: Hashable, render: Callable[[], Awaitable[Body]]) -> Body:
        started = time.monotonic()
        try:
            body = await render()
        finally:
            del self._renewing[key]
        if len(self._bodies) >= self.max_entries and key not in self._bodies:
            self._bodies.clear()
        self._bodies[key] = (started, body)
        return body


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("render failed", extra={"task": task.get_name(), "error": repr(task.exception())})
