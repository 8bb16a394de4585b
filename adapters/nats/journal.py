"""The journal and snapshot store on NATS JetStream (DESIGN.md §9, §10).

One stream holds every shard's journal, one subject per shard (`<prefix>.<shard>`), one
message per batch; a batch's position is the message's stream sequence. Appends are
fenced with `Nats-Expected-Last-Subject-Sequence` (a stale writer is refused) and
deduplicated with `Nats-Msg-Id` (`<shard>:<batch_seq>`). The server runs with
`sync_interval: always` (adapters.nats.server), so a PubAck means the batch is on disk.

Snapshots live in a JetStream object store, one object per shard, replaced on each save;
the object store chunks them, so a snapshot of millions of quants is fine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import nats
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from adapters.nats.codec import decode_entry, encode_entry
from adapters.nats.snapshot_codec import PartsReader, decode_state, encode_state_parts
from engine.domain.formats import UnreadableFormat, UnsupportedFormat
from engine.domain.ports import JournalConflict, JournalCorrupt, JournalEntry, JournalUnavailable, Snapshot
from engine.domain.state import ShardState

log = structlog.get_logger("lotwise.journal")

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024

Encode = Callable[[JournalEntry], bytes]
Decode = Callable[[bytes], JournalEntry]
CloseFn = Callable[[], Awaitable[None]]

# JetStream API error codes we act on (nats-server's errors.json).
ERR_WRONG_LAST_SEQUENCE = 10071  # an expected-last-(subject-)sequence header did not match
ERR_STREAM_NAME_IN_USE = 10058  # add_stream: the stream exists with another config
ERR_NO_MESSAGE_FOUND = 10037

# What "the journal did not answer" looks like: timeouts, no responders, closed or lost
# connections, socket errors. (APIError is a nats.errors.Error too: catch it first.)
_TRANSIENT = (TimeoutError, nats.errors.Error, OSError)
_FORBIDDEN_IN_TOKEN = frozenset(".*> \t\r\n")
_CLOSE_TIMEOUT_S = 5.0
_CLEANUP_TIMEOUT_S = 1.0  # best-effort consumer deletion; inactive_threshold is the backstop
_MAX_EMPTY_PULLS = 3  # pulls in a row that deliver nothing before a read gives up


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """Where and how the journal lives. Frozen and picklable: built once at start-up and
    shipped to every shard actor."""

    url: str = "nats://127.0.0.1:4222"
    stream: str = "LOTWISE_JOURNAL"
    subject_prefix: str = "lotwise.journal"
    replicas: int = 1  # 1 on one machine; 3 in a cluster (DESIGN §9)
    duplicate_window_s: float = 120.0
    # The stream is bounded and refuses new writes when full (discard NEW): a journal that
    # silently dropped its oldest entries would make recovery from older snapshots wrong.
    max_bytes: int = 2 * GiB
    max_msg_size: int = 1 * MiB  # one batch; must fit the server's max_payload
    ack_timeout_s: float = 5.0  # wait for a PubAck; past it the batch is not acknowledged
    api_timeout_s: float = 5.0  # stream/consumer management, message gets, object chunks
    connect_timeout_s: float = 2.0  # one connection attempt
    connect_deadline_s: float = 5.0  # the first connection, retries included
    reconnect_attempts: int = 30  # then the client gives up; the next call reconnects afresh
    reconnect_wait_s: float = 0.5
    ping_interval_s: float = 10.0  # to notice a dead server on a silent network
    read_batch: int = 512  # messages per pull while reading
    read_batch_bytes: int = 16 * MiB  # bytes per pull (raised to fit one max-size message)
    read_timeout_s: float = 5.0  # for one pull's answer
    snapshot_bucket: str = "lotwise-snapshots"
    snapshot_max_bytes: int = 1 * GiB  # the bucket; holds the newest of each shard (x2 while replacing)
    snapshot_chunk_bytes: int = 512 * KiB  # one object-store message: at most the server's max_payload
    snapshot_timeout_s: float = 120.0  # for a whole save or load
    client_name: str = "lotwise-journal"

    def __post_init__(self) -> None:
        positive = ("replicas", "max_bytes", "max_msg_size", "read_batch", "read_batch_bytes", "connect_deadline_s")
        for name in (*positive, "snapshot_max_bytes", "snapshot_chunk_bytes", "reconnect_attempts"):
            if getattr(self, name) <= 0:
                raise ValueError(f"JournalConfig.{name} must be positive")
        if not self.subject_prefix or any(not token for token in self.subject_prefix.split(".")):
            raise ValueError(f"bad subject prefix {self.subject_prefix!r}")

    def subject(self, shard: str) -> str:
        if not shard or any(c in _FORBIDDEN_IN_TOKEN for c in shard):
            raise ValueError(f"shard name {shard!r} cannot be a subject token (no '.', '*', '>', spaces)")
        return f"{self.subject_prefix}.{shard}"

    @property
    def snapshot_stream(self) -> str:
        return f"OBJ_{self.snapshot_bucket}"


def journal_stream_config(config: JournalConfig) -> api.StreamConfig:
    """Every limit explicit: nothing here is left to server defaults."""
    return api.StreamConfig(
        name=config.stream,
        description="Lotwise journal: one subject per shard, one message per batch",
        subjects=[f"{config.subject_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.NEW,
        max_bytes=config.max_bytes,
        max_msgs=-1,
        max_msgs_per_subject=-1,
        max_age=0,  # kept until an operator trims it (after snapshots and the history sink)
        max_msg_size=config.max_msg_size,
        num_replicas=config.replicas,
        duplicate_window=config.duplicate_window_s,
        # No single batch may be deleted: that would be a gap found only at recovery.
        # (Purging stays an operator's decision, e.g. trimming below the oldest snapshot.)
        deny_delete=True,
        allow_rollup_hdrs=False,
    )


def snapshot_stream_config(config: JournalConfig) -> api.StreamConfig:
    """The object store's stream, as nats-py's create_object_store builds it, but bounded."""
    bucket = config.snapshot_bucket
    return api.StreamConfig(
        name=config.snapshot_stream,
        description="Lotwise shard snapshots (object store)",
        subjects=[f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.NEW,
        max_bytes=config.snapshot_max_bytes,
        max_age=0,
        num_replicas=config.replicas,
        allow_rollup_hdrs=True,  # the object store replaces an object's metadata by rollup
        allow_direct=True,
    )


# ---- the connection ----


class NatsLink:
    """The NATS connection the journal and the snapshot store share.

    nats-py reconnects by itself a bounded number of times; once it has given up (the
    connection is closed) the next call makes one fresh, bounded connection attempt, so a
    long outage does not leave a shard with a dead journal forever."""

    def __init__(self, config: JournalConfig) -> None:
        self.config = config
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._lock: asyncio.Lock | None = None  # created in the loop that uses it
        self._closed = False

    async def connect(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._nc is not None and not self._nc.is_closed:
                return
            self._nc = await _connect(self.config, lambda: self._closed)
            self._js = self._nc.jetstream(timeout=self.config.api_timeout_s)

    async def client(self) -> tuple[NatsClient, JetStreamContext]:
        """The connection, ready for a request; JournalUnavailable at once while it is down
        (so a caller is not left waiting out a timeout for a server that is not there)."""
        if self._closed:
            raise JournalUnavailable("the journal connection was closed")
        if self._nc is None or self._nc.is_closed:
            await self.connect()
        assert self._nc is not None
        assert self._js is not None
        if not self._nc.is_connected:
            raise JournalUnavailable(f"not connected to NATS at {self.config.url} (reconnecting)")
        return self._nc, self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def close(self) -> None:
        self._closed = True
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), _CLOSE_TIMEOUT_S)


async def _connect(config: JournalConfig, closing: Callable[[], bool]) -> NatsClient:
    async def on_error(exc: Exception) -> None:
        if not closing():
            log.warning("nats client error", url=config.url, error=f"{type(exc).__name__}: {exc}")

    async def on_disconnected() -> None:
        if not closing():
            log.warning("nats disconnected", url=config.url)

    async def on_reconnected() -> None:
        log.info("nats reconnected", url=config.url)

    # nats-py retries even the first connection up to `reconnect_attempts` times; the
    # deadline keeps a caller (a recovering shard) from waiting that long on a server that
    # is not there: it fails and lets the caller's own backoff decide.
    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=[config.url],
                name=config.client_name,
                connect_timeout=config.connect_timeout_s,
                allow_reconnect=True,
                max_reconnect_attempts=config.reconnect_attempts,
                reconnect_time_wait=config.reconnect_wait_s,
                ping_interval=config.ping_interval_s,
                max_outstanding_pings=3,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            ),
            config.connect_deadline_s,
        )
    except _TRANSIENT as exc:
        raise JournalUnavailable(f"cannot connect to NATS at {config.url}: {type(exc).__name__}: {exc}") from exc


async def ensure_stream(js: JetStreamContext, stream: api.StreamConfig) -> None:
    """Create the stream, or bring an existing one to this config (idempotent; concurrent
    callers with the same config all succeed).

    Look it up first: for an existing stream, `add` is refused for lack of storage before
    the server notices the name is taken (it counts the stream's reservation twice)."""
    try:
        if not stream.name:
            raise ValueError("a stream config must name its stream")
        await js.stream_info(stream.name)
    except NotFoundError:
        try:
            await js.add_stream(stream)
            return
        except APIError as exc:
            if exc.err_code != ERR_STREAM_NAME_IN_USE:
                raise
    await js.update_stream(stream)


async def connect_journal(
    config: JournalConfig, *, encode: Encode | None = None, decode: Decode | None = None
) -> tuple[JetStreamJournal, JetStreamSnapshotStore, CloseFn]:
    """Connect, make sure the journal stream and the snapshot bucket exist with `config`'s
    settings, and return the journal, the snapshot store and the function that closes them."""
    link = NatsLink(config)
    await link.connect()
    try:
        nc, js = await link.client()
        for name in ("max_msg_size", "snapshot_chunk_bytes"):
            if getattr(config, name) > nc.max_payload:
                raise ValueError(f"JournalConfig.{name} exceeds the server's max_payload ({nc.max_payload} bytes)")
        await ensure_stream(js, journal_stream_config(config))
        await ensure_stream(js, snapshot_stream_config(config))
    except _TRANSIENT as exc:
        await link.close()
        raise JournalUnavailable(f"cannot set up the journal on {config.url}: {_describe(exc)}") from exc
    except BaseException:
        await link.close()
        raise
    return JetStreamJournal(link, encode=encode, decode=decode), JetStreamSnapshotStore(link), link.close


def _describe(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return f"{type(exc).__name__} {exc.err_code}: {exc.description}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---- reading a subject in batches ----


@dataclass(frozen=True, slots=True)
class Delivered:
    stream_seq: int
    consumer_seq: int
    subject: str
    data: bytes


def _ack_sequences(reply: str) -> tuple[int, int]:
    """(stream seq, consumer seq) from a delivery's ack subject:
    $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or the newer form
    with <domain>.<account hash> after ACK and a trailing token."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[6])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[8])
    raise ValueError(f"unexpected ack subject {reply!r}")


class NothingToRead(JournalUnavailable):
    """Pulls keep coming back empty although the caller expects more messages."""


@dataclass(slots=True)
class _Pull:
    """What one pull request has delivered so far."""

    inbox: str
    want: int
    msgs: list[Msg] = field(default_factory=list)
    status: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PullReader:
    """Reads one subject of a stream from a start sequence, in order, in bounded batches.

    An ephemeral pull consumer (no acks, in memory, removed after use or when idle) is
    asked for `batch` messages / `max_bytes` at a time with `no_wait`, so each pull ends
    either with the count or with a status message; the messages are collected by one
    subscription callback and handed over a batch at a time (per-message awaits made
    nats-py's fetch() 4x slower)."""

    def __init__(
        self, nc: NatsClient, js: JetStreamContext, stream: str, subject: str, start_seq: int, config: JournalConfig
    ) -> None:
        self._nc, self._js, self._stream, self._subject = nc, js, stream, subject
        self._start_seq = max(1, start_seq)
        self._batch = config.read_batch
        self._max_bytes = max(config.read_batch_bytes, 2 * config.max_msg_size)
        self._timeout_s = config.read_timeout_s
        self._inactive_s = max(30.0, 3 * config.read_timeout_s)
        self._api_timeout_s = config.api_timeout_s
        self._pull: _Pull | None = None
        self._pulls = 0

    async def batches(self, limit: int | None = None) -> AsyncIterator[list[Delivered]]:
        """Batches until the caller stops; `limit` caps the count of the next pulls (to read
        exactly N messages). Raises nats errors and JournalUnavailable."""
        consumer = await self._create_consumer()
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(
            f"{inbox}.*",
            cb=self._on_msg,
            pending_msgs_limit=2 * self._batch + 16,
            pending_bytes_limit=2 * self._max_bytes,
        )
        try:
            next_cseq, empty = 1, 0
            while True:
                want = self._batch if limit is None else min(self._batch, limit)
                pull = await self._pull_once(consumer, inbox, want)
                if not pull.msgs:
                    empty += 1
                    if empty >= _MAX_EMPTY_PULLS:
                        raise NothingToRead(
                            f"{self._stream}: no messages on {self._subject} from consumer sequence {next_cseq} "
                            f"after {empty} pulls (last status {pull.status or '-'})"
                        )
                    continue
                empty = 0
                batch = [self._delivered(m) for m in pull.msgs]
                for d in batch:  # no acks, no redeliveries: consumer sequences are 1, 2, 3, …
                    if d.consumer_seq != next_cseq:
                        raise JournalUnavailable(
                            f"{self._stream}: delivery skipped from consumer sequence {next_cseq} to {d.consumer_seq}"
                        )
                    next_cseq += 1
                if limit is not None:
                    limit -= len(batch)
                yield batch
                if limit is not None and limit <= 0:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            if self._nc.is_connected:  # else the server drops it after inactive_threshold
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._js.delete_consumer(self._stream, consumer), _CLEANUP_TIMEOUT_S)

    async def _create_consumer(self) -> str:
        name = f"lotwise_read_{secrets.token_hex(8)}"
        config = api.ConsumerConfig(
            name=name,
            filter_subject=self._subject,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._start_seq,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            inactive_threshold=self._inactive_s,  # the server removes it if we vanish
            mem_storage=True,
            num_replicas=1,
        )
        await self._js.add_consumer(self._stream, config=config, timeout=self._api_timeout_s)
        return name

    async def _pull_once(self, consumer: str, inbox: str, want: int) -> _Pull:
        self._pulls += 1
        pull = self._pull = _Pull(inbox=f"{inbox}.{self._pulls}", want=want)
        request = {"batch": want, "max_bytes": self._max_bytes, "no_wait": True}
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{consumer}", json.dumps(request).encode(), reply=pull.inbox
        )
        try:
            await asyncio.wait_for(pull.done.wait(), self._timeout_s)
        except TimeoutError:
            raise JournalUnavailable(
                f"{self._stream}: no answer to a pull on {self._subject} within {self._timeout_s}s"
            ) from None
        self._pull = None
        return pull

    async def _on_msg(self, msg: Msg) -> None:
        pull = self._pull
        if pull is None:
            return
        if msg.reply.startswith("$JS.ACK."):
            pull.msgs.append(msg)
            if len(pull.msgs) >= pull.want:
                pull.done.set()
        elif msg.subject == pull.inbox:  # a status (404 no messages, 408, 409 max bytes): the pull is over
            pull.status = (msg.headers or {}).get("Status", "?")
            pull.done.set()

    @staticmethod
    def _delivered(msg: Msg) -> Delivered:
        stream_seq, consumer_seq = _ack_sequences(msg.reply)
        return Delivered(stream_seq, consumer_seq, msg.subject, msg.data)


# ---- the journal ----


class JetStreamJournal:
    """The Journal port on a JetStream stream (DESIGN.md §9)."""

    def __init__(self, link: NatsLink, *, encode: Encode | None = None, decode: Decode | None = None) -> None:
        self._link = link
        self._config = link.config
        self._encode = encode or encode_entry
        self._decode = decode or decode_entry

    @property
    def stream(self) -> str:
        return self._config.stream

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def append(self, entry: JournalEntry, expected_position: int) -> int:
        subject = self._config.subject(entry.shard)
        payload = self._encode(entry)
        if len(payload) > self._config.max_msg_size:
            raise JournalUnavailable(
                f"{self.stream}: batch {entry.batch_seq} of {entry.shard} encodes to {len(payload)} bytes, "
                f"over max_msg_size {self._config.max_msg_size}: not journaled"
            )
        headers: dict[str, str] = {
            api.Header.MSG_ID: f"{entry.shard}:{entry.batch_seq}",
            api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected_position),
        }
        _, js = await self._link.client()
        try:
            # No Nats-Expected-Stream header: subjects cannot overlap between streams, so the
            # ack's stream is checked instead, and every stored header costs each reader
            # time to parse (nats-py parses headers in Python).
            ack = await js.publish(subject, payload, timeout=self._config.ack_timeout_s, headers=headers)
        except APIError as exc:
            if exc.err_code == ERR_WRONG_LAST_SEQUENCE:
                raise JournalConflict(self.stream, expected_position, f"{subject}: {exc.description}") from None
            raise JournalUnavailable(f"{self.stream}: append to {subject} refused: {_describe(exc)}") from exc
        except _TRANSIENT as exc:
            raise JournalUnavailable(f"{self.stream}: append to {subject} not confirmed: {_describe(exc)}") from exc
        if ack.stream != self.stream:
            raise JournalUnavailable(
                f"{subject} is captured by stream {ack.stream}, not {self.stream}: check the config"
            )
        if ack.duplicate:
            await self._check_duplicate(ack.seq, subject, payload, entry, expected_position)
        return ack.seq

    async def _check_duplicate(
        self, seq: int, subject: str, payload: bytes, entry: JournalEntry, expected_position: int
    ) -> None:
        """JetStream answered "duplicate" (same Nats-Msg-Id within the window) with the
        original's position. That is an idempotent retry only if the stored message is this
        very batch; a different batch under the same number means another writer got there
        first, and this one must not believe it was journaled."""
        _, js = await self._link.client()
        try:
            stored = await js.get_msg(self.stream, seq)
        except _TRANSIENT as exc:
            raise JournalUnavailable(f"{self.stream}: cannot verify duplicate at {seq}: {_describe(exc)}") from exc
        if stored.subject != subject or stored.data != payload:
            raise JournalConflict(
                self.stream,
                expected_position,
                f"batch {entry.batch_seq} of {entry.shard} is already journaled at {seq} with other content",
            )

    async def last_position(self, shard: str) -> int:
        subject = self._config.subject(shard)
        _, js = await self._link.client()
        try:
            # Not a direct get: in a cluster that may be served by a lagging replica.
            msg = await js.get_last_msg(self.stream, subject)
        except NotFoundError as exc:
            if exc.err_code in (ERR_NO_MESSAGE_FOUND, None):
                return 0
            raise JournalUnavailable(f"{self.stream}: last of {subject}: {_describe(exc)}") from exc
        except _TRANSIENT as exc:
            raise JournalUnavailable(f"{self.stream}: last of {subject}: {_describe(exc)}") from exc
        assert msg.seq is not None
        return msg.seq

    async def read(self, shard: str, after_position: int = 0) -> AsyncIterator[tuple[int, JournalEntry]]:
        """The shard's entries after `after_position` up to its last entry when the read
        starts. Checks that batch numbers follow each other (from 1 when reading from the
        start); the caller checks the first one against its snapshot."""
        end = await self.last_position(shard)
        if end <= after_position:
            return
        nc, js = await self._link.client()
        subject = self._config.subject(shard)
        reader = PullReader(nc, js, self.stream, subject, after_position + 1, self._config)
        previous: int | None = 0 if after_position == 0 else None
        try:
            async for batch in reader.batches():
                for delivered in batch:
                    entry = self._decoded(delivered, shard)
                    if previous is not None and entry.batch_seq != previous + 1:
                        raise JournalCorrupt(
                            self.stream,
                            delivered.stream_seq,
                            f"{subject}: batch {entry.batch_seq} follows batch {previous} (a gap)",
                        )
                    previous = entry.batch_seq
                    yield delivered.stream_seq, entry
                    if delivered.stream_seq >= end:
                        return
        except _TRANSIENT as exc:
            raise JournalUnavailable(f"{self.stream}: reading {subject}: {_describe(exc)}") from exc

    def _decoded(self, delivered: Delivered, shard: str) -> JournalEntry:
        try:
            entry = self._decode(delivered.data)
        except UnsupportedFormat as exc:  # intact, but newer (or older) than this release reads
            raise UnreadableFormat.at(self.stream, delivered.stream_seq, shard, exc) from exc
        except Exception as exc:  # whatever the codec raises, the message is not a readable entry
            raise JournalCorrupt(
                self.stream, delivered.stream_seq, f"{delivered.subject}: undecodable entry: {exc}"
            ) from exc
        if entry.shard != shard:
            raise JournalCorrupt(
                self.stream, delivered.stream_seq, f"{delivered.subject}: entry of shard {entry.shard!r}"
            )
        return entry


