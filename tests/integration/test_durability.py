"""Nothing acknowledged is ever lost (DESIGN.md §4, §9): real Ray, real nats-server, real kills.

Each test runs its own engine (its own embedded nats-server and journal), because each
one breaks something on purpose.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import nats
import pytest

from engine.api.client import LotwiseClient, RetryPolicy
from engine.bootstrap import RunningEngine, running_engine
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.errors import DomainError, InsufficientStock, Unavailable
from engine.domain.model import HoldState
from engine.runtime.types import HoldLine
from engine.settings import Settings
from tests.conftest import engine_settings

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]

SKU, SITES = "strip", ("ward1", "ward2")
STOCK_PER_SITE = 400
PATIENT = RetryPolicy(max_attempts=40, initial_backoff_s=0.05, max_backoff_s=0.5)


_T = TypeVar("_T")


@asynccontextmanager
async def engine(settings: Settings) -> AsyncIterator[tuple[RunningEngine, LotwiseClient]]:
    async with (
        running_engine(settings) as running,
        LotwiseClient(running.grpc_address, timeout_s=20, retry=PATIENT) as client,
    ):
        yield running, client


async def seed(client: LotwiseClient) -> None:
    await client.put_sku(Sku(SKU), request_id="seed-sku")
    for site in SITES:
        await client.put_site(Site(site, "acme"), request_id=f"seed-{site}")
        await client.receive(SKU, site, "L1", STOCK_PER_SITE, status="available", request_id=f"seed-rcv-{site}")


@dataclass
class Ledger:
    """What the clients were told: only acknowledged answers count."""

    reserved: dict[str, int] = field(default_factory=dict)  # hold id → qty, reserve acknowledged
    committed: set[str] = field(default_factory=set)  # hold ids whose commit was acknowledged
    refused: int = 0
    unknown: set[str] = field(default_factory=set)  # no answer in time: may or may not be applied


async def shopper(client: LotwiseClient, worker: int, orders: int, book: Ledger, stop: asyncio.Event) -> None:
    rng = random.Random(worker)
    for n in range(orders):
        if stop.is_set():
            return
        hold_id = f"w{worker}-o{n}"
        qty = rng.randint(1, 3)
        # Two lines on two pairs: whatever happens, both parts must end alike.
        lines = [HoldLine(SKU, site, ReserveLine(qty)) for site in SITES]
        try:
            await client.reserve(lines, 60_000, hold_id=hold_id, request_id=f"r-{hold_id}")
        except InsufficientStock:
            book.refused += 1
            continue
        except (Unavailable, DomainError):
            book.unknown.add(hold_id)
            continue
        book.reserved[hold_id] = qty
        try:
            await client.commit(hold_id, request_id=f"c-{hold_id}")
        except (Unavailable, DomainError):
            book.unknown.add(hold_id)
            continue
        book.committed.add(hold_id)


async def run_load(client: LotwiseClient, chaos: object, clients: int = 64, orders: int = 12) -> Ledger:
    book = Ledger()
    stop = asyncio.Event()
    load = asyncio.gather(*(shopper(client, w, orders, book, stop) for w in range(clients)))
    await chaos  # type: ignore[misc]
    await load
    return book


async def until_served(call: Callable[[], Awaitable[_T]], timeout_s: float = 60.0) -> _T:
    """The answer of `call` once its shard serves again: after an outage the shards recover one
    by one, and the client's retry budget (spent by the load) no longer retries UNAVAILABLE."""
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            return await call()
        except Unavailable:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.2)


async def wait_serving(client: LotwiseClient) -> None:
    for site in SITES:
        await until_served(lambda site=site: client.get_availability(SKU, site))


async def check_books(client: LotwiseClient, book: Ledger) -> None:
    """Every acknowledged op is there exactly once; nothing is half-applied; no oversell."""
    await wait_serving(client)
    committed_qty = 0
    for hold_id in sorted(set(book.reserved) | book.unknown):
        try:
            hold = await until_served(lambda hold_id=hold_id: client.get_hold(hold_id))
        except Unavailable:
            raise  # not an answer about the hold
        except DomainError:
            assert hold_id in book.unknown, f"acknowledged hold {hold_id} is gone"
            continue
        states = {p.state for p in hold.parts}
        if hold_id in book.reserved:
            assert len(hold.parts) == len(SITES), f"acknowledged hold {hold_id} lost a line"
        if hold_id in book.committed:
            assert states == {HoldState.COMMITTED}, f"acknowledged commit of {hold_id} is lost: {states}"
        if HoldState.COMMITTED in states:
            # Never half-committed: a commit reaches every line or (refused) none.
            assert states == {HoldState.COMMITTED}, f"{hold_id} is half committed: {states}"
            assert len(hold.parts) == len(SITES)
            committed_qty += hold.parts[0].committed_qty
        elif hold_id in book.unknown:
            # An unanswered reserve ends held on every line or on none (aborted / expired).
            assert states <= {HoldState.ACTIVE} or HoldState.ACTIVE not in states, f"{hold_id}: {states}"
    for site in SITES:
        availability = await until_served(lambda site=site: client.get_availability(SKU, site))
        on_hand = sum(r.qty for r in availability.rows)
        assert availability.available >= 0
        assert on_hand >= 0, "oversold"
        held = sum(r.held for r in availability.rows)
        # Conservation: what left equals what the committed holds say, per site.
        assert STOCK_PER_SITE - on_hand == committed_qty, (site, on_hand, committed_qty, held)
    # A shard Ray restarted that no check above reached is still recovering: verify waits for it.
    ok, checks = await until_served(client.verify)
    assert ok, [c for c in checks if not c.ok]


