"""Read what a JetStream key-value bucket holds now: the latest value of every key under a
prefix, read once, with a known end.

Why not `KeyValue.watch()` (or `keys()`, which uses it): the watch is a push consumer, and
it decides "nothing more is stored" by comparing the consumer's `num_pending` with what the
subscription has received so far. A message the server has already pushed but the client
has not read yet counts in neither, so the watch can end before the first entry and a
listing comes back empty although keys exist (nats-py issue 842, intermittent; seen here as
an alert listing that was empty right after the alert was raised). A pull consumer is given
nothing until it asks, so its `num_pending` at creation is exactly what is left to read,
and every fetched message carries the count still behind it.

The consumer is ephemeral, acks nothing, lives in memory and is deleted when the read ends
(the server also drops it after `INACTIVE_S` if this process dies mid-read).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api

FETCH_BATCH = 256  # messages per pull: bounded memory per round trip
INACTIVE_S = 30.0  # the server drops a consumer left behind by a reader that died
KV_OPERATION = "KV-Operation"
MARKER_REASON = "Nats-Marker-Reason"  # nats-server ≥ 2.11 places these for TTL/purge markers
REMOVED = frozenset({"DEL", "PURGE"})


@dataclass(frozen=True, slots=True)
class StoredEntry:
    key: str  # the key's name within its bucket
    value: bytes  # empty when read with values=False
    revision: int


def bucket_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def key_subject(bucket: str, key_filter: str) -> str:
    return f"$KV.{bucket}.{key_filter}"


async def latest_entries(
    js: JetStreamContext,
    bucket: str,
    key_filter: str = ">",
    *,
    values: bool = True,
    timeout_s: float = 5.0,
    limit: int | None = None,
) -> AsyncIterator[StoredEntry]:
    """The latest live revision of each key matching `key_filter`, in stream order; deleted and
    purged keys are left out. More than `limit` stored keys (tombstones count) raises
    OverflowError instead of reading an unbounded amount."""
    prefix = key_subject(bucket, "")
    sub = await js.pull_subscribe(
        key_subject(bucket, key_filter),
        stream=bucket_stream(bucket),
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=api.AckPolicy.NONE,
            headers_only=not values,
            inactive_threshold=INACTIVE_S,
            mem_storage=True,
            num_replicas=1,
        ),
    )
    try:
        info = await sub.consumer_info()
        remaining = info.num_pending or 0
        if limit is not None and remaining > limit:
            raise OverflowError(f"more than {limit} keys stored under {key_filter!r} in {bucket}")
        seen = 0
        while remaining > 0:
            try:
                msgs = await sub.fetch(min(FETCH_BATCH, remaining), timeout=timeout_s)
            except NatsTimeoutError:
                # Keys purged between the count and the fetch are never delivered: ask again.
                remaining = (await sub.consumer_info()).num_pending or 0
                continue
            for msg in msgs:
                meta = msg.metadata
                remaining = int(meta.num_pending)
                seen += 1
                if limit is not None and seen > limit:
                    raise OverflowError(f"more than {limit} keys stored under {key_filter!r} in {bucket}")
                if _removed(msg.headers):
                    continue
                yield StoredEntry(msg.subject[len(prefix) :], msg.data if values else b"", int(meta.sequence.stream))
    finally:
        await _drop(js, sub)


def _removed(headers: dict[str, str] | None) -> bool:
    if not headers:
        return False
    if headers.get(KV_OPERATION) in REMOVED:
        return True
    return MARKER_REASON in headers  # MaxAge / Purge / Remove markers carry no value


async def _drop(js: JetStreamContext, sub: JetStreamContext.PullSubscription) -> None:
    try:
        info = await sub.consumer_info()
        await js.delete_consumer(info.stream_name, info.name)
    except NatsError:
        pass  # already gone, or the server will drop it after INACTIVE_S
    finally:
        await sub.unsubscribe()
