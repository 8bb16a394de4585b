"""Bulk load on the real engine — Ray shard actors, the JetStream journal — with a shard
process killed (SIGKILL) in the middle of an import: the import rides out the shard's
take-over by its standby (or its restart by Ray), and a re-run ends exact."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from engine.api.client import LotwiseClient
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.import_client import ImportTally, import_file
from engine.bootstrap import running_engine
from tests.conftest import engine_settings
from tests.integration.test_durability import pid_of
from tests.integration.test_failover import standbys_following
from tests.integration.test_import import SITES, SKUS, catalog_and_lots, expected_units, stock_totals

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]

LOTS = 12_000
KILL_AFTER_REPLIES = 3  # chunk replies before the kill: the import is under way
RERUNS = 8


def expected_per_pair(lots: int) -> Counter[tuple[str, str]]:
    units: Counter[tuple[str, str]] = Counter()
    for k in range(lots):
        units[(f"S{k % SKUS}", f"W{(k // SKUS) % SITES}")] += 1 + k % 9
    return units


async def import_until_clean(client: LotwiseClient, path: Path) -> ImportTally:
    """Import the file again until no row is refused (the killed shard recovers meanwhile)."""
    for _ in range(RERUNS):
        tally = await import_file(client.channel, path, chunk_rows=1_000, metadata=client.metadata)
        if not tally.refused:
            return tally
        assert {r.code for r in tally.refused} == {"UNAVAILABLE"}, tally.refused[:3]
        await asyncio.sleep(1.0)
    raise AssertionError(f"still refused after {RERUNS} re-runs: {tally.refused[:3]}")


class KillAfterReplies:
    """An import's reply hook that SIGKILLs a shard process once `after` chunk replies came."""

    def __init__(self, pid: int, after: int) -> None:
        self.pid, self.after, self.replies = pid, after, 0

    def __call__(self, _: apb.ImportChunkReply, __: int) -> None:
        self.replies += 1
        if self.replies == self.after:
            os.kill(self.pid, signal.SIGKILL)


async def test_a_shard_killed_mid_import_then_a_rerun_ends_exact(ray_session: None, tmp_path: Path) -> None:
    # Ray restarts the killed shard here (take-overs by standbys: tests/integration/test_failover.py).
    settings = engine_settings(snapshot_min_tail_ops=10, snapshot_tail_fraction=0, standby=False)
    async with (
        running_engine(settings) as running,
        LotwiseClient(running.grpc_address, timeout_s=60) as client,
    ):
        catalog = catalog_and_lots(tmp_path / "catalog.csv", lots=0)
        assert (await import_file(client.channel, catalog, metadata=client.metadata)).refused == []
        path = catalog_and_lots(tmp_path / "lots.csv", lots=LOTS)
        victim = sorted(running.gateway.handles)[0]
        pid = await pid_of(running.gateway.handles[victim])
        kill_once = KillAfterReplies(pid, KILL_AFTER_REPLIES)
        first = await import_file(client.channel, path, chunk_rows=1_000, on_reply=kill_once, metadata=client.metadata)
        assert kill_once.replies > KILL_AFTER_REPLIES
        assert {r.code for r in first.refused} <= {"UNAVAILABLE"}  # nothing else went wrong
        assert await pid_of(running.gateway.handles[victim]) != pid  # killed, and Ray restarted it

        again = await import_until_clean(client, path)
        assert (again.lots, again.units) == (LOTS, expected_units(LOTS))
        totals = await stock_totals(client)
        assert Counter({pair: qty for pair, (qty, _) in totals.items()}) == expected_per_pair(LOTS)
        assert sum(qty for qty, _ in totals.values()) == expected_units(LOTS)  # each lot exactly once
        ok, checks = await client.verify()
        assert ok, [c for c in checks if not c.ok]


@pytest.mark.parametrize("standby", [True, False], ids=["standby", "ray-restart"])
async def test_an_import_rides_out_the_take_over_of_a_killed_shard(
    ray_session: None, tmp_path: Path, standby: bool
) -> None:
    # The standby takes over in 0.2–2 s; without one Ray restarts the shard, which recovers
    # (4 s and more). The import tries the refused rows again meanwhile
    # (engine.api.importer.IMPORT_RETRY_WINDOW_S), so not one row is refused.
    settings = engine_settings(
        snapshot_min_tail_ops=10, snapshot_tail_fraction=0, history=False, events=False, ingest=False, standby=standby
    )
    async with (
        running_engine(settings) as running,
        LotwiseClient(running.grpc_address, timeout_s=120) as client,
    ):
        catalog = catalog_and_lots(tmp_path / "catalog.csv", lots=0)
        assert (await import_file(client.channel, catalog, metadata=client.metadata)).refused == []
        if standby:
            await standbys_following(running.gateway)
        path = catalog_and_lots(tmp_path / "lots.csv", lots=LOTS)
        victim = sorted(running.gateway.handles)[0]
        pid = await pid_of(running.gateway.handles[victim])
        kill_once = KillAfterReplies(pid, KILL_AFTER_REPLIES)
        tally = await import_file(client.channel, path, chunk_rows=500, on_reply=kill_once, metadata=client.metadata)
        assert kill_once.replies > KILL_AFTER_REPLIES
        assert await pid_of(running.gateway.handles[victim]) != pid  # killed; its standby (or Ray's restart) serves
        assert tally.refused == []
        assert (tally.lots, tally.units) == (LOTS, expected_units(LOTS))
        totals = await stock_totals(client)
        assert Counter({pair: qty for pair, (qty, _) in totals.items()}) == expected_per_pair(LOTS)
        ok, checks = await client.verify()
        assert ok, [c for c in checks if not c.ok]
