"""Outside factors over NATS: a feed (a promotions calendar, a weather service, a footfall
forecast) publishes JSON on `<inbound prefix>.factors` (`lotwise.in.factors` for the default
namespace), and this small subscriber stores them as `PutFactors` would.

    {"factors": [{"factor_id": "promo-42", "kind": "promotion", "sku": "BRG-6204", "site": "",
                  "from_day": "2026-03-01", "to_day": "2026-03-07", "multiplier": 1.4,
                  "source": "crm"}]}

A message that cannot be read, or whose factors are refused (a multiplier out of its band,
an unknown kind, a bad date), goes to the engine's dead letters (`lotwise dlq`) with its
code and the reason, and is acknowledged only after that (DESIGN.md §12). A failure to
store is retried (the message is not acknowledged). Its own work-queue stream and durable
consumer; bounded pulls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from nats.aio.msg import Msg
from nats.js import api

from adapters.nats.ingest.config import inbound_prefix
from adapters.nats.journal import JournalConfig, NatsLink, ensure_stream
from adapters.nats.pull import DurablePull, cancel_task
from engine.domain.deadletters import DeadLetter, DeadLetterCode
from engine.domain.errors import InvalidArgument
from engine.domain.ports import DeadLetterStore
from engine.replenish.store import MAX_FACTORS, Factor

log = structlog.get_logger("lotwise.replenish.factors")

EVENT_TYPE = "replenish.factors"
_FIELDS = ("factor_id", "kind", "sku", "site", "from_day", "to_day", "multiplier", "source")


@dataclass(frozen=True, slots=True)
class FactorFeedConfig:
    url: str
    stream: str = "LOTWISE_FACTORS_lotwise"
    subject: str = "lotwise.in.factors"
    consumer: str = "lotwise-factors"
    replicas: int = 1
    fetch_batch: int = 64
    fetch_wait_s: float = 1.0
    ack_wait_s: float = 30.0
    max_bytes: int = 64 * 1024 * 1024
    max_msg_bytes: int = 1024 * 1024


def engine_factor_feed_config(namespace: str, nats_url: str, replicas: int = 1) -> FactorFeedConfig:
    prefix = inbound_prefix(namespace)
    tag = prefix.replace(".", "_")
    return FactorFeedConfig(
        url=nats_url, stream=f"LOTWISE_FACTORS_{tag}", subject=f"{prefix}.factors", replicas=replicas
    )


class BadFactors(Exception):
    def __init__(self, code: DeadLetterCode, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def parse_factors(payload: bytes) -> list[Factor]:
    """The factors of one message, or BadFactors saying why not (decode or schema)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadFactors(DeadLetterCode.DECODE, f"not JSON: {exc}") from None
    raw = doc.get("factors") if isinstance(doc, dict) else None
    if not isinstance(raw, list) or not raw or len(raw) > MAX_FACTORS:
        raise BadFactors(DeadLetterCode.SCHEMA, f'expected {{"factors": [1..{MAX_FACTORS} objects]}}')
    out = []
    for i, f in enumerate(raw):
        if not isinstance(f, dict) or set(f) - set(_FIELDS):
            raise BadFactors(DeadLetterCode.SCHEMA, f"factors[{i}]: an object with only {', '.join(_FIELDS)}")
        try:
            multiplier = f.get("multiplier")
            if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
                raise TypeError("multiplier must be a number")
            texts = {k: f.get(k, "") for k in _FIELDS if k != "multiplier"}
            if not all(isinstance(v, str) for v in texts.values()):
                raise TypeError("ids, kind, days and source must be strings")
            out.append(Factor(multiplier=float(multiplier), **texts))
        except TypeError as exc:
            raise BadFactors(DeadLetterCode.SCHEMA, f"factors[{i}]: {exc}") from None
    return out


class FactorFeed:
    """`await start()`, `await stop()`: stores what arrives with `put` (the service's)."""

    def __init__(
        self,
        link: NatsLink,
        config: FactorFeedConfig,
        put: Callable[[list[Factor]], Awaitable[int]],
        dead_letters: DeadLetterStore,
    ) -> None:
        self._link, self.config, self._put, self._dead = link, config, put, dead_letters
        self._pull = DurablePull(link, config.stream, config.consumer, config.fetch_batch * 4, config.max_msg_bytes)
        self._task: asyncio.Task[None] | None = None
        self.stored = self.refused = 0

    async def start(self) -> None:
        _, js = await self._link.client()
        await ensure_stream(js, self._stream_config())
        await js.add_consumer(self.config.stream, config=self._consumer_config())
        await self._pull.get()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"factors:{self.config.stream}")
        log.info("factor feed started", subject=self.config.subject)

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await self._pull.close()

    async def _run(self) -> None:
        backoff_s = 0.1
        while True:
            try:
                psub = await self._pull.get()
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    for msg in await psub.fetch(batch=self.config.fetch_batch, timeout=self.config.fetch_wait_s):
                        await self._handle(msg)
                backoff_s = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away, the store down: back off (bounded) and go on
                log.warning("factor feed step failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    async def _handle(self, msg: Msg) -> None:
        try:
            factors = parse_factors(msg.data)
            await self._put(factors)
        except BadFactors as bad:
            await self._dead_letter(msg, bad.code, bad.reason)
            return
        except InvalidArgument as exc:
            await self._dead_letter(msg, DeadLetterCode.INVALID, exc.message)
            return
        await msg.ack()
        self.stored += len(factors)

    async def _dead_letter(self, msg: Msg, code: DeadLetterCode, reason: str) -> None:
        meta: Any = msg.metadata
        letter = DeadLetter(
            key=f"{self.config.stream}:{meta.sequence.stream}",
            subject=msg.subject,
            payload=msg.data,
            code=code,
            reason=reason,
            event_type=EVENT_TYPE,
            deliveries=meta.num_delivered,
            failed_at_ms=time.time_ns() // 1_000_000,
        )
        await self._dead.put(letter)
        await msg.ack()  # only once the letter is stored: never dropped silently
        self.refused += 1
        log.warning("factors dead-lettered", code=code.value, reason=reason)

    def _stream_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.config.stream,
            description="Lotwise outside factors for replenishment (promotion, weather, footfall, event)",
            subjects=[self.config.subject],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.NEW,
            max_bytes=self.config.max_bytes,
            max_msg_size=self.config.max_msg_bytes,
            num_replicas=self.config.replicas,
        )

    def _consumer_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            name=self.config.consumer,
            durable_name=self.config.consumer,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.config.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=self.config.fetch_batch * 4,
            num_replicas=self.config.replicas,
        )


async def start_factor_feed(
    config: FactorFeedConfig, put: Callable[[list[Factor]], Awaitable[int]], dead_letters: DeadLetterStore
) -> tuple[FactorFeed, NatsLink]:
    link = NatsLink(JournalConfig(url=config.url, client_name="lotwise-factors"))
    await link.connect()
    feed = FactorFeed(link, config, put, dead_letters)
    try:
        await feed.start()
    except BaseException:
        await link.close()
        raise
    return feed, link
