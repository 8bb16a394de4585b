"""The ingestion entry point: inbound stream → events → commands, with dead letters (DESIGN §12).

A durable JetStream pull consumer with explicit acks over every configured subject.
Per message: find its binding (source + format) by subject, decode and validate, hand the
event to the Applier (which sends the commands the domain decides on), then ack. Nothing
is acked before it is either applied or stored in the dead-letter stream with its reason
and original bytes:

- bad input (undecodable, schema violation, unknown device/sku/site/GTIN, impossible
  values, a refusal the engine will repeat) → dead letter, then ack: never blocks the
  messages behind it;
- a transient failure (engine recovering, overloaded, NATS hiccup) → nak with a growing
  delay, at most `max_deliver` times, then a dead letter (`gave_up`);
- a refusal that may be an ordering effect (a putaway before its receipt: lot not
  found, not enough free stock) → retried `refused_deliveries` times, then dead.

Order: events touching the same (sku, site) apply in arrival order; site-wide events
(counts, temperature excursions, ship of a hold) wait for everything before them at that
site and hold back everything after; cabinet scans commute (a take and a return change
the same totals in any order) and run concurrently. A consumer killed mid-stream leaves
its unacked messages to be redelivered; their request ids make the redelivery a no-op
for whatever was already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adapters.nats.deadletter import HEADER_ROOM_BYTES
from adapters.nats.ingest.apply import Applied, Applier, check_sender
from adapters.nats.ingest.config import Consumer, IngestConfig, SubjectBinding
from adapters.nats.ingest.events import BadEvent, Door, InboundEvent, ScanReturn, ScanTake, decode
from adapters.nats.journal import NatsLink, ensure_stream
from adapters.nats.pull import DurablePull, cancel_task, finish_task, wait_until
from engine.domain.deadletters import DeadLetter, DeadLetterCode
from engine.domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RequestConflict,
)
from engine.domain.ports import DeadLetterStore

log = structlog.get_logger("lotwise.ingest")

_RETRYABLE_REFUSALS = frozenset({"INSUFFICIENT_STOCK"})  # may be an ordering effect; others are final
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a message whose application failed."""

    dead: bool  # True: dead-letter it (then ack); False: nak it, redelivered after delay_s
    code: DeadLetterCode
    reason: str
    delay_s: float = 0.0


def verdict(exc: BaseException, deliveries: int, cfg: Consumer) -> Verdict:
    """Classify a failure (pure): final now, retry later, or given up after retries."""
    match exc:
        case BadEvent():
            return Verdict(True, exc.code, exc.reason)
        case InvalidArgument():
            return Verdict(True, DeadLetterCode.INVALID, _violations(exc))
        case NotFound() if exc.fields.get("resource_type") in ("sku", "site"):
            return Verdict(True, DeadLetterCode.UNKNOWN_REF, str(exc))
        case RequestConflict():
            return Verdict(True, DeadLetterCode.REFUSED, f"event id reused with a different payload: {exc}")
        case NotFound() | FailedPrecondition() if _retryable_refusal(exc):
            if deliveries >= cfg.refused_deliveries:
                return Verdict(True, DeadLetterCode.REFUSED, f"refused {deliveries} times: {exc}")
            return Verdict(False, DeadLetterCode.REFUSED, str(exc), _delay(deliveries, cfg))
        case FailedPrecondition() | PermissionDenied():
            return Verdict(True, DeadLetterCode.REFUSED, str(exc))
    what = f"{type(exc).__name__}: {exc}"
    if deliveries >= cfg.max_deliver:
        return Verdict(True, DeadLetterCode.GAVE_UP, f"gave up after {deliveries} deliveries: {what}")
    return Verdict(False, DeadLetterCode.GAVE_UP, what, _delay(deliveries, cfg))


def _retryable_refusal(exc: DomainError) -> bool:
    if isinstance(exc, NotFound):
        return exc.fields.get("resource_type") in ("lot", "hold")
    return isinstance(exc, FailedPrecondition) and exc.fields.get("reason") in _RETRYABLE_REFUSALS


def _delay(deliveries: int, cfg: Consumer) -> float:
    return cfg.backoff_s[min(deliveries, len(cfg.backoff_s)) - 1]


def _violations(exc: InvalidArgument) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in exc.violations) or str(exc)


def binding_for(subject: str, bindings: Sequence[SubjectBinding]) -> SubjectBinding | None:
    """The first binding whose pattern matches `subject` (NATS wildcards `*` and `>`)."""
    tokens = subject.split(".")
    for b in bindings:
        if _matches(b.subject.split("."), tokens):
            return b
    return None