# ---- snapshots ----

_H_SHARD = "Lotwise-Shard"
_H_BATCH_SEQ = "Lotwise-Batch-Seq"
_H_POSITION = "Lotwise-Position"
_H_TAKEN_AT_MS = "Lotwise-Taken-At-Ms"
_DIGEST_PREFIX = "SHA-256="  # how the object store names its digest (nats.js.object_store)
_LOAD_ATTEMPTS = 3  # a save replacing the object during a load makes the load start over


class JetStreamSnapshotStore:
    """The SnapshotStore port on a JetStream object store: object name = shard; the newest
    save wins (as in the in-memory store). The bucket must hold every shard's newest
    snapshot twice over for a moment: a save writes the new chunks before it drops the old."""

    def __init__(self, link: NatsLink) -> None:
        self._link = link
        self._config = link.config

    @property
    def bucket(self) -> str:
        return self._config.snapshot_bucket

    async def save(self, snapshot: Snapshot) -> None:
        _, js = await self._link.client()
        store = ObjectStore(name=self.bucket, stream=self._config.snapshot_stream, js=js)
        meta = api.ObjectMeta(
            name=snapshot.shard,
            description=f"snapshot of shard {snapshot.shard} at batch {snapshot.batch_seq}",
            # Header values are lists, as in the Go client's nats.Header.
            headers={
                _H_SHARD: [snapshot.shard],
                _H_BATCH_SEQ: [str(snapshot.batch_seq)],
                _H_POSITION: [str(snapshot.position)],
                _H_TAKEN_AT_MS: [str(snapshot.taken_at_ms)],
            },
            options=api.ObjectMetaOptions(max_chunk_size=self._config.snapshot_chunk_bytes),
        )
        try:
            blob = await _encode_between_batches(snapshot.state)
            await asyncio.wait_for(store.put(snapshot.shard, blob, meta=meta), self._config.snapshot_timeout_s)
        except _TRANSIENT as exc:
            raise JournalUnavailable(
                f"{self.bucket}: snapshot of {snapshot.shard} at batch {snapshot.batch_seq} not saved: {_describe(exc)}"
            ) from exc

    async def load(self, shard: str) -> Snapshot | None:
        for attempt in range(_LOAD_ATTEMPTS):
            try:
                return await asyncio.wait_for(self._load_once(shard), self._config.snapshot_timeout_s)
            except _Replaced:
                log.info("snapshot replaced while loading; loading again", shard=shard, attempt=attempt + 1)
            except _TRANSIENT as exc:
                raise JournalUnavailable(f"{self.bucket}: snapshot of {shard} not loaded: {_describe(exc)}") from exc
        raise JournalUnavailable(f"{self.bucket}: snapshot of {shard} kept changing during {_LOAD_ATTEMPTS} loads")

    async def _load_once(self, shard: str) -> Snapshot | None:
        nc, js = await self._link.client()
        store = ObjectStore(name=self.bucket, stream=self._config.snapshot_stream, js=js)
        try:
            info = await store.get_info(shard)
        except ObjectNotFoundError:
            return None
        headers = info.headers or {}
        position = _header_int(headers, _H_POSITION, self.bucket, shard, 0)
        blob = await self._read_chunks(nc, js, info, position)
        return Snapshot(
            shard=shard,
            batch_seq=_header_int(headers, _H_BATCH_SEQ, self.bucket, shard, position),
            position=position,
            taken_at_ms=_header_int(headers, _H_TAKEN_AT_MS, self.bucket, shard, position),
            state=self._decoded(blob, shard, position),
        )

    def _decoded(self, blob: bytes, shard: str, position: int) -> ShardState:
        """The snapshot's state; a format this release cannot read, or a damaged or foreign
        snapshot, stops recovery with the shard and the position it was taken at."""
        where = f"{self.bucket}/{shard}"
        try:
            state = decode_state(blob, deferred_window=True)
        except UnsupportedFormat as exc:
            raise UnreadableFormat.at(where, position, shard, exc) from exc
        except ValueError as exc:
            raise JournalCorrupt(where, position, f"undecodable snapshot: {exc}") from exc
        if state.name != shard:
            raise JournalCorrupt(where, position, f"holds the state of shard {state.name!r}")
        return state

    async def _read_chunks(self, nc: NatsClient, js: JetStreamContext, info: api.ObjectInfo, position: int) -> bytes:
        chunks, size = info.chunks or 0, info.size or 0
        if chunks == 0:
            return b""
        subject = f"$O.{self.bucket}.C.{info.nuid}"
        reader = PullReader(nc, js, self._config.snapshot_stream, subject, 1, self._config)
        parts: list[bytes] = []
        digest = hashlib.sha256()
        try:
            async for batch in reader.batches(limit=chunks):
                for d in batch:
                    parts.append(d.data)
                    digest.update(d.data)
        except NothingToRead as exc:  # the chunks were purged: a newer save replaced the object
            raise _Replaced from exc
        blob = b"".join(parts)
        expected = base64.urlsafe_b64decode((info.digest or "").removeprefix(_DIGEST_PREFIX))
        if len(blob) != size or digest.digest() != expected:
            raise JournalCorrupt(
                f"{self.bucket}/{info.name}",
                position,
                f"snapshot of {len(blob)} bytes, expected {size}, or digest differs",
            )
        return blob


