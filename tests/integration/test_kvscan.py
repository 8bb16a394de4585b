"""Reading a key-value bucket's latest entries with a known end (adapters/nats/kvscan.py), on
a real nats-server: a key written just before the read is always in it — the watch-based
listing it replaces could end before its first entry and list nothing (an alert listing
came back empty right after the alert was raised)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats
import pytest
import pytest_asyncio
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from adapters.nats.kvscan import FETCH_BATCH, StoredEntry, latest_entries
from adapters.nats.server import EmbeddedNats


@pytest_asyncio.fixture
async def js(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def bucket(js: JetStreamContext) -> tuple[str, KeyValue]:
    name = f"scan-{uuid.uuid4().hex[:10]}"
    kv = await js.create_key_value(api.KeyValueConfig(bucket=name, history=4, storage=api.StorageType.MEMORY))
    return name, kv


async def read(js: JetStreamContext, name: str, key_filter: str = ">", **kw: object) -> list[StoredEntry]:
    return [e async for e in latest_entries(js, name, key_filter, **kw)]  # type: ignore[arg-type]


async def test_a_key_written_just_before_the_read_is_always_listed(js: JetStreamContext) -> None:
    for i in range(60):
        name, kv = await bucket(js)
        revision = await kv.create(f"a.{i}", b"raised")
        assert await read(js, name) == [StoredEntry(f"a.{i}", b"raised", revision)], f"read {i}"
        await js.delete_key_value(name)


async def test_the_latest_live_revision_of_each_key_under_the_filter(js: JetStreamContext) -> None:
    name, kv = await bucket(js)
    await kv.put("s.one", b"1")
    await kv.put("s.two", b"2")
    last = await kv.put("s.one", b"1b")
    await kv.put("s.gone", b"x")
    await kv.delete("s.gone")
    await kv.put("s.purged", b"y")
    await kv.purge("s.purged")
    await kv.put("p.other", b"z")
    got = await read(js, name, "s.>")
    assert {(e.key, e.value) for e in got} == {("s.one", b"1b"), ("s.two", b"2")}
    assert next(e.revision for e in got if e.key == "s.one") == last
    assert [e.key for e in await read(js, name)] == ["s.two", "s.one", "p.other"]


async def test_names_only_and_an_empty_bucket(js: JetStreamContext) -> None:
    name, kv = await bucket(js)
    assert await read(js, name) == []
    await kv.put("k.a", b"a value the reader does not need")
    assert [(e.key, e.value) for e in await read(js, name, values=False)] == [("k.a", b"")]


async def test_more_keys_than_one_fetch_and_a_bound(js: JetStreamContext) -> None:
    name, kv = await bucket(js)
    count = FETCH_BATCH * 2 + 7
    for i in range(count):
        await kv.put(f"k.{i:04d}", str(i).encode())
    got = await read(js, name)
    assert [e.key for e in got] == [f"k.{i:04d}" for i in range(count)]
    with pytest.raises(OverflowError, match=f"more than {count - 1} keys"):
        await read(js, name, limit=count - 1)
    assert len(await read(js, name, limit=count)) == count


async def test_the_read_leaves_no_consumer_behind(js: JetStreamContext) -> None:
    name, kv = await bucket(js)
    await kv.put("k.a", b"a")
    await read(js, name)
    with pytest.raises(OverflowError):
        await read(js, name, limit=0)
    assert (await js.stream_info(f"KV_{name}")).state.consumer_count == 0
