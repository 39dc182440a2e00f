"""Requests per minute per client (an app's key, a browser's address), on each API node: a moving
window (``limits``), so a burst at a minute's edge is not let through twice."""

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    """Too many requests: the message says when to try again (``retry_after`` seconds)."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many requests; try again in {retry_after} s")
        self.retry_after = retry_after


class RateLimits:
    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, who: str, per_minute: int) -> None:
        item = RateLimitItemPerMinute(per_minute)
        if not self._limiter.hit(item, who):
            reset = self._limiter.get_window_stats(item, who).reset_time
            raise RateLimited(max(1, math.ceil(reset - time.time())))
