"""When the event bus rewinds its journal consumer at start: the events stream (persisted
without fsync) may have lost its newest events in a crash (EventBusSink.lost_from)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from adapters.nats.bus import BusMetrics, EventBusSink, engine_bus_config


def sink(mark: tuple[int, int, int], ever_stored: bool) -> EventBusSink:
    made = EventBusSink(cast(Any, None), engine_bus_config("t", "nats://127.0.0.1:1"), BusMetrics(CollectorRegistry()))
    made._mark, made._ever_stored = mark, ever_stored  # what `open` reads from the stream
    return made


@pytest.mark.parametrize(
    ("mark", "ever_stored", "acked", "expected"),
    [
        ((40, 1, 1), True, 40, 0),  # the stream holds the acked message's events: nothing lost
        ((40, 1, 1), True, 45, 40),  # behind the ack floor: from the newest stored event's message
        ((0, 0, -1), False, 12, 1),  # never stored anything, yet messages were acked: from the start
        ((0, 0, -1), True, 12, 0),  # every event aged out of the stream: nothing lost
        ((0, 0, -1), False, 0, 0),  # a fresh bus: its consumer starts from the first message anyway
    ],
)
def test_lost_from(mark: tuple[int, int, int], ever_stored: bool, acked: int, expected: int) -> None:
    bus = sink(mark, ever_stored)
    assert bus.lost_from(acked) == expected
    assert bus._rewound == (expected > 0)  # only a rewind skips what the stream holds


def test_the_events_stream_is_fsynced_when_replicated_or_asked() -> None:
    from nats.js import api

    from adapters.nats.bus import events_stream_config

    assert events_stream_config(engine_bus_config("t", "nats://x:1")).persist_mode == api.PersistMode.ASYNC
    assert events_stream_config(engine_bus_config("t", "nats://x:1", replicas=3)).persist_mode is None
    assert events_stream_config(engine_bus_config("t", "nats://x:1", async_persist=False)).persist_mode is None
