"""Lotwise as a `bench.systems.System`: the typed gRPC client, one channel per worker pool.

Seeding goes through the engine's gateway in the engine process (`seed`): it is set-up,
not the thing measured, and 60,000 receipts over gRPC would take a minute per run. Every
run books into sites of its own (the dataset's tag), so a run starts from fresh stock.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.systems import Audit, Dataset, LotSeed, OrderLine, PairTotals, Shed
from engine.api.client import DEFAULT_BATCHING, LotwiseClient
from engine.domain.commands import ReserveLine
from engine.domain.errors import DomainError, InsufficientStock, Overloaded
from engine.domain.inventory import StockQuery
from engine.runtime.types import HoldLine

MS_PER_DAY = 86_400_000
HOLD_TTL_MS = 120_000  # longer than any window: a hold ends by commit or release, never by expiry
SEED_CHUNK = 512
BULK_CHUNK = 8_192


class LotwiseSystem:
    name = "lotwise"

    def __init__(self, address: str, timeout_s: float = 10.0, *, batched: bool = False, token: str = "") -> None:
        # batched: the auto-batching client (concurrent calls travel in one Execute), as the
        # CLI and ingestion use it; otherwise every call is its own unary RPC.
        batching = DEFAULT_BATCHING if batched else None
        # The client's default retries, as users run it: an overloaded engine sheds calls
        # with RESOURCE_EXHAUSTED (nothing applied), and every call's request id makes a
        # retry idempotent. Only a call still failing at its deadline is an unknown outcome.
        self._client = LotwiseClient(address, timeout_s=timeout_s, batching=batching, token=token or None)

    async def load(self, data: Dataset) -> None:
        raise NotImplementedError("seed Lotwise in the engine process with bench.peers.lotwise.seed")

    async def reserve(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        try:
            await self._client.reserve(
                [HoldLine(line.sku, line.site, ReserveLine(line.qty)) for line in lines],
                ttl_ms=HOLD_TTL_MS,
                hold_id=hold_id,
                request_id=hold_id,
            )
        except InsufficientStock:
            return False
        except Overloaded as exc:  # refused at the door after the client's retries: not applied
            raise Shed(str(exc)) from exc
        return True

    async def sell(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        """The one-call sale: hold and commit every line, all or nothing. False: refused."""
        try:
            await self._client.sell(
                [HoldLine(line.sku, line.site, ReserveLine(line.qty)) for line in lines], request_id=hold_id
            )
        except InsufficientStock:
            return False
        except Overloaded as exc:  # refused at the door after the client's retries: not applied
            raise Shed(str(exc)) from exc
        return True

    async def commit(self, hold_id: str) -> None:
        await self._client.commit(hold_id, request_id=f"{hold_id}:c")

    async def release(self, hold_id: str) -> None:
        await self._client.release(hold_id, request_id=f"{hold_id}:r")

    async def receive(self, sku: str, site: str, lot: LotSeed) -> None:
        await self._client.receive(
            sku,
            site,
            lot.lot_id,
            lot.qty,
            status="available",
            expires_at_ms=lot.expires_day * MS_PER_DAY,
            request_id=f"rcv:{site}:{sku}:{lot.lot_id}",
        )

    async def audit(self) -> Audit:
        raise NotImplementedError("audit Lotwise in the engine process with bench.peers.lotwise.audit")

    async def close(self) -> None:
        await self._client.close()


async def seed(gateway: Any, data: Dataset) -> None:
    """The catalog and the opening stock of `data`, through the gateway (engine process)."""
    from engine.domain.catalog import Site, Sku
    from engine.domain.commands import Receive

    skus = sorted({sku for sku, _ in data.pairs})
    sites = sorted({site for _, site in data.pairs})
    for chunk in _chunks(skus, SEED_CHUNK):
        await asyncio.gather(*(gateway.put_sku(Sku(s, name=f"bench {s}")) for s in chunk))
    for s in sites:
        await gateway.put_site(Site(s, org_path="bench/suite", kind="store"))
    receives = [
        Receive(
            f"seed:{site}:{sku}:{lot.lot_id}",
            sku,
            site,
            lot.lot_id,
            lot.qty,
            status="available",
            expires_at_ms=lot.expires_day * MS_PER_DAY,
        )
        for (sku, site), lots in data.lots
        for lot in lots
    ]
    # The bulk path (one shard call per shard per chunk, as `lotwise import` loads): a
    # receipt at a time took minutes for 60,000 lots with the followers on, on a busy box.
    for chunk in _chunks(receives, BULK_CHUNK):
        refused = [a for a in await gateway.receive_bulk(chunk) if isinstance(a, DomainError)]
        if refused:
            raise RuntimeError(f"seeding {data.name}: {len(refused)} receipts refused, e.g. {refused[0]!r}")


async def audit(gateway: Any, data: Dataset, extra_sites: Sequence[str] = ()) -> Audit:
    """Per pair qty and held, as the engine reports them (its cells' memory)."""
    sites = tuple(sorted({site for _, site in data.pairs} | set(extra_sites)))
    rows = await gateway.query_stock(StockQuery(sites=sites, limit=100_000))
    pairs = {(r.sku, r.site): PairTotals(r.row.qty, r.row.held) for r in rows}
    return Audit(pairs, open_holds=sum(1 for t in pairs.values() if t.held), negative_rows=0)


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def journal_followers(engine: Any) -> list[Any]:
    """Every journal follower a running engine holds (history sink, event bus, finance,
    health, replenishment triggers …), found one level down its runtimes' fields."""
    from adapters.nats.follower import JournalFollower

    found: list[Any] = []
    for part in _fields(engine):
        found += [v for v in (part, *_fields(part)) if isinstance(v, JournalFollower) and v not in found]
    return found


def _fields(obj: Any) -> list[Any]:
    if obj is None or isinstance(obj, (str, int, float, bool, Path)):
        return []
    names = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else list(vars(obj))
    return [getattr(obj, n, None) for n in names] if hasattr(obj, "__dict__") or names else []


async def settle(engine: Any, timeout_s: float = 600.0) -> None:
    """Until every follower applied the journal so far and finished what that started (the
    replenishment trigger's first look at each seeded pair): the seeding's receipts (60,000
    in a POS dataset, 20,000 pairs) are not charged to the window that follows."""
    followers = journal_followers(engine)
    await asyncio.gather(*(f.wait_caught_up(timeout_s) for f in followers))
    idle = [f.sink.idle() for f in followers if callable(getattr(f.sink, "idle", None))]
    await asyncio.wait_for(asyncio.gather(*idle), timeout_s)
