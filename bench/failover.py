"""Fail-over: how long a SIGKILLed shard's pairs stay unanswered, under a steady order load.

    scripts/in-netns .venv/bin/python -m bench.failover --kills 8

Starts the engine as `lotwise up` does (local Ray, shard actors, embedded nats-server with
the JetStream journal, gRPC on 127.0.0.1:0; history, events and ingestion as the flags say),
seeds skus × sites, and runs `--clients` closed-loop sellers (one-call sale of 1 unit on a
random pair; an UNAVAILABLE answer is retried with the same request id, at most
`RETRY_ATTEMPTS` times). Every `--interval-s` it SIGKILLs the process of one shard (round
robin) and probes every pair of that shard with GetAvailability (no retries, every
`PROBE_EVERY_S`) until each answers: the outage of a kill is the time from the kill to the
last pair's first answer. At the end the books must be exact: for every pair the units
that left equal the units the sales committed (acknowledged sales all there, unanswered
ones applied once or not at all), and `verify` agrees with a rebuild from the journal.

Writes bench/results/<date>/failover/{failover.json,failover.md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RETRY_ATTEMPTS = 200  # a sale retried this many times (20 ms apart) is given up: "failed"
RETRY_PAUSE_S = 0.02
PROBE_EVERY_S = 0.01
PROBE_TIMEOUT_S = 2.0
STANDBY_WAIT_S = 120.0
STOCK_PER_PAIR = 1_000_000


@dataclass
class Book:
    """What the sellers were told, and how often they had to ask again."""

    sold: dict[str, tuple[str, str]] = field(default_factory=dict)  # request id → pair, acknowledged
    unknown: dict[str, tuple[str, str]] = field(default_factory=dict)  # gave up: applied once or not at all
    calls: int = 0
    retried: int = 0  # attempts answered UNAVAILABLE / RESOURCE_EXHAUSTED and asked again
    failed: int = 0  # sales given up


@dataclass
class Kill:
    shard: str
    pairs: int
    standby_wait_ms: float  # since the previous kill's take-over, until every standby followed
    outage_ms: float  # kill → every pair of the shard answered
    first_answer_ms: float  # kill → the first pair answered
    loadavg: str


async def seller(client: Any, worker: int, pairs: list[tuple[str, str]], book: Book, stop: asyncio.Event) -> None:
    from engine.domain.commands import ReserveLine
    from engine.domain.errors import Overloaded, Unavailable
    from engine.runtime.types import HoldLine

    rng = random.Random(worker)
    n = 0
    while not stop.is_set():
        n += 1
        pair = rng.choice(pairs)
        request_id = f"w{worker}-{n}"
        for _ in range(RETRY_ATTEMPTS):
            book.calls += 1
            try:
                await client.sell([HoldLine(pair[0], pair[1], ReserveLine(1))], request_id=request_id, timeout_s=5.0)
            except (Unavailable, Overloaded):
                book.retried += 1
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            book.sold[request_id] = pair
            break
        else:
            book.failed += 1
            book.unknown[request_id] = pair


async def answered_after(client: Any, pair: tuple[str, str], killed_at: float) -> float:
    """Seconds from the kill to the pair's first answer."""
    from engine.domain.errors import DeadlineExceeded, Overloaded, Unavailable

    while True:
        try:
            await client.get_availability(pair[0], pair[1], timeout_s=PROBE_TIMEOUT_S)
            return time.perf_counter() - killed_at
        except (Unavailable, Overloaded, DeadlineExceeded):
            await asyncio.sleep(PROBE_EVERY_S)


async def standbys_following(gateway: Any, wanted: bool) -> float:
    """Milliseconds until every shard has a standby following its journal (0 without standbys)."""
    started = time.perf_counter()
    while wanted:
        stats = await gateway.shard_stats()  # in this process: the wire does not carry `standby`
        if all(s.get("standby") == "standby" for s in stats) and all(s["state"] == "ready" for s in stats):
            break
        if time.perf_counter() - started > STANDBY_WAIT_S:
            raise SystemExit(f"the standbys did not follow within {STANDBY_WAIT_S} s: {stats}")
        await asyncio.sleep(0.1)
    return (time.perf_counter() - started) * 1000


async def kill_once(gateway: Any, probe: Any, shard: str, pairs: list[tuple[str, str]], waited_ms: float) -> Kill:
    handle = gateway.handles[shard]
    pid = await handle.pid.remote()
    killed_at = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    times = await asyncio.wait_for(asyncio.gather(*(answered_after(probe, p, killed_at) for p in pairs)), 120)
    return Kill(shard, len(pairs), waited_ms, max(times) * 1000, min(times) * 1000, _loadavg())


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def check_books(client: Any, pairs: list[tuple[str, str]], book: Book) -> dict[str, Any]:
    """Units gone from each pair == units the sales that happened committed; verify passes."""
    from engine.domain.errors import NotFound

    sold_per_pair: dict[tuple[str, str], int] = {}
    for pair in book.sold.values():
        sold_per_pair[pair] = sold_per_pair.get(pair, 0) + 1
    applied_unknown = 0
    for request_id, pair in book.unknown.items():
        try:
            hold = await client.get_hold(request_id)
        except NotFound:
            continue
        applied_unknown += hold.committed_qty
        sold_per_pair[pair] = sold_per_pair.get(pair, 0) + hold.committed_qty
    mismatches = []
    for pair in pairs:
        availability = await client.get_availability(pair[0], pair[1])
        on_hand = sum(r.qty for r in availability.rows)
        held = sum(r.held for r in availability.rows)
        if STOCK_PER_PAIR - on_hand != sold_per_pair.get(pair, 0) or held != 0:
            mismatches.append({"pair": pair, "on_hand": on_hand, "held": held, "sold": sold_per_pair.get(pair, 0)})
    ok, checks = await client.verify()
    return {
        "exact": not mismatches and ok,
        "mismatches": mismatches[:10],
        "verify_ok": ok,
        "acknowledged_sales": len(book.sold),
        "unanswered_sales_applied": applied_unknown,
        "shards_checked": len(checks),
    }