def _matches(pattern: list[str], tokens: list[str]) -> bool:
    for i, p in enumerate(pattern):
        if p == ">":
            return len(tokens) > i
        if i >= len(tokens) or (p != "*" and p != tokens[i]):
            return False
    return len(tokens) == len(pattern)


# ---- ordering inside a pulled batch ----


@dataclass(slots=True)
class _Order:
    """Dependencies between the events of one pulled batch (see the module doc)."""

    last: dict[tuple[str, str], asyncio.Future[Any]] = field(default_factory=dict)
    barrier: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    since: dict[str, list[asyncio.Future[Any]]] = field(default_factory=dict)

    def after(self, keys: Sequence[tuple[str, str]], commutes: bool) -> list[asyncio.Future[Any]]:
        deps: list[asyncio.Future[Any]] = []
        for sku, site in keys:
            if site in self.barrier:
                deps.append(self.barrier[site])
            if sku == "*":
                deps.extend(self.since.get(site, ()))
            elif not commutes and (sku, site) in self.last:
                deps.append(self.last[(sku, site)])
        return deps

    def prune(self, keep_max: int = 10_000) -> None:
        """Forget finished events once the maps grow (a finished dependency is a no-op)."""
        if len(self.last) + len(self.since) + len(self.barrier) <= keep_max:
            return
        self.last = {k: f for k, f in self.last.items() if not f.done()}
        self.barrier = {k: f for k, f in self.barrier.items() if not f.done()}
        self.since = {k: live for k, fs in self.since.items() if (live := [f for f in fs if not f.done()])}

    def add(self, keys: Sequence[tuple[str, str]], commutes: bool, task: asyncio.Future[Any]) -> None:
        for sku, site in keys:
            if sku == "*":
                self.barrier[site] = task
                self.since[site] = []
                self.last = {k: v for k, v in self.last.items() if k[1] != site}
            else:
                since = self.since.setdefault(site, [])
                since.append(task)
                if len(since) > 1024:  # bound it between barriers: finished ones wait for nothing
                    since[:] = [f for f in since if not f.done()]
                if not commutes:
                    self.last[(sku, site)] = task


