"""The journal follower: one durable JetStream consumer of the journal feeding one sink
(DESIGN.md §9, §12). History and the business-event bus are two sinks of it; every later
consumer of the journal (replenishment triggers, vouchers, alerts) is one more.

The follower pulls journal messages (explicit acks), decodes them and holds a bounded batch
(messages, movements, time); when the batch is due it hands it to the sink in journal order
and acknowledges its messages only once `sink.apply` returned: a crash anywhere loses
nothing, unacknowledged messages come back (flagged `redelivered`, so the sink can skip
what it made durable already).

When the sink fails, the follower keeps its batch, retries with capped exponential backoff,
tells JetStream it is still working on the held messages (so they are not redelivered
meanwhile) and fetches nothing more: it pauses, bounded, and catches up afterwards.
Transient failures are retried until they pass; any other failure at most
`max_apply_attempts` times, after which the batch is applied one entry at a time and an
entry that still fails goes to the dead letters. A message that does not decode, and an
entry the sink rejects (`EntryRejected`), go to the dead letters at once, with their
reason, and are acknowledged only after that (§12).

Lag = journal messages not yet acknowledged by the follower: Prometheus gauges and `lag()`.

Cheap by default (every follower shares the engine's cores with the order path; bench/README.md,
"Followers that cost little"). A new follower is a FollowerSink plus a FollowerConfig, and
the defaults already do the cheap thing:
- **Few wake-ups.** While a batch is open and the journal had nothing more at the last pull,
  the follower does not pull again per arrival: messages gather in the stream and one pull
  takes them when the batch is due (`batch_max_ms`, 200 ms by default). An idle follower
  wakes every `fetch_wait_s`. So a follower costs ~1000/batch_max_ms pulls, applies and
  acks a second under any load, not one per journal append.
- **One decode per message per process.** Every follower of a process decodes through the
  shared `DecodedCache`: the second follower to see a message gets the first one's entry.
- **Work per batch, not per movement.** `apply` gets the whole batch in journal order: do one
  write (one insert, one window of publishes, one request) for it, build plain columns or
  bytes rather than an object per movement, and reach outside the process once per batch.
  `batch_max_ms` is the trade: longer batches cost less per movement and lag more (history
  waits 1 s: each chDB insert costs ~40 ms whatever its size; the bus waits 50 ms).
- **Yield to the orders.** While the journal is busy (≥ `busy_movements_per_s` since the
  last apply: the order path is working), a batch may wait `busy_batch_max_ms` instead of
  `batch_max_ms`: fewer, fuller batches share each batch's fixed cost (a chDB insert costs
  ~60–110 ms of CPU whatever its size) while the cores are wanted; once the journal is quiet
  the short window is back. The lag this adds is bounded (≤ MAX_BUSY_BATCH_MS).
- **Idempotent per position.** A retried batch comes back with `redelivered` set: check
  what is stored already only for those (the normal batch pays nothing for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge, Histogram

from adapters.nats.codec import decode_entry
from adapters.nats.journal import JournalConfig, NatsLink, ensure_stream, journal_stream_config
from adapters.nats.outbound import ack_commands, send_commands
from adapters.nats.pull import DurablePull, cancel_task, consumer_positions, finish_task, wait_until
from engine.domain.errors import Unavailable
from engine.domain.ports import EntryRejected, FollowedEntry, FollowerSink, JournalEntry, JournalUnavailable

log = structlog.get_logger("lotwise.follower")

MiB = 1024 * 1024
H_REASON = "Lotwise-Reason"
H_STREAM_SEQ = "Lotwise-Stream-Seq"
H_SUBJECT = "Lotwise-Subject"
DELAY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Failures that say "not now" rather than "never": retried until they pass (a pause).
# A batch due sooner than this is not worth a pause: pull at once.
_MIN_GATHER_S = 0.002
# The pull that closes a gathered batch: the messages are in the stream already, so the
# server answers at once; this only bounds the wait for a slow answer.
_DUE_PULL_WAIT_S = 0.05
# The longest a follower's synchronous work (decoding a pull, deriving a batch's events) runs
# before the event loop gets a turn: the order path shares the loop (LoopTurns).
LOOP_TURN_S = 0.002
# The longest a busy journal may stretch a batch: the followers' lag under load stays bounded.
MAX_BUSY_BATCH_MS = 5_000.0
TRANSIENT: tuple[type[Exception], ...] = (TimeoutError, OSError, nats.errors.Error, JournalUnavailable, Unavailable)


@dataclass(frozen=True, slots=True)
class FollowerConfig:
    """Bounds of one follower. A batch closes at whichever bound it reaches first."""

    consumer: str  # the durable consumer's name on the journal stream (one per sink)
    dead_letter_tag: str  # names the dead letters: <journal>_<TAG>_DLQ on lotwise.dlq.<tag>.<journal>
    description: str = "Lotwise journal follower"
    batch_max_movements: int = 20_000  # movements per apply
    batch_max_messages: int = 1_000  # journal messages per apply
    batch_max_ms: float = 200.0  # how long a batch may wait to fill (0: apply after each pull)
    # While the journal is busy (≥ busy_movements_per_s since the last apply), a batch may
    # wait up to busy_batch_max_ms instead: background work yields to the order path, and
    # what a batch costs once (an insert, a pull, an ack flush) is shared by more movements.
    # 0: never stretch. It bounds the extra lag under load; idle, batch_max_ms holds.
    busy_batch_max_ms: float = 0.0
    busy_movements_per_s: float = 200.0
    fetch_batch: int = 256  # messages per pull
    fetch_wait_s: float = 0.2  # a pull with nothing to deliver ends after this
    ack_wait_s: float = 30.0  # JetStream redelivers a message unacked this long
    max_ack_pending: int = 4_000  # messages delivered and not yet acked, at most
    retry_initial_s: float = 0.05  # backoff between failed applies: doubles up to retry_max_s
    retry_max_s: float = 5.0
    max_apply_attempts: int = 0  # non-transient failures before isolating the culprit (0: no bound)
    lag_interval_s: float = 1.0  # how often the lag gauges are refreshed
    stop_timeout_s: float = 10.0  # a stop applies and acks what it holds for at most this long
    dead_letter_max_bytes: int = 64 * MiB
    delay_samples: int = 100_000  # recent journal→acked delays kept for percentiles

    def __post_init__(self) -> None:
        for name in ("batch_max_movements", "batch_max_messages", "fetch_batch", "max_ack_pending", "delay_samples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_ack_pending < self.batch_max_messages:
            raise ValueError("max_ack_pending must be ≥ batch_max_messages (a batch is acked at once)")
        if self.max_apply_attempts < 0:
            raise ValueError("max_apply_attempts must be ≥ 0")
        if not 0 <= self.busy_batch_max_ms <= MAX_BUSY_BATCH_MS or self.busy_movements_per_s <= 0:
            raise ValueError(f"need 0 ≤ busy_batch_max_ms ≤ {MAX_BUSY_BATCH_MS} and busy_movements_per_s > 0")
        if not self.consumer or not self.dead_letter_tag.isidentifier():
            raise ValueError("a follower needs a consumer name and a dead-letter tag (letters, digits, _)")

    def dead_letter_stream(self, journal: JournalConfig) -> str:
        return f"{journal.stream}_{self.dead_letter_tag.upper()}_DLQ"

    def dead_letter_subject(self, journal: JournalConfig) -> str:
        # Outside the journal's subject space: the journal stream must never capture it.
        return f"lotwise.dlq.{self.dead_letter_tag}.{journal.stream}"


class FollowerMetrics(Protocol):
    """The gauges and counters every follower keeps. Each sink's metrics class provides
    them under its own names (dashboards keep theirs) beside the sink's own counters."""

    lag_messages: Gauge
    stream_position: Gauge
    acked_position: Gauge
    failures: Counter
    dead_letters: Counter
    delay: Histogram


