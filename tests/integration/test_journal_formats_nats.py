"""A journal entry or snapshot in a format this release cannot read stops recovery with a
typed error that names the format, its version, the shard and the position (DESIGN.md §9):
never a crash, never a silent misread. Real nats-server; the foreign messages are put
there raw, as a newer release would have written them.
"""

from __future__ import annotations

import io
import uuid
import zlib
from collections.abc import AsyncIterator

import fastavro
import nats
import pytest
import pytest_asyncio
from nats.js import api

from adapters.nats.codec import READABLE_VERSIONS
from adapters.nats.journal import JournalConfig, connect_journal
from adapters.nats.server import EmbeddedNats
from adapters.nats.snapshot_codec import JOURNAL_TYPES, SNAPSHOT_VERSION, decode_state, encode_avro
from engine.domain.catalog import Site, Sku
from engine.domain.cell import CellLimits
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.domain.errors import Unavailable
from engine.domain.formats import UnreadableFormat
from engine.domain.ports import Backend, BackendFactory
from engine.domain.shard import PutSite, PutSku
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.host import HostState, ShardHost, SnapshotPolicy, rebuild

QUICK = {"ack_timeout_s": 1.0, "api_timeout_s": 1.0, "connect_timeout_s": 1.0, "connect_deadline_s": 1.0}


@pytest_asyncio.fixture(loop_scope="session")
async def config(nats_server: EmbeddedNats) -> AsyncIterator[JournalConfig]:
    name = uuid.uuid4().hex[:8]
    yield JournalConfig(
        url=nats_server.url,
        stream=f"FORMATS_{name}",
        subject_prefix=f"formats.{name}",
        snapshot_bucket=f"formats-{name}",
        max_bytes=64 * 1024 * 1024,  # reserved on the shared test server: room for every test here
        snapshot_max_bytes=64 * 1024 * 1024,
        **QUICK,  # type: ignore[arg-type]
    )


@pytest.fixture
def shard() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def connector(config: JournalConfig) -> BackendFactory:
    async def connect() -> Backend:
        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    return connect


async def a_shard_with_two_batches(config: JournalConfig, shard: str) -> None:
    host = ShardHost(shard, clock=ManualClock(), backend=connector(config), sweep_interval_ms=0)
    await host.start()
    await host.apply([PutSku(Sku("SKU-1")), PutSite(Site("S1"))])
    await host.apply([Receive("r1", "SKU-1", "S1", "L1", 5)])
    await host.stop()


def framed(version: int) -> bytes:
    """An intact message whose leading version this release does not know."""
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out, {"type": "record", "name": "V", "fields": [{"name": "v", "type": "int"}]}, {"v": version}
    )
    body = out.getvalue() + b"\x00" * 16
    return body + zlib.crc32(body).to_bytes(4, "big")


async def publish_raw(config: JournalConfig, subject: str, payload: bytes) -> int:
    nc = await nats.connect(config.url, allow_reconnect=False)
    try:
        return (await nc.jetstream(timeout=2).publish(subject, payload, headers={"Nats-Msg-Id": "future"})).seq
    finally:
        await nc.close()


async def put_raw_snapshot(config: JournalConfig, shard: str, blob: bytes, position: int) -> None:
    nc = await nats.connect(config.url, allow_reconnect=False)
    try:
        store = await nc.jetstream(timeout=2).object_store(config.snapshot_bucket)
        headers = {"Lotwise-Shard": [shard], "Lotwise-Batch-Seq": ["2"], "Lotwise-Position": [str(position)]}
        headers["Lotwise-Taken-At-Ms"] = ["1"]
        await store.put(shard, blob, meta=api.ObjectMeta(name=shard, headers=headers))  # type: ignore[arg-type]
    finally:
        await nc.close()


async def rebuilt(config: JournalConfig, shard: str) -> None:
    backend = await connector(config)()
    try:
        await rebuild(shard, DEFAULT_DICTIONARY, CellLimits(), backend.journal, backend.snapshots)
    finally:
        await backend.close()


UNKNOWN = max(READABLE_VERSIONS) + 1  # a version no release has written yet


async def test_a_journal_entry_of_an_unknown_version_stops_recovery_naming_it(
    config: JournalConfig, shard: str
) -> None:
    await a_shard_with_two_batches(config, shard)
    position = await publish_raw(config, config.subject(shard), framed(UNKNOWN))

    with pytest.raises(UnreadableFormat) as caught:
        await rebuilt(config, shard)

    error = caught.value
    assert (error.stream, error.shard, error.position) == (config.stream, shard, position)
    assert (error.format, error.version) == ("journal batch (Avro)", UNKNOWN)
    assert all(word in str(error) for word in (shard, str(position), f"journal batch (Avro) version {UNKNOWN}"))

    host = ShardHost(shard, clock=ManualClock(), backend=connector(config), sweep_interval_ms=0)
    with pytest.raises(Unavailable, match=f"UnreadableFormat.*position {position}.*version {UNKNOWN}"):
        await host.start()
    assert host.state is HostState.BROKEN
    await host.stop()


