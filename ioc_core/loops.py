"""Background loops that survive anything their step raises.

A loop that dies quietly is worse than one that never ran: the service looks up while nothing is
escalated, rolled up or pushed. Every periodic job of every service (ingest's refreshes,
escalations, rollups and digests; the API's live bus and feed; the vision worker's cameras) runs
its step through ``Loop``: an exception is logged with its traceback, counted in
``ioc_loop_failures_total{loop}``, and the step is tried again after a backoff that doubles up
to ``max_backoff_s``. ``healthy()`` turns false when the loop has not succeeded for a few of its
periods, which is what ``/ready`` and ``/health`` report.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

FAILURES = Counter("ioc_loop_failures_total", "Steps of a background loop that raised", ["loop"])
LAST_SUCCESS = Gauge("ioc_loop_last_success_timestamp_seconds", "When a loop's step last succeeded", ["loop"])

_REGISTRY: dict[str, Loop] = {}
_LOCK = threading.Lock()


class Loop:
    """The health of one periodic job, and the runners that keep it going."""

    def __init__(self, name: str, period_s: float, *, grace_periods: float = 3, max_backoff_s: float = 30):
        self.name, self.period_s = name, period_s
        self.grace_s = max(grace_periods * period_s, 2.0)
        self.max_backoff_s = max(max_backoff_s, period_s)
        self.failures = 0  # in a row
        self.last_error: str | None = None
        self.started = time.monotonic()
        self.last_success: float | None = None
        with _LOCK:
            _REGISTRY[name] = self

    def healthy(self) -> bool:
        """It succeeded within its grace (counted from its start until its first success)."""
        since = self.last_success if self.last_success is not None else self.started
        return time.monotonic() - since <= self.grace_s + self.period_s

    def succeeded(self) -> None:
        if self.failures:
            log.info("loop recovered", extra={"loop": self.name, "after_failures": self.failures})
        self.failures, self.last_error = 0, None
        self.last_success = time.monotonic()
        LAST_SUCCESS.labels(self.name).set(time.time())

    def failed(self, exc: BaseException) -> float:
        """Log and count a failed step; returns how long to wait before the next try."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        record_failure(self.name, exc, self.failures)
        return min(self.period_s * 2 ** min(self.failures - 1, 16), self.max_backoff_s)

    def run(self, step: Callable[[], object], stopping: threading.Event) -> None:
        """On this thread, every period until ``stopping`` is set."""
        wait = self.period_s
        while not stopping.wait(wait):
            try:
                step()
            except Exception as exc:
                wait = self.failed(exc)
                continue
            self.succeeded()
            wait = self.period_s

    async def run_async(self, step: Callable[[], Awaitable[object]]) -> None:
        """In the event loop, every period until cancelled; the step's own time counts in the period."""
        while True:
            started = time.monotonic()
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await asyncio.sleep(self.failed(exc))
                continue
            self.succeeded()
            await asyncio.sleep(max(0.0, self.period_s - (time.monotonic() - started)))

    def start_thread(self, step: Callable[[], object], stopping: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(step, stopping), name=self.name, daemon=True)
        thread.start()
        return thread


def record_failure(name: str, exc: BaseException, in_a_row: int = 1) -> None:
    """Log (the traceback the first time, then every tenth) and count a failure of ``name``."""
    FAILURES.labels(name).inc()
    if in_a_row == 1 or in_a_row % 10 == 0:
        log.error("background step failed, retrying", exc_info=exc, extra={"loop": name, "failures": in_a_row})


def report() -> dict[str, dict[str, object]]:
    """Every loop of this process: healthy or not, failures in a row, the last error."""
    with _LOCK:
        loops = list(_REGISTRY.values())
    return {
        loop.name: {"healthy": loop.healthy(), "failures": loop.failures, "last_error": loop.last_error}
        for loop in loops
    }


def all_healthy() -> bool:
    with _LOCK:
        return all(loop.healthy() for loop in _REGISTRY.values())


def forget(name: str) -> None:
    """A loop that has ended on purpose (a camera removed) no longer counts."""
    with _LOCK:
        _REGISTRY.pop(name, None)