@dataclass(frozen=True, slots=True)
class FollowerLag:
    stream_position: int  # the journal's last message
    acked_position: int  # every message up to here is applied
    pending_messages: int  # journal messages not yet acknowledged by the follower
    held_messages: int  # of which: held by this follower, waiting for their apply
    stalled: bool  # the last apply failed: the follower is retrying


class Delivery(NamedTuple):
    """What a journal message's ack subject says of it: the fields of nats-py's
    `Msg.metadata` a follower reads."""

    position: int  # the message's stream sequence
    delivered: int  # times JetStream delivered it (> 1: a redelivery)
    pending: int  # journal messages after it not yet delivered to this consumer
    journaled_ns: int  # when the journal stored it (Unix ns)


_V1_TOKENS, _V2_MIN_TOKENS = 9, 11  # `$JS.ACK.<stream>…` and `$JS.ACK.<domain>.<account>.<stream>…`


def delivery(reply: str) -> Delivery | None:
    """The ack subject read with one split and four ints, the way `Msg.metadata` reads it
    (same token positions, both subject versions). `Msg.metadata` also builds a datetime
    and three dataclasses: ~6 µs per message per follower (bench/README.md, "Followers
    that cost little"). None when the subject is not a JetStream ack subject."""
    tokens = reply.split(".")
    count = len(tokens)
    if count < _V1_TOKENS or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    if count == _V1_TOKENS:  # <stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>
        return Delivery(int(tokens[5]), int(tokens[4]), int(tokens[8]), int(tokens[7]))
    if count >= _V2_MIN_TOKENS:  # <domain>.<account hash>. before them, maybe a random token after
        return Delivery(int(tokens[7]), int(tokens[6]), int(tokens[10]), int(tokens[9]))
    return None