# ---- metrics ----


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.events = Counter(
            "lotwise_ingest_events_total",
            "Inbound events by source, type and outcome (applied, dead_letter, retry)",
            ["source", "type", "outcome"],
            registry=reg,
        )
        self.apply_seconds = Histogram(
            "lotwise_ingest_apply_seconds",
            "Time to apply one event",
            ["source"],
            buckets=_LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.age_seconds = Histogram(
            "lotwise_ingest_age_seconds",
            "From the stream storing an event to its application (publish → visible)",
            ["source"],
            buckets=_LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.pending = Gauge(
            "lotwise_ingest_pending_messages", "Inbound messages not yet delivered or not yet acked", registry=reg
        )
        self.door_open = Gauge(
            "lotwise_cabinet_door_open", "1 while a cabinet's door is open", ["cabinet"], registry=reg
        )


@functools.cache
def default_ingest_metrics() -> IngestMetrics:
    """One set per process on the default registry (registering twice would fail)."""
    return IngestMetrics()


@dataclass(frozen=True, slots=True)
class DoorState:
    open: bool
    since_ms: int
    user: str


@dataclass(frozen=True, slots=True)
class IngestLag:
    pending_messages: int  # in the stream, not yet delivered to the consumer
    ack_pending: int  # delivered, not yet acked
    redelivered: int


# ---- the consumer ----


class IngestConsumer:
    def __init__(
        self,
        link: NatsLink,
        config: IngestConfig,
        applier: Applier,
        dead_letters: DeadLetterStore,
        metrics: IngestMetrics | None = None,
        replicas: int = 1,
    ) -> None:
        self._link = link
        self.config = config
        self._applier = applier
        self._dead = dead_letters
        self._metrics = metrics or default_ingest_metrics()
        self._replicas = replicas
        self._task: asyncio.Task[None] | None = None
        self._pull = DurablePull(link, config.stream, config.consumer.durable, config.consumer.max_ack_pending, 1 << 20)
        self._stopping = asyncio.Event()
        self._sem = asyncio.Semaphore(config.consumer.max_concurrency)
        self._order = _Order()  # kept across pulls: an event waits for its pair's earlier ones
        self._in_hand: set[asyncio.Task[None]] = set()
        self.doors: dict[str, DoorState] = {}
        self.applied = 0  # events applied by this consumer (tests, logs)
        self.dead_lettered = 0

    @property
    def stream(self) -> str:
        return self.config.stream

    # ---- lifecycle ----

    async def start(self) -> None:
        _, js = await self._link.client()
        await ensure_stream(js, inbound_stream_config(self.config, self._replicas))
        await js.add_consumer(self.stream, config=self._consumer_config())
        await self._pull.get()
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ingest:{self.stream}")
        log.info("ingestion started", stream=self.stream, subjects=[b.subject for b in self.config.subjects])

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the events in hand (bounded), then stop; the rest is redelivered later."""
        self._stopping.set()
        if not await finish_task(self._task, timeout_s):
            log.warning("ingestion stopped with events in hand; they will be redelivered")
        self._task = None
        await self._cancel_in_hand()
        await self._pull.close()
        log.info("ingestion stopped", applied=self.applied, dead_lettered=self.dead_lettered)

    async def abort(self) -> None:
        """Stop at once, acking nothing more (what a crash looks like to JetStream)."""
        self._stopping.set()
        await cancel_task(self._task)
        self._task = None
        await self._cancel_in_hand()
        await self._pull.close()

    async def _cancel_in_hand(self) -> None:
        for task in list(self._in_hand):
            await cancel_task(task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- the loop ----

    async def _run(self) -> None:
        """Pull, schedule, pull again: events of the next pull start while earlier ones are
        still being applied (ordering is kept across pulls by `_order`); at most two pulls'
        worth of events are in hand, so memory and redelivery exposure stay bounded."""
        backoff_s, busy = 0.05, False
        cfg = self.config.consumer
        room = (cfg.pulls_in_hand - 1) * cfg.fetch_batch  # events in hand before the next pull
        while not self._stopping.is_set():
            try:
                while len(self._in_hand) > room:
                    await asyncio.wait(self._in_hand, return_when=asyncio.FIRST_COMPLETED)
                msgs = await self._fetch(busy or bool(self._in_hand))
                busy = bool(msgs)
                self._schedule(msgs)
                backoff_s = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down, a bug: log, back off (bounded), keep going
                log.warning("ingestion step failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
        if self._in_hand:  # stopping: finish what was pulled (stop() bounds how long)
            await asyncio.gather(*self._in_hand, return_exceptions=True)

    async def _fetch(self, busy: bool) -> list[Msg]:
        """Low latency when idle, batches when busy: idle, wait for one message (a pull
        for one returns as soon as it arrives), then take whatever else is there at once."""
        cfg = self.config.consumer
        psub = await self._pull.get()
        try:
            if busy:
                return list(await psub.fetch(batch=cfg.fetch_batch, timeout=0.01))
            first = await psub.fetch(batch=1, timeout=cfg.idle_wait_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        try:
            more = await psub.fetch(batch=cfg.fetch_batch - 1, timeout=0.005) if cfg.fetch_batch > 1 else []
        except (TimeoutError, nats.errors.TimeoutError):
            more = []
        return [*first, *more]

    def _schedule(self, msgs: Sequence[Msg]) -> None:
        loop = asyncio.get_running_loop()
        order = self._order
        for msg in msgs:
            binding = binding_for(msg.subject, self.config.subjects)
            event: InboundEvent | BadEvent
            try:
                if binding is None:
                    raise BadEvent(DeadLetterCode.SCHEMA, f"no subject binding matches {msg.subject!r}")
                event = decode(msg.data, binding.format, binding.source)
                check_sender(self.config, event, msg.subject)
            except BadEvent as bad:
                event = bad
            keys = () if isinstance(event, BadEvent) else self._applier.ordering_keys(event)
            commutes = isinstance(event, ScanTake | ScanReturn)
            deps = order.after(keys, commutes)
            task = loop.create_task(self._one(msg, binding, event, deps))
            order.add(keys, commutes, task)
            self._in_hand.add(task)
            task.add_done_callback(self._in_hand.discard)
        order.prune()

    async def _one(
        self, msg: Msg, binding: SubjectBinding | None, event: InboundEvent | BadEvent, deps: list[Any]
    ) -> None:
        if deps:
            await asyncio.gather(*deps, return_exceptions=True)
        source = binding.source if binding else "unknown"
        kind = getattr(event, "type", "") or (event.event_type.partition(".")[2] if isinstance(event, BadEvent) else "")
        meta = msg.metadata
        async with self._sem:
            started = time.perf_counter()
            try:
                if isinstance(event, BadEvent):
                    raise event
                deadline = time.monotonic() + self.config.consumer.apply_timeout_s
                applied = await asyncio.wait_for(
                    self._applier.apply(event, deadline), self.config.consumer.apply_timeout_s
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(msg, source, kind, event, exc)
                return
            self._after(event, applied)
            await msg.ack()
        self.applied += 1
        m = self._metrics
        m.events.labels(source, kind, "applied").inc()
        m.apply_seconds.labels(source).observe(time.perf_counter() - started)
        m.age_seconds.labels(source).observe(max(0.0, time.time() - meta.timestamp.timestamp()))

    def _after(self, event: InboundEvent, applied: Applied) -> None:
        if isinstance(event, Door):
            now_ms = int(time.time() * 1000)
            self.doors[event.cabinet_id] = DoorState(event.state == "open", event.occurred_at_ms or now_ms, event.user)
            self._metrics.door_open.labels(event.cabinet_id).set(1 if event.state == "open" else 0)
            log.info("cabinet door", cabinet=event.cabinet_id, state=event.state, user=event.user)

    async def _failed(
        self, msg: Msg, source: str, kind: str, event: InboundEvent | BadEvent, exc: BaseException
    ) -> None:
        deliveries = msg.metadata.num_delivered
        v = verdict(exc, deliveries, self.config.consumer)
        if not v.dead:
            self._metrics.events.labels(source, kind, "retry").inc()
            log.info("event will be retried", subject=msg.subject, deliveries=deliveries, reason=v.reason)
            await msg.nak(delay=v.delay_s)
            return
        letter = DeadLetter(
            key=f"{self.stream}:{msg.metadata.sequence.stream}",
            subject=msg.subject,
            payload=msg.data,
            code=v.code,
            reason=v.reason[:2000],
            event_id=getattr(event, "event_id", ""),
            event_type=f"{source}.{kind}" if kind else source,
            deliveries=deliveries,
            failed_at_ms=int(time.time() * 1000),
            headers=tuple((k, v) for k, v in (msg.headers or {}).items()),
        )
        try:
            seq = await self._dead.put(letter)
        except Exception as put_exc:  # the dead-letter stream is down: keep the message
            log.warning("dead letter not stored; message kept", error=f"{type(put_exc).__name__}: {put_exc}")
            await msg.nak(delay=_delay(deliveries, self.config.consumer))
            return
        await msg.ack()
        self.dead_lettered += 1
        self._metrics.events.labels(source, kind, "dead_letter").inc()
        log.warning(
            "event dead-lettered",
            subject=msg.subject,
            code=v.code.value,
            reason=v.reason,
            dlq_seq=seq,
            event_id=letter.event_id,
        )

    # ---- observation ----

    async def lag(self) -> IngestLag:
        _, js = await self._link.client()
        info = await js.consumer_info(self.stream, self.config.consumer.durable)
        self._metrics.pending.set(info.num_pending + info.num_ack_pending)
        return IngestLag(info.num_pending or 0, info.num_ack_pending or 0, info.num_redelivered or 0)

    async def wait_idle(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> None:
        """Until every message in the stream has been acked (tests, the bench, the demo).
        The consumer's counts alone are not enough: read right after a publish they can
        still show nothing pending, so its ack floor must also have reached the stream's
        last message (work-queue retention: an acked message is gone, its sequence stays)."""
        await wait_until(self._idle, bool, timeout_s, poll_s, "ingestion")

    async def _idle(self) -> bool:
        _, js = await self._link.client()
        stream = await js.stream_info(self.stream)  # first: a message published after it is not waited for
        info = await js.consumer_info(self.stream, self.config.consumer.durable)
        floor = (info.ack_floor.stream_seq if info.ack_floor is not None else 0) or 0
        return not info.num_pending and not info.num_ack_pending and floor >= (stream.state.last_seq or 0)

    # ---- NATS plumbing ----

    def _consumer_config(self) -> api.ConsumerConfig:
        cfg = self.config.consumer
        return api.ConsumerConfig(
            name=cfg.durable,
            durable_name=cfg.durable,
            description="Lotwise ingestion of cabinet and WMS events",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=cfg.ack_wait_s,
            max_deliver=cfg.max_deliver,
            max_ack_pending=cfg.max_ack_pending,
            max_waiting=16,
            num_replicas=self._replicas,
        )


def inbound_stream_config(config: IngestConfig, replicas: int = 1) -> api.StreamConfig:
    """Work-queue retention: a message leaves the stream once acked (applied or dead-
    lettered), so the bound counts only the backlog; discard NEW: when the backlog is
    full, publishers are refused (they retry) instead of older events being dropped."""
    cfg = config.consumer
    return api.StreamConfig(
        name=config.stream,
        description="Lotwise inbound cabinet and WMS events",
        subjects=[b.subject for b in config.subjects],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.NEW,
        max_age=cfg.max_age_s,
        max_bytes=cfg.max_bytes,
        # Room for the dead-letter headers: a message that fits here always fits there.
        max_msg_size=(1 << 20) - HEADER_ROOM_BYTES,
        duplicate_window=cfg.duplicate_window_s,
        num_replicas=replicas,
    )


async def delete_ingest_consumer(link: NatsLink, stream: str, durable: str) -> None:
    _, js = await link.client()
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, durable)
