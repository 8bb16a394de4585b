"""WMS/ERP stock snapshots over NATS (issue 15 item 4): an entry point like ingestion's.

Senders publish one JSON snapshot per message on `<prefix>.<source>` (default
`lotwise.snapshots.<source>`), captured by a stream of its own:

    {"schema": "lotwise.stock_snapshot/1", "snapshot_id": "wms-2026-12-07T10:00:30Z",
     "source": "wms:acme", "as_of_ms": 1796637630000,
     "lines": [{"site": "FW-BOS", "sku": "MED-STENT", "lot_id": "S1", "qty": 18}]}

A durable pull consumer hands each decoded snapshot to `submit` (the reconciler) and acks
it only after that, or after storing it as a dead letter with its reason: undecodable →
`decode_error`, wrong shape → `schema_violation`, refused values → `invalid_value` (the
same codes and store as ingestion's dead letters, listed by `lotwise dlq`). A transient
failure is retried with a growing delay, at most `max_deliver` times, then `gave_up`.
A redelivered snapshot is answered from its stored report (snapshot ids are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import api

from adapters.nats.journal import NatsLink, ensure_stream
from adapters.nats.pull import DurablePull, cancel_task
from engine.domain.deadletters import DeadLetter, DeadLetterCode
from engine.domain.errors import DomainError, InvalidArgument
from engine.domain.ports import DeadLetterStore
from engine.health.reconcile import SnapshotLine, StockSnapshot

log = structlog.get_logger("lotwise.snapshots")
SCHEMA = "lotwise.stock_snapshot/1"
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SnapshotIntakeConfig:
    url: str
    stream: str = "LOTWISE_SNAPSHOTS_lotwise"
    subject_prefix: str = "lotwise.snapshots"
    consumer: str = "lotwise-reconciliation"
    replicas: int = 1
    max_bytes: int = 256 * MiB
    max_msg_bytes: int = 8 * MiB  # 100,000 lines of JSON fit
    max_deliver: int = 5
    ack_wait_s: float = 60.0
    retry_initial_s: float = 0.5


def engine_snapshot_config(namespace: str, nats_url: str, replicas: int = 1) -> SnapshotIntakeConfig:
    tag = "".join(c if c.isalnum() or c in "_-" else "_" for c in namespace)
    prefix = "lotwise.snapshots" if tag == "lotwise" else f"lotwise.{tag}.snapshots"
    return SnapshotIntakeConfig(
        url=nats_url, stream=f"LOTWISE_SNAPSHOTS_{tag}", subject_prefix=prefix, replicas=replicas
    )


class BadSnapshot(Exception):
    def __init__(self, code: DeadLetterCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def decode_snapshot(data: bytes) -> StockSnapshot:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadSnapshot(DeadLetterCode.DECODE, f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise BadSnapshot(DeadLetterCode.SCHEMA, f"schema must be {SCHEMA!r}")
    try:
        lines = tuple(
            SnapshotLine(
                str(x["site"]),
                str(x["sku"]),
                _int(x["qty"]),
                str(x.get("lot_id", "")),
                str(x.get("bin", "")),
                str(x.get("status", "")),
            )
            for x in raw["lines"]
        )
        return StockSnapshot(str(raw["snapshot_id"]), str(raw["source"]), _int(raw["as_of_ms"]), lines)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadSnapshot(DeadLetterCode.SCHEMA, f"a field is missing or has the wrong type: {exc!r}") from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


class SnapshotIntake:
    def __init__(
        self,
        link: NatsLink,
        config: SnapshotIntakeConfig,
        submit: Callable[[StockSnapshot], Awaitable[Any]],
        dead_letters: DeadLetterStore,
    ) -> None:
        self._link = link
        self.config = config
        self._submit = submit
        self._dead = dead_letters
        self._pull = DurablePull(link, config.stream, config.consumer, 64, config.max_msg_bytes)
        self._task: asyncio.Task[None] | None = None
        self.applied = 0
        self.dead_lettered = 0

    async def start(self) -> None:
        _, js = await self._link.client()
        await ensure_stream(
            js,
            api.StreamConfig(
                name=self.config.stream,
                description="Lotwise stock snapshots from WMS/ERP, to reconcile",
                subjects=[f"{self.config.subject_prefix}.>"],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                discard=api.DiscardPolicy.OLD,
                max_age=7 * 86_400.0,
                max_bytes=self.config.max_bytes,
                max_msg_size=self.config.max_msg_bytes,
                num_replicas=self.config.replicas,
            ),
        )
        await js.add_consumer(
            self.config.stream,
            config=api.ConsumerConfig(
                durable_name=self.config.consumer,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.config.ack_wait_s,
                max_deliver=self.config.max_deliver + 1,
                max_ack_pending=64,
            ),
        )
        await self._pull.get()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="snapshot-intake")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await self._pull.close()

    async def _run(self) -> None:
        while True:
            try:
                psub = await self._pull.get()
                try:
                    msgs = await psub.fetch(batch=8, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in msgs:
                    await self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down: back off, keep going (bounded delay)
                log.warning("snapshot intake step failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)

    async def _handle(self, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered
        try:
            snapshot = decode_snapshot(msg.data)
            await self._submit(snapshot)
        except BadSnapshot as bad:
            await self._dead_letter(msg, bad.code, bad.reason, "", deliveries)
        except InvalidArgument as err:
            await self._dead_letter(msg, DeadLetterCode.INVALID, err.message, _id_of(msg.data), deliveries)
        except DomainError as err:  # unavailable, overloaded: later, bounded
            if deliveries > self.config.max_deliver:
                await self._dead_letter(msg, DeadLetterCode.GAVE_UP, err.message, _id_of(msg.data), deliveries)
            else:
                await msg.nak(delay=self.config.retry_initial_s * 2 ** (deliveries - 1))
            return
        else:
            self.applied += 1
        await msg.ack()

    async def _dead_letter(self, msg: Msg, code: DeadLetterCode, reason: str, event_id: str, deliveries: int) -> None:
        letter = DeadLetter(
            key=f"{self.config.stream}:{msg.metadata.sequence.stream}",
            subject=msg.subject,
            payload=msg.data,
            code=code,
            reason=reason[:2000],
            event_id=event_id,
            event_type="wms.stock_snapshot",
            deliveries=deliveries,
            failed_at_ms=int(time.time() * 1000),
            headers=tuple((k, v) for k, v in (msg.headers or {}).items()),
        )
        await self._dead.put(letter)
        self.dead_lettered += 1
        log.info("snapshot dead-lettered", code=code.value, reason=reason[:200])


def _id_of(data: bytes) -> str:
    with contextlib.suppress(Exception):
        return str(json.loads(data).get("snapshot_id", ""))[:128]
    return ""
