"""Gateway.receive_bulk over in-process shards: checks before any shard call, one shard
call per shard per part, each receipt its own answer."""

from __future__ import annotations

import pytest

from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.commands import UNDO_SUFFIX, Receive, Received
from engine.domain.errors import InvalidArgument, NotFound
from engine.domain.inventory import StockQuery
from engine.domain.shard import RECEIVE_BULK_MAX
from engine.runtime.gateway.bulk import BULK_MAX_RECEIPTS, even_parts


@pytest.mark.parametrize("n", [0, 1, RECEIVE_BULK_MAX, RECEIVE_BULK_MAX + 1, 2 * RECEIVE_BULK_MAX + 1, 5_000])
def test_a_shard_s_receipts_are_cut_into_the_fewest_even_parts(n: int) -> None:
    parts = even_parts(list(range(n)))
    assert [i for part in parts for i in part] == list(range(n))  # all of them, in order
    assert all(len(part) <= RECEIVE_BULK_MAX for part in parts)
    assert len(parts) == -(-n // RECEIVE_BULK_MAX)
    assert max(map(len, parts), default=0) - min(map(len, parts), default=0) <= 1


async def test_each_receipt_gets_its_own_answer_and_bad_ones_cost_no_shard_call() -> None:
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    try:
        await gateway.put_sku(Sku("strip"))
        await gateway.put_site(Site("ward1"))
        await gateway.put_site(Site("ward2"))
        cmds = [
            Receive("r1", "strip", "ward1", "L1", 5),
            Receive("r2", "strip", "ward1", "L2", 0),  # qty 0: refused by the checks
            Receive("r3" + UNDO_SUFFIX, "strip", "ward2", "L3", 1),  # the engine's id space
            Receive("r4", "gauze", "ward2", "L4", 1),  # unknown sku: the shard refuses it
            Receive("r5", "strip", "ward2", "L5", 2),
        ]
        before = sum(s["batches"] for s in await gateway.shard_stats())
        results = await gateway.receive_bulk(cmds)
        after = sum(s["batches"] for s in await gateway.shard_stats())
        assert [type(r) for r in results] == [Received, InvalidArgument, InvalidArgument, NotFound, Received]
        assert results[0] == Received("L1", 5)
        assert after - before <= 2  # one call per shard
        assert await gateway.receive_bulk(cmds) == results  # a re-run: the same answers, nothing new
        assert sum(r.row.qty for r in await gateway.query_stock(StockQuery())) == 7
        with pytest.raises(InvalidArgument):
            await gateway.receive_bulk([cmds[0]] * (BULK_MAX_RECEIPTS + 1))
    finally:
        await gateway.close()
