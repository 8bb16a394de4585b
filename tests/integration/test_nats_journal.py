"""The JetStream journal against a real nats-server: what only a real server can show.

Crashes (kill -9), outages, corrupt and duplicate messages, a full stream. The tests that
crash a server start one of their own; the others share the session's `nats_server`.
"""

from __future__ import annotations

import asyncio
import pickle
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.js import api

from adapters.nats.codec import encode_entry
from adapters.nats.journal import (
    JetStreamJournal,
    JetStreamSnapshotStore,
    JournalConfig,
    connect_journal,
)
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig, NatsServerError, render_config
from engine.domain.ports import (
    JournalConflict,
    JournalCorrupt,
    JournalEntry,
    JournalUnavailable,
    Snapshot,
)
from tests.nats_fixtures import journal_entry, server_config_for_tests
from tests.state_fixtures import shard_state

# Fast failure and reconnection: tests should not sit out production timeouts.
QUICK = {
    "ack_timeout_s": 1.0,
    "api_timeout_s": 1.0,
    "connect_timeout_s": 1.0,
    "connect_deadline_s": 1.0,
    "reconnect_wait_s": 0.1,
}


@dataclass(slots=True)
class Opened:
    journal: JetStreamJournal
    snapshots: JetStreamSnapshotStore
    close: Callable[[], Awaitable[None]]
    config: JournalConfig