async def _encode_between_batches(state: ShardState) -> PartsReader:
    """Encoding 10⁶ quants takes seconds and holds the GIL: encode a slice at a time on the
    shard's own loop, letting its batches run between slices. The pieces are read as one
    stream (the store reads a chunk at a time): never joined into one blob."""
    parts = []
    for part in encode_state_parts(state):
        parts.append(part)
        await asyncio.sleep(0)
    return PartsReader(parts)


class _Replaced(Exception):
    """The object's chunks vanished mid-load: someone saved a newer snapshot."""


def _header_int(headers: dict[str, object], name: str, bucket: str, shard: str, position: int) -> int:
    value = headers.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(str(value))
    except ValueError:
        raise JournalCorrupt(f"{bucket}/{shard}", position, f"snapshot header {name} is {value!r}") from None


def engine_journal_config(
    namespace: str, nats_url: str, replicas: int = 1, client_name: str = "lotwise-journal"
) -> JournalConfig:
    """The journal of one engine namespace: its own stream, subjects and snapshot bucket,
    so engines in different namespaces can share one NATS. Shards write it; history and
    other consumers read it: all of them name it through this function."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)
    return JournalConfig(
        url=nats_url,
        replicas=replicas,
        stream=f"LOTWISE_JOURNAL_{tag}",
        subject_prefix=f"lotwise.journal.{tag}",
        snapshot_bucket=f"lotwise-snapshots-{tag}",
        # A healthy server acks an fsynced write in about a millisecond; past 2 s the batch
        # is answered UNAVAILABLE (and retried) rather than holding the shard longer.
        ack_timeout_s=2.0,
        client_name=client_name,
    )
