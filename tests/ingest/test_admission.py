"""Admission's bounds alone: how many sensors ingest registers on its own, in all and per gateway,
counting those of the batch being built with the registry's."""

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ingest.admission import Admission, Pending
from ingest.payloads import Parsed, Reading
from ingest.registry import RegistryCache
from ioc_core.loops import forget
from ioc_core.settings import Settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)  # compared with no clock


@pytest.fixture
def registry() -> Iterator[RegistryCache]:
    cache = RegistryCache("postgresql://unused")  # never loaded: filled by hand below
    cache.remember("known")
    yield cache
    forget(cache.health.name)


def message(*sensors: str) -> Parsed:
    return Parsed(readings=[Reading(NOW, s, "pm25", 1.0) for s in sensors])


def test_past_the_citys_bound_new_sensors_are_refused_and_known_ones_still_stored(registry: RegistryCache) -> None:
    for i in range(7):
        registry.remember(f"before-{i}")  # with "known", 8 registered by ingest
    admission = Admission(registry, Settings(ingest_max_unregistered=10))
    pending, new = Pending(), {}
    parsed = message("known", "new-1", "new-2", "new-3")
    admission.admit(parsed, new, pending)
    assert new == {"new-1": None, "new-2": None}
    assert [r.sensor_id for r in parsed.readings] == ["known", "new-1", "new-2"]
    assert [r.code for r in parsed.rejections] == ["registration_limit"]
    assert "'new-3'" in parsed.rejections[0].detail and "IOC_INGEST_MAX_UNREGISTERED" in parsed.rejections[0].detail
    again = message("new-1", "new-4")  # the batch's new sensors count: new-1 is taken, new-4 is not
    admission.admit(again, {}, pending)
    assert [r.sensor_id for r in again.readings] == ["new-1"]
    assert admission.admit_device("camera-new", {}, pending).code == "registration_limit"


def test_a_gateway_brings_in_its_bound_and_no_more_while_others_still_can(registry: RegistryCache) -> None:
    registry.per_gateway["gw-1"] = 2
    admission = Admission(registry, Settings(ingest_max_sensors_per_gateway=3))
    pending = Pending()
    through_gw1 = message("a", "b")
    admission.admit(through_gw1, {}, pending, gateway_id="gw-1")
    assert [r.sensor_id for r in through_gw1.readings] == ["a"]
    assert "gateway 'gw-1'" in through_gw1.rejections[0].detail
    through_gw2 = message("c", "d")
    admission.admit(through_gw2, {}, pending, gateway_id="gw-2")
    assert [r.sensor_id for r in through_gw2.readings] == ["c", "d"] and through_gw2.rejections == []


def test_with_unknown_sensors_rejected_none_is_registered(registry: RegistryCache) -> None:
    admission = Admission(registry, Settings(ingest_unknown_sensors="reject"))
    parsed, new = message("known", "stranger"), {}
    admission.admit(parsed, new, Pending())
    assert new == {} and [r.code for r in parsed.rejections] == ["unknown_sensor"]
    assert [r.sensor_id for r in parsed.readings] == ["known"]