async def seed(client: Any, skus: int, sites: int) -> list[tuple[str, str]]:
    from engine.domain.catalog import Site, Sku

    pairs = [(f"SKU-{i:03d}", f"SITE-{j:02d}") for i in range(skus) for j in range(sites)]
    for i in range(skus):
        await client.put_sku(Sku(f"SKU-{i:03d}"), request_id=f"seed-sku-{i}")
    for j in range(sites):
        await client.put_site(Site(f"SITE-{j:02d}", "bench/region"), request_id=f"seed-site-{j}")
    await asyncio.gather(
        *(
            client.receive(sku, site, "L1", STOCK_PER_PAIR, status="available", request_id=f"seed-{sku}-{site}")
            for sku, site in pairs
        )
    )
    return pairs


def _settings(args: argparse.Namespace) -> Any:
    from engine.settings import Settings

    return Settings(
        port=0,
        metrics_port=0,
        shards=args.shards,
        data_dir=Path(tempfile.mkdtemp(prefix="lotwise-failover-")),
        history=args.followers,
        events=args.followers,
        ingest=args.followers,
        standby=args.standby,
        log_level="warning",
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.api.client import NO_RETRY, LotwiseClient
    from engine.bootstrap import running_engine
    from engine.logs import configure_logging

    configure_logging("warning")  # per-RPC access logs would flood the terminal during the outages
    settings = _settings(args)
    async with running_engine(settings) as engine:
        address = engine.grpc_address
        # Auth is on by default (as `lotwise up` runs): the clients carry the admin token the
        # engine wrote, or every call would be refused UNAUTHENTICATED.
        token_file = engine.token_file
        async with (
            LotwiseClient(address, timeout_s=30, token_file=token_file) as setup,
            LotwiseClient(address, retry=NO_RETRY, token_file=token_file) as load,
            LotwiseClient(address, retry=NO_RETRY, token_file=token_file) as probe,
        ):
            pairs = await seed(setup, args.skus, args.sites)
            book, stop = Book(), asyncio.Event()
            sellers = [asyncio.create_task(seller(load, w, pairs, book, stop)) for w in range(args.clients)]
            kills: list[Kill] = []
            shards = sorted(engine.gateway.handles)
            try:
                for k in range(args.kills):
                    waited_ms = await standbys_following(engine.gateway, args.standby)
                    await asyncio.sleep(args.interval_s)
                    shard = shards[k % len(shards)]
                    own = [p for p in pairs if engine.gateway.directory.shard_for(*p) == shard]
                    kills.append(await kill_once(engine.gateway, probe, shard, own, waited_ms))
                    print(f"kill {k + 1}: shard {shard}: {kills[-1].outage_ms:.0f} ms ({kills[-1].loadavg})")
                await asyncio.sleep(args.interval_s)
            finally:
                stop.set()
                await asyncio.gather(*sellers)
            books = await check_books(setup, pairs, book)
            stats = await setup.shard_stats()
    outages = sorted(k.outage_ms for k in kills)
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "outage_ms_p50": statistics.median(outages),
        "outage_ms_p99": _p99(outages),
        "outage_ms_max": outages[-1],
        "kills": [asdict(k) for k in kills],
        "calls": book.calls,
        "retried": book.retried,
        "failed": book.failed,
        "books": books,
        "recoveries": {s["shard"]: s["recoveries"] for s in stats},
    }


def _p99(values: list[float]) -> float:
    """Nearest-rank p99: with fewer than 100 kills, the worst one."""
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def _write(result: dict[str, Any]) -> Path:
    out = Path(__file__).parent / "results" / dt.date.today().isoformat() / "failover"
    out.mkdir(parents=True, exist_ok=True)
    (out / "failover.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Fail-over ({result['at']}; standby={result['args']['standby']})",
        "",
        f"kill → all pairs answering: p50 {result['outage_ms_p50']:.0f} ms, p99 {result['outage_ms_p99']:.0f} ms",
        f"calls {result['calls']}, retried {result['retried']}, failed {result['failed']}; books exact: "
        f"{result['books']['exact']}",
        "",
        "| kill | shard | pairs | standby ready after ms | first answer ms | all answering ms | loadavg |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for n, k in enumerate(result["kills"], 1):
        row = (
            n,
            k["shard"],
            k["pairs"],
            f"{k['standby_wait_ms']:.0f}",
            f"{k['first_answer_ms']:.0f}",
            f"{k['outage_ms']:.0f}",
            k["loadavg"],
        )
        lines.append("| " + " | ".join(map(str, row)) + " |")
    (out / "failover.md").write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs, round robin over the shards (≥ 5)")
    parser.add_argument("--interval-s", type=float, default=3.0, help="steady load between kills")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop sellers")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--skus", type=int, default=20)
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--standby", action=argparse.BooleanOptionalAction, default=True, help="warm standbys")
    parser.add_argument(
        "--followers", action=argparse.BooleanOptionalAction, default=True, help="history, events, ingestion"
    )
    args = parser.parse_args()
    os.environ["RAY_ADDRESS"] = "local"
    result = asyncio.run(run(args))
    out = _write(result)
    print((out / "failover.md").read_text())
    if not result["books"]["exact"]:
        raise SystemExit("the books are not exact after the kills")


if __name__ == "__main__":
    main()
