"""Database state that ingest keeps in memory and reloads on a period (the registry, the rules)."""

import logging
import time

import psycopg

log = logging.getLogger(__name__)


class Reloading:
    """Calls ``load`` when ``refresh_s`` has passed since the last attempt; a failed load is tried
    again at the next period, not at every message."""

    name = "state"

    def __init__(self, url: str, refresh_s: float):
        self._url = url
        self._refresh_s = refresh_s
        self._loaded_at = float("-inf")

    def refresh_if_due(self) -> None:
        if time.monotonic() - self._loaded_at < self._refresh_s:
            return
        try:
            self.load()
        except psycopg.Error as exc:
            log.warning(f"{self.name} refresh failed", extra={"error": str(exc)[:300]})
        self._loaded_at = time.monotonic()

    def reload_soon(self) -> None:
        """Load at the next ``refresh_if_due``."""
        self._loaded_at = float("-inf")

    def load(self) -> None:
        raise NotImplementedError