def message_delivery(msg: Msg) -> Delivery:
    """`delivery(msg.reply)`; for a subject it cannot read, nats-py's own reading (which
    raises for a message that is not from JetStream)."""
    found = delivery(msg.reply) if msg.reply else None
    if found is not None:
        return found
    meta = msg.metadata
    ns = int(meta.timestamp.timestamp() * 1_000_000_000)
    return Delivery(meta.sequence.stream, meta.num_delivered, meta.num_pending or 0, ns)


@dataclass(slots=True)
class _Held:
    """What the follower holds between fetch and ack, in journal order."""

    msgs: dict[int, Msg] = field(default_factory=dict)  # stream seq → its newest delivery
    entries: dict[int, FollowedEntry] = field(default_factory=dict)  # stream seq → decoded
    journaled_ns: dict[int, int] = field(default_factory=dict)  # stream seq → when the journal stored it
    movements: int = 0
    opened: float = 0.0  # monotonic time the first message was journaled (batch_opened_s)

    def due(self, config: FollowerConfig, now: float, window_ms: float) -> bool:
        if not self.msgs:
            return False
        return (
            self.movements >= config.batch_max_movements
            or len(self.msgs) >= config.batch_max_messages
            or (now - self.opened) * 1000 >= window_ms
        )

    def drop(self, seq: int) -> None:
        self.msgs.pop(seq, None)
        self.journaled_ns.pop(seq, None)
        gone = self.entries.pop(seq, None)
        if gone is not None:
            self.movements -= len(gone.entry.movements)

    def mark_redelivered(self) -> None:
        """After a failed apply: the sink may have made part of the batch durable."""
        self.entries = {seq: replace(e, redelivered=True) for seq, e in self.entries.items()}


@dataclass(slots=True)
class _Pace:
    """Movements per second the follower took from the journal, from one apply to the next.

    The journal's pace is the order path's load as a follower can see it (every order
    journals its movements), measured where the follower's cost arises, with nothing to
    wire between the API and the followers. Idle gaps count: after a quiet spell the first
    batch is never busy, so an idle engine keeps its short windows."""

    last_s: float  # monotonic time of the last apply

    def busy(self, movements: int, now_s: float, busy_per_s: float) -> bool:
        elapsed_s, self.last_s = now_s - self.last_s, now_s
        return elapsed_s > 0 and movements / elapsed_s >= busy_per_s


def batch_opened_s(now_s: float, age_s: float, window_ms: float) -> float:
    """When a batch whose first message is `age_s` old (its journal timestamp) opened, on the
    monotonic clock: the window bounds how long an entry waits, not how long the follower
    gathers after taking it. A follower that is behind (its messages waited already, e.g.
    during the last apply) applies at once instead of gathering one more window; a caught-up
    one gathers as before. Clamped to [0, window]: a clock that disagrees with the server's
    changes a batch by at most one window."""
    return now_s - min(max(age_s, 0.0), window_ms / 1000)