async def pid_of(actor: object, wait_s: float = 60.0) -> int:
    """The shard's process id, once Ray has it running again (it may be restarting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await actor.pid.remote()  # type: ignore[attr-defined]
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_shard_processes_killed_with_sigkill_lose_nothing(ray_session: None) -> None:
    # Ray restarts the killed shards here; take-overs by standbys: tests/integration/test_failover.py.
    settings = engine_settings(snapshot_min_tail_ops=40, snapshot_tail_fraction=0, standby=False)
    async with engine(settings) as (running, client):
        await seed(client)
        actors = running.gateway.handles

        async def chaos() -> None:
            rng = random.Random(7)
            for _ in range(3):
                await asyncio.sleep(1.0)
                victim = rng.choice(sorted(actors))
                os.kill(await pid_of(actors[victim]), signal.SIGKILL)
            await asyncio.sleep(1.0)

        pids_before = {name: await pid_of(actor) for name, actor in actors.items()}
        book = await run_load(client, chaos())
        assert len(book.committed) > 50, "the load should mostly get through"
        await check_books(client, book)
        stats = await client.shard_stats()
        assert all(s["state"] == "ready" for s in stats)
        pids_after = {name: await pid_of(actor) for name, actor in actors.items()}
        assert pids_after != pids_before  # the kills happened and Ray restarted the shards


async def test_nats_server_killed_and_restarted_mid_load(ray_session: None) -> None:
    settings = engine_settings()
    async with engine(settings) as (running, client):
        await seed(client)
        seen_unavailable = asyncio.Event()

        async def chaos() -> None:
            await asyncio.sleep(1.0)
            await running.nats.kill()
            try:
                async with LotwiseClient(running.grpc_address, timeout_s=20, retry=RetryPolicy(max_attempts=1)) as raw:
                    await raw.reserve([HoldLine(SKU, SITES[0], ReserveLine(1))], 60_000, hold_id="probe")
            except Unavailable:
                seen_unavailable.set()  # clients see UNAVAILABLE, not wrong answers
            await asyncio.sleep(1.5)
            await running.nats.restart()

        book = await run_load(client, chaos())
        assert seen_unavailable.is_set()
        await check_books(client, book)


async def test_whole_engine_restart_gives_the_same_state_hash(ray_session: None) -> None:
    settings = engine_settings(snapshot_min_tail_ops=25, snapshot_tail_fraction=0)
    async with engine(settings) as (_, client):
        await seed(client)
        book = await run_load(client, asyncio.sleep(0), clients=16, orders=10)
        ok, before = await client.verify()
        assert ok
    async with engine(settings) as (_, client):
        ok, after = await client.verify()
        assert ok
        assert [(c.shard, c.batch_seq, c.live_hash) for c in after] == [
            (c.shard, c.batch_seq, c.live_hash) for c in before
        ]
        await check_books(client, book)


EXPECTED_LOG_WAIT_S = 90.0  # Ray forwards a shard's log lines to this process in batches, late under load


async def take_expected_logs(
    capsys: pytest.CaptureFixture[str], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> list[str]:
    """Wait for the log lines a test provokes on purpose (`required`), take them and the
    `optional` ones (provoked too, but racing the engine's stop) out of the captured output
    — a passing run shows no red line for an error that was the point of the test — and
    return them; everything else is written back, so real errors still show."""
    seen: list[str] = []
    missing = list(required)
    deadline = time.monotonic() + EXPECTED_LOG_WAIT_S
    while missing and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        captured = capsys.readouterr()
        seen.extend((captured.out + captured.err).splitlines())
        missing = [n for n in required if not any(n in line for line in seen)]
    expected = [line for line in seen if any(n in line for n in (*required, *optional))]
    rest = [line for line in seen if line not in expected]
    if rest:
        print("\n".join(rest))
    assert not missing, f"expected log lines never came: {missing}"
    return expected


async def test_a_corrupted_journal_message_stops_recovery_with_its_position(
    ray_session: None, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = engine_settings()
    async with engine(settings) as (running, client):
        await seed(client)
        url = running.nats.url
        stream = f"LOTWISE_JOURNAL_{settings.namespace}"
        subject = f"lotwise.journal.{settings.namespace}.000"
        nc = await nats.connect(url)
        try:
            ack = await nc.jetstream().publish(subject, b"\x02not avro at all")
        finally:
            await nc.close()
    started = time.monotonic()
    with pytest.raises(Exception, match=rf"{stream}.*position {ack.seq}") as failure:
        async with engine(settings):
            pass
    assert "JournalCorrupt" in str(failure.value)
    assert time.monotonic() - started < 120
    # Expected, and asserted here rather than printed in red: the shard (in its Ray worker)
    # logs the corrupt entry, and the history sink and the event bus dead-letter it.
    # (The followers dead-letter it only if they read it before the first engine stopped.)
    logged = await take_expected_logs(capsys, ("shard recovery failed",), ("journal message dead-lettered",))
    failed = [line for line in logged if "shard recovery failed" in line]
    assert all("JournalCorrupt" in line and f"position {ack.seq}" in line for line in failed), failed
    dead_lettered = [line for line in logged if "dead-lettered" in line]
    assert all(f"position={ack.seq}" in line for line in dead_lettered), dead_lettered