async def test_a_snapshot_of_an_unknown_format_stops_recovery_naming_it(config: JournalConfig, shard: str) -> None:
    await a_shard_with_two_batches(config, shard)
    await put_raw_snapshot(config, shard, b"LWZ9" + b"\x00" * 64, position=777)

    with pytest.raises(UnreadableFormat) as caught:
        await rebuilt(config, shard)

    error = caught.value
    assert (error.stream, error.shard, error.position) == (f"{config.snapshot_bucket}/{shard}", shard, 777)
    assert (error.format, error.version) == ("shard snapshot tagged b'LWZ9'", None)


def columnar(version: int) -> bytes:
    """An intact `LWSB` snapshot body whose leading version this release does not know."""
    body = version.to_bytes(2, "little") + b"\x00" * 16
    return body + zlib.crc32(body).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("blob", "version"),
    [
        # an `LWSA` body's version is its Avro version: one past every Avro version known
        (b"LWSA" + framed(max(JOURNAL_TYPES) + 1), max(JOURNAL_TYPES) + 1),
        (b"LWSB" + columnar(SNAPSHOT_VERSION + 1), SNAPSHOT_VERSION + 1),
    ],
    ids=["avro-tag-newer-version", "columnar-newer-version"],
)
async def test_a_snapshot_of_a_newer_version_stops_recovery_naming_it(
    config: JournalConfig, shard: str, blob: bytes, version: int
) -> None:
    await a_shard_with_two_batches(config, shard)
    await put_raw_snapshot(config, shard, blob, position=778)

    with pytest.raises(UnreadableFormat) as caught:
        await rebuilt(config, shard)

    assert (caught.value.format, caught.value.version, caught.value.position) == ("shard snapshot", version, 778)


async def test_a_version_1_snapshot_left_by_the_previous_release_still_recovers(
    config: JournalConfig, shard: str
) -> None:
    """An engine upgraded in place finds an Avro (`LWSA`) snapshot in its store: it recovers
    from it and the tail, and its next snapshot is version 2."""
    host = ShardHost(shard, clock=ManualClock(), backend=connector(config), sweep_interval_ms=0)
    await host.start()
    await host.apply([PutSku(Sku("SKU-1")), PutSite(Site("S1"))])
    first = await host.apply([Receive("r1", "SKU-1", "S1", "L1", 5)])
    state, position = host.core.export_state(), host.position
    await host.apply([Receive("r2", "SKU-1", "S1", "L2", 7)])  # the tail after the snapshot
    expected = await host.state_hash()
    await host.stop()
    await put_raw_snapshot(config, shard, encode_avro(state), position=position)

    reader = ShardHost(shard, clock=ManualClock(), backend=connector(config), sweep_interval_ms=0)
    await reader.start()
    assert await reader.state_hash() == expected
    assert await reader.apply([Receive("r1", "SKU-1", "S1", "L1", 5)]) == first  # remembered in the snapshot
    await reader.snapshot_now()
    await reader.stop()
    nc = await nats.connect(config.url, allow_reconnect=False)
    try:
        blob = (await (await nc.jetstream(timeout=2).object_store(config.snapshot_bucket)).get(shard)).data
    finally:
        await nc.close()
    assert blob is not None
    assert blob[:4] == b"LWSB"
    assert decode_state(blob) == reader.core.export_state()


async def test_a_snapshot_taken_by_the_host_recovers_through_the_object_store(
    config: JournalConfig, shard: str
) -> None:
    writer = ShardHost(
        shard, clock=ManualClock(), backend=connector(config), sweep_interval_ms=0, snapshot_policy=SnapshotPolicy()
    )
    await writer.start()
    await writer.apply([PutSku(Sku("SKU-1")), PutSite(Site("S1"))])
    first = await writer.apply([Receive("r1", "SKU-1", "S1", "L1", 5)])
    assert await writer.snapshot_now() == 2
    expected = await writer.state_hash()
    await writer.stop()

    reader = ShardHost(shard, clock=ManualClock(), backend=connector(config), sweep_interval_ms=0)
    await reader.start()
    assert await reader.state_hash() == expected
    assert await reader.apply([Receive("r1", "SKU-1", "S1", "L1", 5)]) == first  # remembered in the snapshot
    await reader.stop()
