"""A follower's batch window counts from when its first entry was journaled, not from when
the follower took it: one that is behind applies at once instead of gathering again."""

from __future__ import annotations

from adapters.nats.follower import FollowerConfig, _Held, batch_opened_s
from engine.domain.ports import FollowedEntry, JournalEntry


def _held_opened_at(opened_s: float) -> _Held:
    held = _Held()
    held.msgs[1] = object()  # type: ignore[assignment] # only counted here
    held.entries[1] = FollowedEntry(1, JournalEntry("s1", 1, 0, (), ()))
    held.opened = opened_s
    return held


def test_a_fresh_message_opens_its_batch_now() -> None:
    assert batch_opened_s(100.0, 0.0, 200.0) == 100.0
    assert not _held_opened_at(batch_opened_s(100.0, 0.0, 200.0)).due(FollowerConfig("c", "t"), 100.1, 200.0)


def test_a_message_that_waited_a_window_already_is_due_at_once() -> None:
    opened = batch_opened_s(100.0, 1.5, 200.0)  # journaled 1.5 s ago (the last apply was long)
    assert opened == 99.8  # clamped to one window
    assert _held_opened_at(opened).due(FollowerConfig("c", "t"), 100.0, 200.0)


def test_part_of_a_window_is_left_to_gather() -> None:
    opened = batch_opened_s(100.0, 0.05, 200.0)
    assert abs(opened - 99.95) < 1e-9
    assert not _held_opened_at(opened).due(FollowerConfig("c", "t"), 100.1, 200.0)
    assert _held_opened_at(opened).due(FollowerConfig("c", "t"), 100.15, 200.0)


def test_a_clock_ahead_of_the_servers_never_delays_a_batch() -> None:
    assert batch_opened_s(100.0, -3.0, 200.0) == 100.0  # a negative age counts as none
