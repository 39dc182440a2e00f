"""Database state that ingest keeps in memory and reloads on a period (the registry, the rules)."""

import time

from ioc_core.loops import Loop


class Reloading:
    """Calls ``load`` when ``refresh_s`` has passed since the last attempt; a failed load (the
    database away, or anything else) is logged, counted and tried again at the next period, not at
    every message, and makes ``/ready`` fail once it has lasted a few periods."""

    name = "state"

    def __init__(self, url: str, refresh_s: float):
        self._url = url
        self._refresh_s = refresh_s
        self._loaded_at = float("-inf")
        self.health = Loop(f"{self.name}-refresh", refresh_s)

    def refresh_if_due(self) -> None:
        if time.monotonic() - self._loaded_at < self._refresh_s:
            return
        try:
            self.load()
        except Exception as exc:
            self.health.failed(exc)
        else:
            self.health.succeeded()
        self._loaded_at = time.monotonic()

    def reload_soon(self) -> None:
        """Load at the next ``refresh_if_due``."""
        self._loaded_at = float("-inf")

    def load(self) -> None:
        raise NotImplementedError
