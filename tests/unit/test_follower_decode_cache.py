"""The followers' shared decode cache: one decode per message bytes, bounded."""

from __future__ import annotations

import pytest

from adapters.nats.follower import DecodedCache
from engine.domain.ports import JournalEntry


def test_each_message_is_decoded_once_and_the_cache_stays_bounded() -> None:
    calls: list[bytes] = []

    def decode(data: bytes) -> JournalEntry:
        calls.append(data)
        return JournalEntry("s1", len(calls), 0, (), ())

    cache = DecodedCache(decode, max_entries=2)
    first = cache(b"a")
    assert cache(b"a") is first  # the second follower gets the same entry
    assert calls == [b"a"]
    cache(b"b")
    cache(b"c")  # "a", the oldest, is dropped
    assert cache(b"a") is not first
    assert calls == [b"a", b"b", b"c", b"a"]


def test_a_message_that_does_not_decode_is_not_remembered() -> None:
    def decode(data: bytes) -> JournalEntry:
        raise ValueError("checksum mismatch")

    cache = DecodedCache(decode)
    for _ in range(2):
        with pytest.raises(ValueError, match="checksum"):
            cache(b"x")
    with pytest.raises(ValueError, match="positive"):
        DecodedCache(decode, max_entries=0)
