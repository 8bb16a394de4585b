"""Fail-over under load (DESIGN.md §9): real Ray, real nats-server, real SIGKILLs of shard
processes while 64 clients order. Each killed shard is taken over by its warm standby;
nothing acknowledged is lost, nothing is applied twice, nothing is oversold; the
`recoveries` counter counts the crashes and survives a restart of the engine."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from typing import Any

import pytest

from engine.bootstrap import running_engine
from engine.runtime.gateway import Gateway
from tests.conftest import engine_settings
from tests.integration.test_durability import check_books, engine, pid_of, run_load, seed

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]

STANDBY_WAIT_S = 180.0  # a loaded 2-core machine can take long to start a Ray worker


async def standbys_following(gateway: Gateway) -> list[dict[str, Any]]:
    """Every shard's stats, once each shard is ready and has a standby following its journal."""
    give_up = time.monotonic() + STANDBY_WAIT_S
    while True:
        stats = await gateway.shard_stats()
        if all(s["state"] == "ready" and s["standby"] == "standby" for s in stats):
            return stats
        assert time.monotonic() < give_up, f"no standby following after {STANDBY_WAIT_S} s: {stats}"
        await asyncio.sleep(0.2)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def test_killed_shards_are_taken_over_by_their_standbys_and_lose_nothing(ray_session: None) -> None:
    settings = engine_settings(
        snapshot_min_tail_ops=40, snapshot_tail_fraction=0, history=False, events=False, ingest=False
    )
    assert settings.standby  # on by default
    killed: list[str] = []
    async with engine(settings) as (running, client):
        await seed(client)
        gateway = running.gateway
        await standbys_following(gateway)
        pids_before = {name: await pid_of(actor) for name, actor in gateway.handles.items()}

        async def chaos() -> None:
            for victim in ("000", "001", "000"):
                await standbys_following(gateway)
                await asyncio.sleep(0.5)  # the load runs against a shard with a standby behind it
                os.kill(await pid_of(gateway.handles[victim]), signal.SIGKILL)
                killed.append(victim)
            await asyncio.sleep(1.0)

        book = await run_load(client, chaos(), orders=40)
        assert len(book.committed) > 50, "the load should mostly get through"
        await check_books(client, book)
        stats = {s["shard"]: s for s in await standbys_following(gateway)}
        pids_after = {name: await pid_of(actor) for name, actor in gateway.handles.items()}
        assert all(pids_after[name] != pids_before[name] for name in killed)  # new processes serve
        # Each kill is one recovery of that shard (a take-over), counted where operators look.
        assert {name: stats[name]["recoveries"] for name in pids_before} == {
            name: killed.count(name) for name in pids_before
        }
        metrics = await asyncio.to_thread(scrape, running.metrics_url)
        assert f'lotwise_shard_recoveries{{shard="000"}} {float(killed.count("000"))}' in metrics

    # The whole engine restarts on the same data dir: the count of crashes is still there.
    async with running_engine(settings) as again:
        counted = {s["shard"]: s["recoveries"] for s in await again.gateway.shard_stats()}
        assert counted == {name: killed.count(name) for name in pids_before}
