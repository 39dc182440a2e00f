"""What ingest sends out after a commit: stored events on their unit's live topic, and once a
second the digest of each unit's changed values (DESIGN.md).

The broker is the fast path to the screens: an event it loses (ingest killed between its commit
and this publish, the broker away) still reaches them through each API node's look at the
database (``ioc_api/feed.py``).
"""

from ingest.digest import LiveDigest
from ingest.source import Source
from ioc_core import topics
from ioc_core.events import Event
from ioc_core.units import CITY_ID


class Publishing:
    def __init__(self, session: Source, digest: LiveDigest):
        self._session, self._digest = session, digest

    def events(self, events: list[Event]) -> None:
        """Stored events, each on its unit's live topic."""
        for event in events:
            self._session.publish(topics.live(event.unit_id or CITY_ID, event.kind), event.to_json(), qos=1)

    def digests(self) -> None:
        """The values that changed since the last call, one message per unit (a loop's step)."""
        for unit_id, payload in self._digest.drain().items():
            self._session.publish(topics.live(unit_id, "values"), payload, qos=0)
