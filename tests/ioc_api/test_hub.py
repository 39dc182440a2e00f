"""The live hub's logic alone: filters, the replay seam, values coalescing, overflow."""

import orjson

from ioc_api.live import OUTBOX_EVENTS, VALUE_SLOTS, LiveClient, LiveHub


def event(event_id: int, unit: str, kind: str = "alert.opened", severity: str = "major") -> bytes:
    return orjson.dumps({"id": event_id, "kind": kind, "severity": severity, "unit_id": unit})


def received(client: LiveClient) -> list[int]:
    return [orjson.loads(m)["event"]["id"] for m in client.events]


def test_events_reach_the_clients_whose_filters_match() -> None:
    hub = LiveHub()
    ward = LiveClient(units=frozenset({"hai-chau"}), kinds=("alert.",), min_rank=2)
    city = LiveClient(units=None)
    for client in (ward, city):
        hub.add(client)
    hub.event("hai-chau", event(1, "hai-chau"))
    hub.event("hoa-cuong", event(2, "hoa-cuong"))
    hub.event("hai-chau", event(3, "hai-chau", kind="camera.crowding"))
    hub.event("hai-chau", event(4, "hai-chau", severity="minor"))
    assert received(ward) == [1]
    assert received(city) == [1, 2, 3, 4]
    hub.remove(ward)
    hub.event("hai-chau", event(5, "hai-chau"))
    assert received(ward) == [1]


def test_live_events_held_during_a_replay_follow_it_without_duplicates() -> None:
    client = LiveClient(units=None, replaying=True)
    client.push_event(11, b'{"type":"event","event":{"id":11}}')
    client.push_event(12, b'{"type":"event","event":{"id":12}}')
    client.end_replay({10, 11})
    client.push_event(11, b'{"type":"event","event":{"id":11}}')  # a late live copy of a replayed one
    client.push_event(13, b'{"type":"event","event":{"id":13}}')
    assert received(client) == [12, 13]


def test_values_are_coalesced_per_sensor_and_joined_per_client() -> None:
    hub = LiveHub()
    ward = LiveClient(units=frozenset({"hai-chau"}))
    hub.add(ward)
    for value in (1, 2, 3):
        hub.values("hai-chau", orjson.dumps({"values": [{"sensor_id": "a", "metric": "pm25", "value": value}]}))
    hub.values("hoa-cuong", orjson.dumps({"values": [{"sensor_id": "b", "metric": "pm25", "value": 9}]}))
    hub.tick()
    message = orjson.loads(ward.values_message)
    assert message == {
        "type": "values",
        "values": [{"sensor_id": "a", "metric": "pm25", "value": 3, "unit_id": "hai-chau"}],
    }


def test_values_go_out_in_slots_each_client_once_a_second_with_each_value_once() -> None:
    hub = LiveHub()
    clients = [LiveClient(units=None) for _ in range(2 * VALUE_SLOTS)]
    for client in clients:
        hub.add(client)
    got: dict[int, list[int]] = {i: [] for i in range(len(clients))}
    for tick in range(3 * VALUE_SLOTS):  # three seconds, a new value every tick
        hub.values("hai-chau", orjson.dumps({"values": [{"sensor_id": f"s{tick}", "metric": "m", "value": tick}]}))
        hub.tick()
        sent = [i for i, c in enumerate(clients) if c.values_message is not None]
        assert len(sent) == 2  # a tenth of the clients each tick
        for i in sent:
            got[i].extend(v["value"] for v in orjson.loads(clients[i].values_message)["values"])
            clients[i].values_message = None
    for values in got.values():  # every value once, none twice, three messages each
        assert len(values) == len(set(values))
    assert all(set(range(2 * VALUE_SLOTS)) <= set(v) for v in got.values())


def test_a_full_outbox_drops_values_first_then_marks_the_client_too_slow() -> None:
    client = LiveClient(units=None)
    client.values_message = b"{}"
    for i in range(OUTBOX_EVENTS):
        client.push_event(i, b"{}")
    assert not client.too_slow and client.values_message == b"{}"
    client.push_event(OUTBOX_EVENTS, b"{}")
    assert client.too_slow and client.values_message is None


def test_an_event_the_broker_and_the_feed_both_bring_reaches_each_client_once() -> None:
    hub = LiveHub()
    client = LiveClient(units=None)
    hub.add(client)
    hub.event("hai-chau", event(7, "hai-chau"))  # from the broker
    hub.deliver(7, "hai-chau", "alert.opened", 2, b'{"type":"event","event":{"id":7}}')  # the feed's copy
    hub.deliver(8, None, "alert.opened", 2, b'{"type":"event","event":{"id":8}}')  # the feed first
    hub.event("hai-chau", event(8, "hai-chau"))
    assert received(client) == [7, 8]


def test_positions_follow_the_queued_events_and_reach_each_client_once_a_second_at_most() -> None:
    hub = LiveHub()
    client, replaying = LiveClient(units=None), LiveClient(units=None, replaying=True)
    for c in (client, replaying):
        hub.add(c)
    hub.position("epoch/10:12:", broker_up=True)
    assert orjson.loads(client.position_message) == {"type": "position", "position": "epoch/10:12:", "broker": True}
    assert replaying.position_message is None  # its replay has not reached that position yet
    client.position_message = None
    hub.position("epoch/12:12:", broker_up=False)
    assert client.position_message is None  # within a second of the last one
    client.position_due = 0.0
    hub.position("epoch/13:13:", broker_up=False)
    assert orjson.loads(client.position_message)["broker"] is False