OpenJournal = Callable[..., Awaitable[Opened]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    """A server of this module's own: its journals use the default subjects
    (`lotwise.journal.>`), which overlap the namespaced journals (`lotwise.journal.<tag>.>`)
    that engine tests leave on the session's server, and JetStream refuses overlapping streams."""
    server = EmbeddedNats(server_config_for_tests(tmp_path_factory.mktemp("nats-journal")))
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def open_journal(nats_server: EmbeddedNats) -> AsyncIterator[OpenJournal]:
    """Connects journals to the session's server (options by keyword); closes them after."""
    opened: list[Opened] = []

    async def open_(server: EmbeddedNats = nats_server, **options: object) -> Opened:
        config = JournalConfig(url=server.url, **{**QUICK, **options})  # type: ignore[arg-type]
        journal, snapshots, close = await connect_journal(config)
        opened.append(Opened(journal, snapshots, close, config))
        return opened[-1]

    yield open_
    for o in opened:
        await o.close()


@pytest_asyncio.fixture(loop_scope="session")
async def own_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A server this test may crash."""
    server = EmbeddedNats(server_config_for_tests(tmp_path / "nats"))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def shard() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


async def append_batches(journal: JetStreamJournal, shard: str, first: int, last: int, position: int = 0) -> int:
    for n in range(first, last + 1):
        position = await journal.append(journal_entry(shard, n), position)
    return position


async def read_all(journal: JetStreamJournal, shard: str, after: int = 0) -> list[tuple[int, JournalEntry]]:
    return [item async for item in journal.read(shard, after)]


async def collect_batch_seqs(journal: JetStreamJournal, shard: str, into: list[int]) -> None:
    """Read the shard, noting each batch number as it comes (to see where a read stopped)."""
    async for _, entry in journal.read(shard):
        into.append(entry.batch_seq)


async def append_until_refused(journal: JetStreamJournal, shard: str, into: list[int], at_most: int) -> None:
    position = 0
    for n in range(1, at_most + 1):
        position = await journal.append(journal_entry(shard, n), position)
        into.append(n)


async def until_appended(journal: JetStreamJournal, entry: JournalEntry, expected: int, within_s: float) -> int:
    """Retry an append until the journal is back (bounded)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await journal.append(entry, expected)
        except JournalUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def raw_publish(server: EmbeddedNats, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> int:
    nc = await nats.connect(server.url, allow_reconnect=False)
    try:
        return (await nc.jetstream(timeout=2).publish(subject, payload, headers=headers)).seq
    finally:
        await nc.close()


# ---- crashes and outages ----


async def test_everything_acknowledged_survives_a_kill_9(
    own_server: EmbeddedNats, open_journal: OpenJournal, shard: str
) -> None:
    first = await open_journal(own_server)
    position = await append_batches(first.journal, shard, 1, 200)
    other_position = await append_batches(first.journal, shard + "b", 1, 20)
    snapshot = Snapshot(shard, 150, 1_500, 77, shard_state(shard, 1_000, label="at 150"))
    await first.snapshots.save(snapshot)

    await own_server.kill()  # SIGKILL: no shutdown, no final flush
    await own_server.start()

    again = await open_journal(own_server)
    read = await read_all(again.journal, shard)
    assert [e.batch_seq for _, e in read] == list(range(1, 201))
    assert read[-1][0] == position == await again.journal.last_position(shard)
    assert await again.journal.last_position(shard + "b") == other_position
    assert await again.snapshots.load(shard) == snapshot
    # The stream still carries on from where it was.
    assert await again.journal.append(journal_entry(shard, 201), position) > position


async def test_an_append_while_the_server_is_down_fails_fast_then_works_after_restart(
    own_server: EmbeddedNats, open_journal: OpenJournal, shard: str
) -> None:
    opened = await open_journal(own_server)
    position = await append_batches(opened.journal, shard, 1, 3)

    await own_server.kill()
    started = time.monotonic()
    with pytest.raises(JournalUnavailable):
        await opened.journal.append(journal_entry(shard, 4), position)
    assert time.monotonic() - started < opened.config.ack_timeout_s + 1.0
    with pytest.raises(JournalUnavailable):
        await opened.journal.last_position(shard)
    with pytest.raises(JournalUnavailable):
        await read_all(opened.journal, shard)
    with pytest.raises(JournalUnavailable):
        await opened.snapshots.load(shard)

    await own_server.start()  # same port, same data
    new_position = await until_appended(opened.journal, journal_entry(shard, 4), position, within_s=10.0)

    assert new_position > position
    assert [e.batch_seq for _, e in await read_all(opened.journal, shard)] == [1, 2, 3, 4]


async def test_connecting_to_no_server_is_unavailable_quickly(tmp_path: Path) -> None:
    server = EmbeddedNats(server_config_for_tests(tmp_path))
    await server.start()
    url = server.url
    await server.stop()

    started = time.monotonic()
    with pytest.raises(JournalUnavailable, match="cannot connect"):
        await connect_journal(JournalConfig(url=url, **QUICK))  # type: ignore[arg-type]
    assert time.monotonic() - started < 2.0


async def test_the_journal_reconnects_after_the_client_gave_up(
    own_server: EmbeddedNats, open_journal: OpenJournal, shard: str
) -> None:
    """Past its bounded reconnect attempts nats-py closes the connection for good; the
    next call connects afresh instead of failing forever."""
    opened = await open_journal(own_server, reconnect_attempts=1, reconnect_wait_s=0.05)
    position = await append_batches(opened.journal, shard, 1, 1)
    await own_server.kill()
    await asyncio.sleep(0.5)  # long enough for one reconnect attempt to fail
    with pytest.raises(JournalUnavailable):
        await opened.journal.append(journal_entry(shard, 2), position)

    await own_server.start()

    assert await until_appended(opened.journal, journal_entry(shard, 2), position, within_s=10.0) > position


# ---- corruption, gaps, duplicates ----


async def test_an_undecodable_message_stops_the_read(
    nats_server: EmbeddedNats, open_journal: OpenJournal, shard: str
) -> None:
    opened = await open_journal()
    position = await append_batches(opened.journal, shard, 1, 2)
    garbage_seq = await raw_publish(
        nats_server, opened.config.subject(shard), b"\x00\xffnot a journal entry\x13\x37", {"Nats-Msg-Id": "garbage"}
    )

    read: list[int] = []
    with pytest.raises(JournalCorrupt) as caught:
        await collect_batch_seqs(opened.journal, shard, read)

    assert read == [1, 2]  # everything before it was delivered; nothing after is skipped to
    assert caught.value.stream == opened.config.stream == "LOTWISE_JOURNAL"
    assert caught.value.position == garbage_seq > position
    assert "LOTWISE_JOURNAL" in str(caught.value)
    assert str(garbage_seq) in str(caught.value)


async def test_a_gap_in_batch_numbers_is_corruption(open_journal: OpenJournal, shard: str) -> None:
    opened = await open_journal()
    position = await append_batches(opened.journal, shard, 1, 2)
    gap_position = await opened.journal.append(journal_entry(shard, 4), position)  # batch 3 is missing

    with pytest.raises(JournalCorrupt, match="gap") as caught:
        await read_all(opened.journal, shard)

    assert (caught.value.stream, caught.value.position) == ("LOTWISE_JOURNAL", gap_position)


async def test_a_journal_that_does_not_start_at_batch_1_is_corruption(open_journal: OpenJournal, shard: str) -> None:
    opened = await open_journal()
    position = await opened.journal.append(journal_entry(shard, 2), 0)

    with pytest.raises(JournalCorrupt) as caught:
        await read_all(opened.journal, shard)
    assert caught.value.position == position
    # Read from a position, the first entry is the caller's to check (against its snapshot).
    await opened.journal.append(journal_entry(shard, 3), position)
    assert [e.batch_seq for _, e in await read_all(opened.journal, shard, position)] == [3]


async def test_an_entry_of_another_shard_on_the_subject_is_corruption(
    nats_server: EmbeddedNats,
    open_journal: OpenJournal,
    shard: str,
) -> None:
    opened = await open_journal()
    stray = await raw_publish(nats_server, opened.config.subject(shard), encode_entry(journal_entry("elsewhere", 1)))

    with pytest.raises(JournalCorrupt, match="elsewhere") as caught:
        await read_all(opened.journal, shard)
    assert caught.value.position == stray


async def test_a_duplicate_message_id_is_stored_once(
    nats_server: EmbeddedNats, open_journal: OpenJournal, shard: str
) -> None:
    opened = await open_journal()
    subject = opened.config.subject(shard)
    entry = encode_entry(journal_entry(shard, 1))

    first = await raw_publish(nats_server, subject, entry, {"Nats-Msg-Id": f"{shard}:1"})
    second = await raw_publish(nats_server, subject, entry, {"Nats-Msg-Id": f"{shard}:1"})

    assert second == first
    assert [p for p, _ in await read_all(opened.journal, shard)] == [first]


async def test_a_retried_append_is_idempotent_but_a_different_batch_under_its_number_is_refused(
    open_journal: OpenJournal, shard: str
) -> None:
    opened = await open_journal()
    position = await opened.journal.append(journal_entry(shard, 1), 0)

    # The same batch again (its ack was lost, say) at the position it now is: not stored twice.
    assert await opened.journal.append(journal_entry(shard, 1), position) == position
    # Another batch claiming number 1: another writer's, and this one must not think it journaled.
    with pytest.raises(JournalConflict, match="other content"):
        await opened.journal.append(journal_entry(shard, 1, qty=99), position)
    # A stale writer retrying against the position it had: fenced.
    with pytest.raises(JournalConflict):
        await opened.journal.append(journal_entry(shard, 1), 0)

    assert [p for p, _ in await read_all(opened.journal, shard)] == [position]


async def test_reads_leave_no_consumers_behind(
    nats_server: EmbeddedNats, open_journal: OpenJournal, shard: str
) -> None:
    opened = await open_journal(read_batch=8)
    position = await append_batches(opened.journal, shard, 1, 40)
    snapshot = Snapshot(shard, 40, position, 1, shard_state(shard, 30_000, cells=10))  # over 1 MB: several chunks
    await opened.snapshots.save(snapshot)

    assert len(await read_all(opened.journal, shard)) == 40
    assert len(await read_all(opened.journal, shard, position)) == 0
    assert await opened.snapshots.load(shard) == snapshot

    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    try:
        js = nc.jetstream()
        consumers = (await js.stream_info(opened.config.stream)).state.consumer_count
        consumers += (await js.stream_info(opened.config.snapshot_stream)).state.consumer_count
    finally:
        await nc.close()
    assert consumers == 0


# ---- limits and settings ----


async def test_a_full_journal_refuses_new_batches_and_keeps_the_old(open_journal: OpenJournal, shard: str) -> None:
    name = f"FULL_{uuid.uuid4().hex[:8]}"
    opened = await open_journal(stream=name, subject_prefix=f"full.{name}", max_bytes=16 * 1024, max_msg_size=4096)
    appended: list[int] = []
    with pytest.raises(JournalUnavailable, match="refused"):
        await append_until_refused(opened.journal, shard, appended, at_most=500)

    assert len(appended) > 10
    assert [e.batch_seq for _, e in await read_all(opened.journal, shard)] == appended


async def test_an_oversized_batch_is_not_journaled(open_journal: OpenJournal, shard: str) -> None:
    opened = await open_journal()
    huge = journal_entry(shard, 1)
    huge = JournalEntry(shard, 1, huge.now_ms, (), huge.movements * 5_000)

    with pytest.raises(JournalUnavailable, match="max_msg_size"):
        await opened.journal.append(huge, 0)
    assert await opened.journal.last_position(shard) == 0


async def test_the_stream_is_explicitly_bounded_and_durable(
    nats_server: EmbeddedNats, open_journal: OpenJournal
) -> None:
    opened = await open_journal()
    await open_journal()  # connecting again changes nothing

    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(opened.config.stream)
        bucket = await nc.jetstream().stream_info(opened.config.snapshot_stream)
    finally:
        await nc.close()
    c = info.config
    assert c.subjects == ["lotwise.journal.>"]
    assert c.storage == api.StorageType.FILE
    assert c.discard == api.DiscardPolicy.NEW  # refuse when full, never drop old entries
    assert c.retention == api.RetentionPolicy.LIMITS
    assert (c.max_bytes, c.max_msg_size, c.duplicate_window) == (2 * 1024**3, 1024 * 1024, 120.0)
    assert c.deny_delete
    assert bucket.config.max_bytes == opened.config.snapshot_max_bytes
    assert bucket.config.discard == api.DiscardPolicy.NEW


async def test_a_changed_config_updates_the_stream(nats_server: EmbeddedNats, open_journal: OpenJournal) -> None:
    name = f"UPD_{uuid.uuid4().hex[:8]}"
    await open_journal(stream=name, subject_prefix=f"upd.{name}", max_bytes=1024 * 1024)
    opened = await open_journal(stream=name, subject_prefix=f"upd.{name}", max_bytes=2 * 1024 * 1024)

    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(opened.config.stream)
    finally:
        await nc.close()
    assert info.config.max_bytes == 2 * 1024 * 1024


def test_the_config_is_picklable_and_validated() -> None:
    config = JournalConfig(url="nats://127.0.0.1:4333", replicas=3)
    assert pickle.loads(pickle.dumps(config)) == config
    assert config.subject("s-1") == "lotwise.journal.s-1"
    for bad in ("", "a.b", "a*", "a>", "a b"):
        with pytest.raises(ValueError, match="subject token"):
            config.subject(bad)
    with pytest.raises(ValueError, match="snapshot_chunk_bytes"):
        JournalConfig(snapshot_chunk_bytes=0)


# ---- the embedded server ----


def test_the_server_config_syncs_every_write_and_stays_on_loopback(tmp_path: Path) -> None:
    text = render_config(EmbeddedNatsConfig(data_dir=tmp_path), 4222, 0, tmp_path / "js", tmp_path)
    assert "sync_interval: always" in text
    assert 'host: "127.0.0.1"' in text
    assert "max_file_store:" in text
    assert "max_memory_store:" in text
    assert "http" not in text  # no monitoring port unless asked
    monitored = render_config(EmbeddedNatsConfig(data_dir=tmp_path, monitoring=True), 4222, 0, tmp_path, tmp_path)
    assert 'http: "127.0.0.1:-1"' in monitored


async def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = EmbeddedNats(EmbeddedNatsConfig(data_dir=tmp_path, binary=tmp_path / "no-such-nats-server"))
    with pytest.raises(NatsServerError, match="not found"):
        await server.start()


async def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    taken = EmbeddedNats(EmbeddedNatsConfig(data_dir=tmp_path, port=nats_server.port, start_timeout_s=5.0))
    with pytest.raises(NatsServerError, match="exited") as caught:
        await taken.start()
    assert "address already in use" in str(caught.value)
    assert not taken.running


async def test_the_server_restarts_on_the_same_port_with_monitoring_on_loopback(tmp_path: Path) -> None:
    config = EmbeddedNatsConfig(data_dir=tmp_path, monitoring=True)
    async with EmbeddedNats(config) as server:
        url, monitoring = server.url, server.monitoring_url
        assert url.startswith("nats://127.0.0.1:")
        assert monitoring is not None
        assert monitoring.startswith("http://127.0.0.1:")
        await server.restart()
        assert (server.url, server.monitoring_url) == (url, monitoring)
        assert server.running
    assert not server.running
    assert server.log_path.exists()