class LoopTurns:
    """Gives the event loop a turn once `every_s` of synchronous work has passed.

    The followers share the engine's process and event loop with the gRPC door and the
    gateway. A pull of `fetch_batch` journal messages can carry thousands of movements, and
    decoding them in one go (~23 µs a movement) held the loop for 100+ ms: orders waiting at
    the door then passed its wire-wait bound and were refused RESOURCE_EXHAUSTED. A turn every
    couple of milliseconds costs one loop iteration and bounds that stall."""

    __slots__ = ("_every_s", "_next_at", "turns")

    def __init__(self, every_s: float = LOOP_TURN_S) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self._every_s = every_s
        self._next_at = time.perf_counter() + every_s
        self.turns = 0  # turns given so far (tests, metrics)

    async def maybe(self) -> None:
        """A turn if the work since the last one took `every_s` or longer."""
        if time.perf_counter() >= self._next_at:
            await asyncio.sleep(0)
            self.turns += 1
            self._next_at = time.perf_counter() + self._every_s


class DecodedCache:
    """The journal entries the followers of this process decoded lately, by message bytes.

    History and the event bus follow the same journal in one process: the second to fetch
    a message finds its entry here instead of decoding it again (decoding is most of a
    follower's own Python time per movement). Keyed by the bytes themselves, so a hit is
    the very same message; entries are immutable values. Bounded: the oldest goes first."""

    def __init__(self, decode: Callable[[bytes], JournalEntry], max_entries: int = 4_096) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._decode = decode
        self._max = max_entries
        self._entries: OrderedDict[bytes, JournalEntry] = OrderedDict()

    def __call__(self, data: bytes) -> JournalEntry:
        entry = self._entries.get(data)
        if entry is None:
            entry = self._entries[data] = self._decode(data)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return entry


_SHARED_DECODE = DecodedCache(decode_entry)


