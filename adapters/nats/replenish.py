"""Replenishment's records on JetStream (engine.replenish.store.ReplenishStore): one
key-value bucket per engine namespace, file storage, values as versioned JSON.

Keys: `s.<pair>` suggestions, `p.<pair>` suppliers, `f.<factor>` factors,
`d.<pair>.<version>` decisions; `<pair>` and `<factor>` are URL-safe base64 of the ids
(KV keys allow only [-/_=.A-Za-z0-9], ids allow more). A suggestion write is a
compare-and-set on the KV revision read with it, so two writers never lose an update."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.js import api
from nats.js.errors import APIError, BadRequestError, KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from adapters.nats.journal import JournalConfig, NatsLink
from adapters.nats.kvscan import latest_entries
from adapters.nats.replenish_index import SuggestionIndex, suggestion_headers
from engine.domain.ports import JournalUnavailable
from engine.replenish.store import (
    Decision,
    Factor,
    StaleWrite,
    Suggestion,
    SuggestionEntry,
    SuggestionStamp,
    SupplierTerms,
    decision_from_record,
    factor_from_record,
    pair_key,
    suggestion_from_record,
    supplier_from_record,
    to_record,
)

T = TypeVar("T")
MAX_VALUE_BYTES = 256 * 1024
INDEX_READY_TIMEOUT_S = 30.0  # the suggestion index's first load (headers only: ~15 µs a key)
WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream's "not the expected last sequence"


@dataclass(frozen=True, slots=True)
class ReplenishStoreConfig:
    url: str
    bucket: str = "lotwise-replenish"
    replicas: int = 1
    max_bytes: int = 512 * 1024 * 1024


def engine_replenish_store_config(namespace: str, nats_url: str, replicas: int = 1) -> ReplenishStoreConfig:
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)
    return ReplenishStoreConfig(url=nats_url, bucket=f"lotwise-replenish-{tag}", replicas=replicas)


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") or "_"


def _untoken(token: str) -> str:
    if token == "_":
        return ""
    return base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()


def _dump(value: Suggestion | SupplierTerms | Factor | Decision) -> bytes:
    data = json.dumps(to_record(value), separators=(",", ":"), sort_keys=True).encode()
    if len(data) > MAX_VALUE_BYTES:
        raise ValueError(f"a replenishment record of {len(data)} bytes is over {MAX_VALUE_BYTES}")
    return data


class JetStreamReplenishStore:
    def __init__(self, link: NatsLink, kv: KeyValue, bucket: str) -> None:
        self._link = link
        self._kv = kv
        self._bucket = bucket
        self._subjects = f"$KV.{bucket}."
        self._index = SuggestionIndex(link.client, f"KV_{bucket}", f"{self._subjects}s.", _untoken)

    async def _get(self, key: str) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return json.loads(entry.value), entry.revision

    async def _all(self, prefix: str, decode: Callable[[dict[str, Any]], T]) -> list[T]:
        _, js = await self._link.client()
        found: dict[str, T] = {}
        async for entry in latest_entries(js, self._bucket, f"{prefix}.>"):
            if entry.value:
                found[entry.key] = decode(json.loads(entry.value))
        return [found[k] for k in sorted(found)]

    async def get_suggestion(self, sku: str, site: str) -> Suggestion | None:
        got = await self._get(f"s.{_token(pair_key(sku, site))}")
        return None if got is None else suggestion_from_record(got[0])

    async def put_suggestion(self, suggestion: Suggestion, expected_version: int) -> None:
        key = f"s.{_token(suggestion.key)}"
        # A first version needs no read: the write's "must not exist" condition (revision 0,
        # or a tombstone's) is the check, and a key that exists raises StaleWrite (_write).
        got = None if expected_version == 0 else await self._get(key)
        version = 0 if got is None else int(got[0]["version"])
        if version != expected_version:
            raise StaleWrite(suggestion.key, expected_version)
        seq = await self._write(key, _dump(suggestion), 0 if got is None else got[1], suggestion, expected_version)
        self._index.note(suggestion.key, suggestion.state, suggestion.flagged, seq, suggestion.version)

    async def _write(self, key: str, data: bytes, last: int, suggestion: Suggestion, expected_version: int) -> int:
        """A compare-and-set on the key's revision, with the state and flag as headers (the
        index follows those). `last` 0 is "must not exist"; a key deleted once is re-created
        on its tombstone's revision, as the KV client's create does."""
        headers = {
            api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last),
            **suggestion_headers(suggestion.state, suggestion.flagged, suggestion.version),
        }
        _, js = await self._link.client()
        try:
            ack = await js.publish(f"{self._subjects}{key}", data, headers=headers)
        except APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:
                raise
            if last == 0:
                try:
                    await self._kv.get(key)
                except KeyDeletedError as deleted:
                    if deleted.entry is not None and deleted.entry.revision:
                        return await self._write(key, data, deleted.entry.revision, suggestion, expected_version)
                except KeyNotFoundError:
                    pass
            raise StaleWrite(suggestion.key, expected_version) from None
        return int(ack.seq)

    async def list_suggestions(self, site: str = "", sku: str = "") -> list[Suggestion]:
        found = await self._all("s", suggestion_from_record)
        found.sort(key=lambda s: (s.site, s.sku))
        return [s for s in found if (not site or s.site == site) and (not sku or s.sku == sku)]

    async def _keys(self, prefix: str) -> list[str]:
        """The pair keys under `prefix` (the bucket's key names only, no values read)."""
        # KeyValue.keys() filters by substring, on every key of the bucket: a read of the
        # prefix alone, headers only (no values sent), reads the names alone.
        _, js = await self._link.client()
        names = {entry.key async for entry in latest_entries(js, self._bucket, f"{prefix}.>", values=False)}
        return sorted(_untoken(name.split(".", 1)[1]) for name in names)

    async def suggestion_keys(self) -> list[str]:
        return await self._index.keys(INDEX_READY_TIMEOUT_S)

    def suggestion_stamp(self, sku: str, site: str) -> SuggestionStamp | None:
        return self._index.stamp(pair_key(sku, site))

    def suggestion_absent(self, sku: str, site: str) -> bool:
        return self._index.absent(pair_key(sku, site))

    async def suggestion_entries(self, after: str = "", limit: int = 256, site: str = "") -> list[SuggestionEntry]:
        return await self._index.entries(after, limit, site, INDEX_READY_TIMEOUT_S)

    async def supplier_keys(self) -> list[str]:
        return await self._keys("p")

    async def put_supplier(self, terms: SupplierTerms) -> None:
        await self._kv.put(f"p.{_token(pair_key(terms.sku, terms.site))}", _dump(terms))

    async def get_supplier(self, sku: str, site: str) -> SupplierTerms | None:
        got = await self._get(f"p.{_token(pair_key(sku, site))}")
        return None if got is None else supplier_from_record(got[0])

    async def list_suppliers(self) -> list[SupplierTerms]:
        found = await self._all("p", supplier_from_record)
        return sorted(found, key=lambda t: (t.site, t.sku))

    async def put_factors(self, factors: list[Factor]) -> None:
        for f in factors:
            await self._kv.put(f"f.{_token(f.factor_id)}", _dump(f))

    async def list_factors(self) -> list[Factor]:
        return sorted(await self._all("f", factor_from_record), key=lambda f: f.factor_id)

    async def add_decision(self, decision: Decision) -> None:
        key = f"d.{_token(pair_key(decision.sku, decision.site))}.{decision.version}"
        try:
            await self._kv.create(key, _dump(decision))
        except (KeyWrongLastSequenceError, BadRequestError):
            if await self._get(key) is None:  # not "exists already": a real failure
                raise

    async def list_decisions(self) -> list[Decision]:
        found = await self._all("d", decision_from_record)
        return sorted(found, key=lambda d: (d.site, d.sku, d.version))

    async def close(self) -> None:
        await self._index.stop()
        await self._link.close()


async def connect_replenish_store(config: ReplenishStoreConfig) -> JetStreamReplenishStore:
    link = NatsLink(JournalConfig(url=config.url, client_name="lotwise-replenish"))
    await link.connect()
    try:
        _, js = await link.client()
        kv = await js.create_key_value(
            api.KeyValueConfig(
                bucket=config.bucket,
                description="Lotwise replenishment: suggestions, suppliers, factors, decisions",
                history=4,
                storage=api.StorageType.FILE,
                replicas=config.replicas,
                max_bytes=config.max_bytes,
                max_value_size=MAX_VALUE_BYTES + 1024,
            )
        )
    except Exception as exc:
        await link.close()
        raise JournalUnavailable(f"cannot set up the replenishment bucket on {config.url}: {exc}") from exc
    return JetStreamReplenishStore(link, kv, config.bucket)