class JournalFollower:
    """Feeds a FollowerSink from the journal; `await start()`, `lag()`, `await stop()`."""

    def __init__(
        self,
        link: NatsLink,
        sink: FollowerSink,
        config: FollowerConfig,
        metrics: FollowerMetrics,
        decode: Callable[[bytes], JournalEntry] | None = None,
    ) -> None:
        self._link = link
        self._journal = link.config
        self.sink = sink
        self.config = config
        self.metrics = metrics
        self._decode = decode or _SHARED_DECODE
        self._held = _Held()
        self._pull = DurablePull(link, self.stream, config.consumer, config.max_ack_pending, self._journal.max_msg_size)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stalled = False
        self._next_lag_at = 0.0
        self.delays_s: deque[float] = deque(maxlen=config.delay_samples)
        self.acked_messages = 0
        self.pulls = 0  # fetch requests made (each one a wake-up and a round trip)
        self.loop_turns = 0  # turns given to the event loop in the middle of a pull's decoding
        self._drained = True  # the last pull took everything the journal had for us
        self._start_seq = 0  # > 0: the next start follows from this journal position (rewind_to)
        self.window_ms = config.batch_max_ms  # the open batch's time bound (stretched while busy)
        self.busy_batches = 0  # batches that waited busy_batch_max_ms (the journal was busy)
        self._pace = _Pace(time.monotonic())

    @property
    def stream(self) -> str:
        return self._journal.stream

    @property
    def consumer(self) -> str:
        return self.config.consumer

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- lifecycle ----

    async def start(self) -> None:
        """Make sure the journal stream, the dead-letter stream and the durable consumer
        exist, then follow the journal in the background."""
        _, js = await self._link.client()
        try:
            await js.stream_info(self.stream)
        except NotFoundError:  # the shards have not written yet: create it as they would
            await ensure_stream(js, journal_stream_config(self._journal))
        await ensure_stream(js, self._dead_letter_config())
        await self._ensure_consumer(js)
        await self._pull.get()
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.sink.name}:{self.stream}")
        log.info("journal follower started", sink=self.sink.name, stream=self.stream, consumer=self.consumer)

    def rewind_to(self, stream_seq: int) -> None:
        """Before `start`: follow from journal position `stream_seq` on, whatever the
        consumer had acknowledged. For a sink whose store lost its newest output (a crash
        of a store that persists asynchronously): it gets those entries again, not flagged
        `redelivered`, and must skip what it holds already."""
        if stream_seq <= 0:
            raise ValueError("rewind_to needs a journal position ≥ 1")
        self._start_seq = stream_seq

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        """Create the durable consumer, or bring it to this config. A rewound consumer is
        made again from its position; an existing one keeps where it was told to start
        (JetStream cannot change a consumer's deliver policy)."""
        config, timeout = self._consumer_config(), self._journal.api_timeout_s
        if self._start_seq:
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(self.stream, self.consumer)
            config = replace(config, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._start_seq)
            self._start_seq = 0
        else:
            with contextlib.suppress(NotFoundError):
                known = (await js.consumer_info(self.stream, self.consumer, timeout=timeout)).config
                config = replace(config, deliver_policy=known.deliver_policy, opt_start_seq=known.opt_start_seq)
        await js.add_consumer(self.stream, config=config, timeout=timeout)

    async def stop(self) -> None:
        """Stop fetching, apply and ack what is held (bounded by stop_timeout_s; what does
        not make it stays unacked and is redelivered to the next follower)."""
        self._stopping.set()
        if not await finish_task(self._task, self.config.stop_timeout_s):
            log.warning("journal follower stopped before its batch was applied; it will be redelivered")
        self._task = None
        await self._pull.close()
        log.info("journal follower stopped", sink=self.sink.name, stream=self.stream, acked=self.acked_messages)

    async def abort(self) -> None:
        """Stop at once: no apply, no ack (what a crash looks like to JetStream)."""
        self._stopping.set()
        await cancel_task(self._task)
        self._task = None
        self._held = _Held()
        await self._pull.close()

    # ---- the loop ----

    async def _run(self) -> None:
        backoff_s = self.config.retry_initial_s
        while True:
            stopping = self._stopping.is_set()
            try:
                if not stopping:
                    await self._fill()
                if self._held.msgs and (stopping or self._held.due(self.config, time.monotonic(), self.window_ms)):
                    await self._flush()
                await self._refresh_lag()
                backoff_s = self.config.retry_initial_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down, a bug: log, back off (bounded), keep going
                log.warning(
                    "journal follower step failed",
                    sink=self.sink.name,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=backoff_s,
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.config.retry_max_s)
            if stopping and not self._held.msgs:
                return

    async def _fill(self) -> None:
        """One pull, for no more than the batch has room for; waits at most until the
        open batch is due."""
        held, config = self._held, self.config
        room = min(config.batch_max_messages - len(held.msgs), config.fetch_batch)
        if room <= 0 or held.movements >= config.batch_max_movements:
            return
        wait_s = config.fetch_wait_s
        if held.msgs:
            left_s = self.window_ms / 1000 - (time.monotonic() - held.opened)
            if self._drained and left_s > _MIN_GATHER_S:
                # The journal had nothing more at the last pull, and whatever arrives now
                # waits for this batch anyway: let it gather in the stream and take it in
                # one pull when the batch is due, not one pull (and wake-up) per arrival.
                await self._gather(left_s)
                left_s = 0.0
            wait_s = max(_DUE_PULL_WAIT_S, min(wait_s, left_s))
        psub = await self._pull.get()
        self.pulls += 1
        try:
            msgs = await psub.fetch(batch=room, timeout=wait_s)
        except (TimeoutError, nats.errors.TimeoutError):
            self._drained = True
            return
        self._drained = len(msgs) < room
        turns = LoopTurns()
        for msg in msgs:
            await self._take(msg)
            await turns.maybe()
        self.loop_turns += turns.turns

    async def _gather(self, seconds: float) -> None:
        """Sleep while journal messages gather for the open batch; a stop ends it early."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _take(self, msg: Msg) -> None:
        at = message_delivery(msg)
        seq = at.position
        held = self._held
        if seq in held.msgs:  # delivered again while we still hold it: keep the newest delivery
            held.msgs[seq] = msg
            return
        try:
            entry = self._decode(msg.data)
        except Exception as exc:  # whatever the codec raises, the message is not an entry
            await self._dead_letter(msg, f"undecodable journal entry: {type(exc).__name__}: {exc}")
            return
        if not held.msgs:
            held.opened = batch_opened_s(time.monotonic(), time.time() - at.journaled_ns / 1e9, self.window_ms)
        held.msgs[seq] = msg
        held.journaled_ns[seq] = at.journaled_ns
        held.entries[seq] = FollowedEntry(seq, entry, redelivered=at.delivered > 1, behind=at.pending)
        held.movements += len(entry.movements)

    async def _flush(self) -> None:
        """Apply the held batch (retrying, isolating, dead-lettering as needed), then ack it."""
        movements = self._held.movements
        await self._apply_held()
        await self._ack(self._held)
        self._held = _Held()
        self._pace_next(movements)

    def _pace_next(self, movements: int) -> None:
        """The next batch's time bound, from the journal's pace since the last apply."""
        config = self.config
        busy = self._pace.busy(movements, time.monotonic(), config.busy_movements_per_s)
        self.window_ms = config.batch_max_ms
        # Never longer than half the ack wait: a held message JetStream has not heard about
        # for ack_wait_s is delivered again while the batch is still gathering.
        stretched = min(config.busy_batch_max_ms, config.ack_wait_s * 500)
        if busy and stretched > config.batch_max_ms:
            self.window_ms = stretched
            self.busy_batches += 1

    async def _apply_held(self) -> None:
        """Until every held entry is applied or dead-lettered. Bounded in memory (nothing
        more is fetched meanwhile) and in backoff."""
        backoff_s = self.config.retry_initial_s
        last_progress = time.monotonic()
        attempt = failures = 0
        one_at_a_time = False
        applied: set[int] = set()
        # In journal order: redeliveries may arrive out of it (JetStream redelivers each
        # message when its own ack wait runs out), and the sinks rely on it.
        while pending := [e for seq, e in sorted(self._held.entries.items()) if seq not in applied]:
            batch = tuple(pending[:1] if one_at_a_time else pending)
            try:
                await self.sink.apply(batch)
            except asyncio.CancelledError:
                raise
            except EntryRejected as rejected:
                await self._reject(rejected.position, rejected.reason)
                continue
            except Exception as exc:
                attempt += 1
                transient = isinstance(exc, TRANSIENT)
                failures = 0 if transient else failures + 1
                self._note_failure(exc, attempt, backoff_s)
                if self._stopping.is_set() and attempt >= 3:
                    raise
                if self._poisoned(failures):
                    if len(batch) == 1:
                        await self._reject(batch[0].position, f"{self.sink.name} cannot apply it: {exc}")
                        failures = 0
                        continue
                    one_at_a_time, failures = True, 0  # find the entry that fails
                self._held.mark_redelivered()
                if time.monotonic() - last_progress >= self.config.ack_wait_s / 3:
                    await self._in_progress()
                    last_progress = time.monotonic()
                await self._refresh_lag()
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.config.retry_max_s)
                continue
            applied.update(e.position for e in batch)
            if self._stalled:
                log.info("journal follower's sink is back; catching up", sink=self.sink.name, attempts=attempt + 1)
            self._stalled = False

    def _poisoned(self, failures: int) -> bool:
        bound = self.config.max_apply_attempts
        return bound > 0 and failures >= bound

    def _note_failure(self, exc: Exception, attempt: int, backoff_s: float) -> None:
        self._stalled = True
        self.metrics.failures.inc()
        (log.warning if attempt == 1 or attempt % 20 == 0 else log.debug)(
            "journal follower's apply failed; retrying",
            sink=self.sink.name,
            attempt=attempt,
            error=f"{type(exc).__name__}: {exc}",
            held_messages=len(self._held.msgs),
            retry_in_s=backoff_s,
        )

    async def _reject(self, position: int, reason: str) -> None:
        msg = self._held.msgs.get(position)
        if msg is None:  # a sink naming a position it was not given: a bug, never skip silently
            raise ValueError(f"{self.sink.name} rejected journal position {position}, which it was not given")
        await self._dead_letter(msg, reason)
        self._held.drop(position)

    async def _ack(self, held: _Held) -> None:
        if not held.msgs:
            return
        nc, _ = await self._link.client()
        await self._send_acks(nc, list(held.msgs.values()))
        now_ns = time.time_ns()
        for journaled_ns in held.journaled_ns.values():
            delay_s = max(0, now_ns - journaled_ns) / 1e9
            self.delays_s.append(delay_s)
            self.metrics.delay.observe(delay_s)
        self.acked_messages += len(held.msgs)
        # Acks are buffered by the client: push them out now, so a crash right after this
        # does not make JetStream redeliver what is applied (harmless, but wasted work).
        await nc.flush(timeout=math.ceil(self._journal.api_timeout_s))  # the client takes whole seconds

    async def _send_acks(self, nc: Client, msgs: list[Msg]) -> None:
        """Every ack of a batch queued in one call: each is what `Msg.ack` sends, without
        its per-call bookkeeping (adapters.nats.outbound). A batch acked again after a
        failed flush sends them again, which JetStream ignores."""
        await send_commands(nc, ack_commands(msg.reply for msg in msgs))

    async def _in_progress(self) -> None:
        with contextlib.suppress(Exception):
            for msg in self._held.msgs.values():
                await msg.in_progress()

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        _, js = await self._link.client()
        seq = msg.metadata.sequence.stream
        headers = {H_REASON: reason[:1_000], H_STREAM_SEQ: str(seq), H_SUBJECT: msg.subject}
        subject = self.config.dead_letter_subject(self._journal)
        await js.publish(subject, msg.data, headers=headers, timeout=self._journal.ack_timeout_s)
        await msg.term()  # only after the dead letter is stored: never silently dropped
        self.metrics.dead_letters.inc()
        log.error("journal message dead-lettered", sink=self.sink.name, stream=self.stream, position=seq, reason=reason)

    # ---- lag ----

    async def lag(self) -> FollowerLag:
        """Where the journal is vs what the sink has acknowledged (asks the server)."""
        at = await consumer_positions(self._link, self.stream, self.consumer, self._journal.api_timeout_s)
        lag = FollowerLag(
            stream_position=at.stream_position,
            acked_position=at.acked_position,
            pending_messages=at.pending_messages,
            held_messages=len(self._held.msgs),
            stalled=self._stalled,
        )
        self.metrics.lag_messages.set(lag.pending_messages)
        self.metrics.stream_position.set(lag.stream_position)
        self.metrics.acked_position.set(lag.acked_position)
        return lag

    async def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag_at:
            return
        self._next_lag_at = now + self.config.lag_interval_s
        with contextlib.suppress(Exception):  # the gauges are best effort; lag() raises
            await self.lag()

    async def wait_caught_up(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> FollowerLag:
        """Until every journal message so far is applied (tests, benches, ops)."""
        # The ack floor too: a consumer's pending count may lag a fresh append a moment.
        return await wait_until(
            self.lag,
            lambda lag: (
                lag.pending_messages == 0 and lag.held_messages == 0 and lag.acked_position >= lag.stream_position
            ),
            timeout_s,
            poll_s,
            self.sink.name,
        )

    # ---- NATS plumbing ----

    def _consumer_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            description=self.config.description,
            filter_subject=f"{self._journal.subject_prefix}.>",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.config.ack_wait_s,
            max_deliver=-1,  # redeliver until applied: no sink may miss a batch
            max_ack_pending=self.config.max_ack_pending,
            max_waiting=16,
            num_replicas=self._journal.replicas,
        )

    def _dead_letter_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.config.dead_letter_stream(self._journal),
            description=f"Journal messages {self.sink.name} could not use, with the reason",
            subjects=[self.config.dead_letter_subject(self._journal)],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            # Full: the next dead letter is refused, the follower retries and its lag grows
            # (alerting) — older letters are never dropped silently (DESIGN §12).
            discard=api.DiscardPolicy.NEW,
            max_bytes=self.config.dead_letter_max_bytes,
            max_msg_size=self._journal.max_msg_size,
            num_replicas=self._journal.replicas,
        )
