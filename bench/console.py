"""Console pages over 100,000 pairs: how long each page takes over HTTP (target ≤ 300 ms).

    scripts/in-netns .venv/bin/python -m bench.console                 # 1,000 skus × 100 sites
    scripts/in-netns .venv/bin/python -m bench.console --skus 200 --sites 50 --rounds 10
    .venv/bin/python -m bench.console --in-process                      # one shard's share, no engine

A real `lotwise up` (local Ray, the embedded JetStream journal with fsync, chDB history,
events, ingestion and the console) is started in a data directory of its own. A generated
CSV — the catalog, then one lot per (sku, site) pair with a bin, a status and an expiry — is
loaded over Admin/Import (the bulk path `lotwise import` takes), a few hundred consumptions
are booked so the charts have a curve, and once history has caught up with the journal the
bench signs in to the console with the admin token and times every page, `--rounds` times
each, one request at a time, over plain HTTP (httpx), reading the whole body. Printed: p50,
p95 and max milliseconds per page, its size, and the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx

from bench.stats import percentile
from engine.api.client import LotwiseClient
from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import history_pb2_grpc as hpb_grpc
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.import_client import import_file
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import Receive, Release, Reserve, ReserveLine
from engine.domain.shard import Op, PutSite, PutSku, ScanCells, ShardCore
from engine.endpoints import read_endpoints

TARGET_MS = 300.0
START_TIMEOUT_S = 240.0
CATCH_UP_TIMEOUT_S = 300.0
CONSUMPTIONS = 300
REGIONS = ("acme/east/north", "acme/east/south", "acme/west/coast", "acme/west/inland", "acme/central")
STATUSES = ("available", "available", "available", "qc_hold", "receiving")


@dataclass(frozen=True, slots=True)
class Timing:
    page: str
    ms: list[float]
    status: int
    size: int

    def row(self) -> str:
        ordered = sorted(self.ms)
        p50, p95, top = percentile(ordered, 50), percentile(ordered, 95), ordered[-1]
        verdict = "yes" if p95 <= TARGET_MS else "**no**"
        return (
            f"| `{self.page}` | {self.status} | {self.size / 1024:,.0f} KiB | {p50:,.1f} | {p95:,.1f} | {top:,.1f} |"
            f" {verdict} |"
        )


def write_estate(path: Path, skus: int, sites: int) -> None:
    """The catalog, then one lot per pair: sku-major so every site gets every sku."""
    with path.open("w", encoding="utf-8") as f:
        f.write("record,sku,site,name,org_path,lot_id,qty,expires_at,bin,status\n")
        f.writelines(f"sku,SKU-{i},,Item {i},,,,,,\n" for i in range(skus))
        f.writelines(f"site,,SITE-{j},Site {j},{REGIONS[j % len(REGIONS)]},,,,,\n" for j in range(sites))
        f.writelines(
            f"lot,SKU-{i},SITE-{j},,,LOT-{i}-{j},{10 + (i * 7 + j) % 90},2027-{1 + (i + j) % 12:02d}-{1 + j % 28:02d},"
            f"{'ABC'[i % 3]}/{i % 20:02d}/P{j % 5},{STATUSES[(i + j) % len(STATUSES)]}\n"
            for i in range(skus)
            for j in range(sites)
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def lotwise_up(data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`lotwise up` with its defaults (console on), free ports, a data directory of its own."""
    exe = [sys.executable, "-c", "from engine.cli import app; app()"]
    args = ["up", "--port", str(_free_port()), "--metrics-port", str(_free_port()), "--data-dir", str(data_dir)]
    env = {**os.environ, "LOTWISE_CONSOLE_PORT": str(_free_port())}
    env.pop("LOTWISE_AUTH_SECRET_FILE", None)  # its own secret and admin token, as on a first start
    proc = subprocess.Popen([*exe, *args, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def wait_up(data_dir: Path, proc: subprocess.Popen[bytes]) -> tuple[str, str, str]:
    """(gRPC address, console URL, admin token) once engine.json names a serving engine."""
    give_up = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"lotwise up exited with {proc.returncode}")
        endpoints = read_endpoints(data_dir)
        if endpoints is not None and endpoints.console:
            token = await asyncio.to_thread(Path(endpoints.token_file).read_text)
            return endpoints.grpc, endpoints.console.rstrip("/"), token.strip()
        if time.monotonic() > give_up:
            raise TimeoutError("lotwise up did not start")
        await asyncio.sleep(0.5)


async def load(address: str, token: str, path: Path, skus: int, sites: int) -> float:
    started = time.perf_counter()
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        tally = await import_file(channel, path, metadata=metadata, timeout_s=600)
    assert not tally.refused, f"{len(tally.refused)} rows refused"
    async with LotwiseClient(address, token=token, timeout_s=30) as client:
        await asyncio.gather(
            *(
                client.consume(f"SKU-{k % skus}", f"SITE-{(k * 7) % sites}", 1 + k % 3, doc_ref=f"CASE-{k}")
                for k in range(CONSUMPTIONS)
            )
        )
    return time.perf_counter() - started


async def wait_history(address: str, token: str) -> float:
    started = time.perf_counter()
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = hpb_grpc.HistoryStub(channel)
        while True:
            status = await stub.GetSinkStatus(hpb.GetSinkStatusRequest(), metadata=metadata)
            if status.pending_messages == 0 and status.acked_position >= status.stream_position:
                return time.perf_counter() - started
            if time.perf_counter() - started > CATCH_UP_TIMEOUT_S:
                raise TimeoutError(f"history did not catch up: {status}")
            await asyncio.sleep(0.5)


QUIET_CPU_PERCENT = 35.0  # the engine's process tree, in % of one core
QUIET_SAMPLES = 3
QUIET_TIMEOUT_S = 900.0


async def wait_quiet(pid: int) -> float:
    """Wait until the engine's processes (lotwise up, Ray's shards, nats-server, Envoy) stay
    under QUIET_CPU_PERCENT for QUIET_SAMPLES 2-s samples: the followers that history's
    catch-up does not cover (finance, replenishment, events) have worked through the bulk
    load, so pages are timed against an engine at rest, not against a backlog."""
    import psutil

    started = time.monotonic()
    root = psutil.Process(pid)
    quiet = 0
    while quiet < QUIET_SAMPLES and time.monotonic() - started < QUIET_TIMEOUT_S:
        tree = [root, *root.children(recursive=True)]
        before = {p.pid: _cpu_s(p) for p in tree}
        await asyncio.sleep(2.0)
        used = sum(_cpu_s(p) - before[p.pid] for p in tree if p.pid in before)
        quiet = quiet + 1 if used / 2.0 * 100 < QUIET_CPU_PERCENT else 0
    return time.monotonic() - started


def _cpu_s(process: object) -> float:
    import psutil

    try:
        times = process.cpu_times()  # type: ignore[attr-defined]
        return float(times.user + times.system)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def pages(sites: int) -> list[str]:
    mid = time.time_ns() // 1_000_000 - 3_600_000
    site = f"SITE-{sites // 2}"
    return [
        "/stock",
        "/stock?f=1&by_site=1&group=status",
        "/stock?f=1&org=acme/east&group=owner",
        f"/stock?f=1&by_site=1&site={site}&group=bin&bin_depth=1",
        f"/stock?f=1&by_site=1&site={site}&bin_prefix=A&group=bin&bin_depth=2",
        f"/stock?f=1&by_site=1&site={site}&group=expiry_day&max_shelf_life_days=120",
        "/history",
        f"/history?sku=SKU-7&site={site}",
        f"/history/asof?sku=SKU-7&site={site}&as_of_ms={mid - mid % 60_000}",
        "/history/trace?lot=LOT-7-3",
        "/charts",
        f"/charts?site={site}&days=90&horizon_days=180",
        "/deadletters",
    ]


async def time_pages(url: str, token: str, sites: int, rounds: int) -> list[Timing]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        form = await http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed = await http.post("/login", data={"token": token, "csrf": csrf.group(1)})
        assert signed.status_code == 303, signed.text
        timings = []
        for page in pages(sites):
            await http.get(page)  # warm: templates compiled, channel up
            ms: list[float] = []
            reply = None
            for _ in range(rounds):
                started = time.perf_counter()
                reply = await http.get(page)
                _ = reply.content
                ms.append((time.perf_counter() - started) * 1000)
            assert reply is not None
            timings.append(Timing(page, ms, reply.status_code, len(reply.content)))
            print(timings[-1].row(), flush=True)
        return timings


async def time_query_stock(address: str, token: str, rounds: int) -> None:
    """QueryStock alone over gRPC, for the stock pages' main cost: page ms / these ms is the
    console's own share, comparable whatever the machine's load."""
    metadata = (("authorization", f"Bearer {token}"),)
    questions = {
        "per site": pb.QueryStockRequest(by_sku=False, by_site=True, limit=10_000),
        "per site and status": pb.QueryStockRequest(
            by_sku=False, by_site=True, group_by=[pb.DIMENSION_STATUS], limit=10_000
        ),
    }
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.InventoryStub(channel)
        for name, request in questions.items():
            await stub.QueryStock(request, metadata=metadata)
            ms = []
            for _ in range(rounds):
                started = time.perf_counter()
                await stub.QueryStock(request, metadata=metadata, timeout=60)
                ms.append((time.perf_counter() - started) * 1000)
            ordered = sorted(ms)
            print(
                f"| QueryStock {name} (gRPC, no console) | {percentile(ordered, 50):,.1f} | "
                f"{percentile(ordered, 95):,.1f} | {ordered[-1]:,.1f} |",
                flush=True,
            )


async def run(skus: int, sites: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        estate = Path(tmp) / "estate.csv"
        write_estate(estate, skus, sites)
        with lotwise_up(data_dir) as proc:
            address, url, token = await wait_up(data_dir, proc)
            load_s = await load(address, token, estate, skus, sites)
            catch_up_s = await wait_history(address, token)
            print(f"{skus * sites:,} pairs loaded in {load_s:.1f} s; history caught up {catch_up_s:.1f} s later")
            quiet_s = await wait_quiet(proc.pid)
            print(f"the engine went quiet {quiet_s:.0f} s later (finance, replenishment: 100,000 receipts to follow)")
            before = os.getloadavg()
            print(f"load average before: {before[0]:.1f} {before[1]:.1f} {before[2]:.1f}")
            print("| page | HTTP | size | p50 ms | p95 ms | max ms | ≤ 300 ms |")
            print("|---|---:|---:|---:|---:|---:|---|")
            await time_pages(url, token, sites, rounds)
            print("| call | p50 ms | p95 ms | max ms |")
            print("|---|---:|---:|---:|")
            await time_query_stock(address, token, rounds)
            after = os.getloadavg()
            print(f"load average after: {after[0]:.1f} {after[1]:.1f} {after[2]:.1f}")


def _ms_per_call(fn: Callable[[], object], rounds: int) -> list[float]:
    ms = []
    for _ in range(rounds):
        started = time.process_time()
        fn()
        ms.append((time.process_time() - started) * 1000)
    return sorted(ms)


def in_process(skus: int, sites: int, rounds: int) -> None:
    """One shard's cells in this process (no Ray, no journal): a whole-estate scan sliced
    cell by cell (before) against the kept per-site totals (after), interleaved round by
    round in one run, in CPU ms; then what the totals cost the write path — a batch of
    reserves with the totals kept vs not kept — and a read after that batch."""
    core = ShardCore("bench")
    core.apply_batch([*(PutSku(Sku(f"SKU-{i}")) for i in range(skus))], 0)
    core.apply_batch([PutSite(Site(f"SITE-{j}", REGIONS[j % len(REGIONS)])) for j in range(sites)], 0)
    now = 1_800_000_000_000
    for i in range(skus):
        receipts = [
            Receive(f"r{i}-{j}", f"SKU-{i}", f"SITE-{j}", f"LOT-{i}-{j}", 100, f"A/{i % 10}",
                    STATUSES[(i + j) % len(STATUSES)], "own", now + (30 + (i * j) % 300) * 86_400_000)
            for j in range(sites)
        ]  # fmt: skip
        core.apply_batch(receipts, now)
        core.drain()
    questions = {
        "per site": ScanCells(frozenset(), frozenset(), "", (), SliceFilter(), 0, 10_000, False, True),
        "per site and status": ScanCells(
            frozenset(), frozenset(), "", (Dimension.STATUS,), SliceFilter(), 0, 10_000, False, True
        ),
        "org acme/east by owner": ScanCells(
            frozenset(), frozenset(), "acme/east", (Dimension.OWNER,), SliceFilter(), 0, 10_000, False, True
        ),
    }
    build = _ms_per_call(lambda: core.apply(questions["per site"], now), 1)[0]
    print(f"{skus * sites:,} cells; the totals built on the first read in {build:,.0f} ms CPU")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| question | scan p50 / p95 ms CPU | totals p50 / p95 ms CPU | ratio p50 |")
    print("|---|---:|---:|---:|")
    for name, op in questions.items():
        scan, kept = [], []
        for _ in range(rounds):  # interleaved: the same machine state for both
            scan += _ms_per_call(lambda op=op: core.scan_cells(op, now), 1)  # type: ignore[misc]
            kept += _ms_per_call(lambda op=op: core.apply(op, now), 1)  # type: ignore[misc]
        scan.sort()
        kept.sort()
        print(
            f"| {name} | {percentile(scan, 50):,.2f} / {percentile(scan, 95):,.2f} | "
            f"{percentile(kept, 50):,.3f} / {percentile(kept, 95):,.3f} | "
            f"{percentile(scan, 50) / max(percentile(kept, 50), 1e-6):,.0f}× |"
        )
    _write_path_cost(core, skus, sites, rounds, now, questions["per site"])
    _page_cost(core, rounds, now)


def _page_cost(core: ShardCore, rounds: int, now: int) -> None:
    """A page of 150 rows (the shard keeps the first 151 after the cursor) against the whole
    answer, interleaved: per (sku, site) scans every cell either way; per site and status
    comes from the kept totals. A middle page starts after the answer's middle row."""
    whole_ops = {
        "per sku and site (scan)": ScanCells(frozenset(), frozenset(), "", (), SliceFilter(), 0, 100_000),
        "per site and status (totals)": ScanCells(
            frozenset(), frozenset(), "", (Dimension.STATUS,), SliceFilter(), 0, 100_000, False, True
        ),
    }
    print("| question | whole p50 / p95 ms CPU | first page p50 / p95 | middle page p50 / p95 | rows whole |")
    print("|---|---:|---:|---:|---:|")
    for name, op in whole_ops.items():
        rows = core.apply(op, now)
        middle = sorted((sku, site, row.group) for sku, site, row in rows)[len(rows) // 2]
        first_op, middle_op = replace(op, keep=151), replace(op, keep=151, after=middle)
        whole, first, mid = [], [], []
        for _ in range(rounds):
            whole += _ms_per_call(lambda op=op: core.apply(op, now), 1)  # type: ignore[misc]
            first += _ms_per_call(lambda op=first_op: core.apply(op, now), 1)  # type: ignore[misc]
            mid += _ms_per_call(lambda op=middle_op: core.apply(op, now), 1)  # type: ignore[misc]
        whole.sort()
        first.sort()
        mid.sort()
        print(
            f"| {name} | {percentile(whole, 50):,.2f} / {percentile(whole, 95):,.2f} | "
            f"{percentile(first, 50):,.2f} / {percentile(first, 95):,.2f} | "
            f"{percentile(mid, 50):,.2f} / {percentile(mid, 95):,.2f} | {len(rows):,} |"
        )


def _write_path_cost(core: ShardCore, skus: int, sites: int, rounds: int, now: int, read: ScanCells) -> None:
    """Reserve+release batches of 1,000 on distinct cells, with the totals kept (marking each
    changed cell) and without (a shard nobody asked a whole-estate question), interleaved."""
    kept_totals = core._totals
    with_ms: list[float] = []
    without_ms: list[float] = []
    read_ms: list[float] = []
    for r in range(rounds):
        for keep in (r % 2 == 0, r % 2 == 1):  # which goes first alternates
            tag = f"{r}-{int(keep)}"
            batch: list[Op] = []
            for k in range(1_000):
                sku, site = f"SKU-{(r * 7 + k) % skus}", f"SITE-{(k * 13) % sites}"
                batch += [Reserve(f"h{tag}-{k}", sku, site, f"H{tag}-{k}", (ReserveLine(1),), 60_000),
                          Release(f"x{tag}-{k}", sku, site, f"H{tag}-{k}")]  # fmt: skip
            core._totals = kept_totals if keep else None
            started = time.process_time()
            core.apply_batch(batch, now)
            core.drain()
            (with_ms if keep else without_ms).append((time.process_time() - started) * 1000)
            core._totals = kept_totals
            if keep:
                read_ms += _ms_per_call(lambda: core.apply(read, now), 1)
            else:  # the cells changed unseen: the kept totals must learn of them
                for k in range(1_000):
                    kept_totals.mark((f"SKU-{(r * 7 + k) % skus}", f"SITE-{(k * 13) % sites}"))  # type: ignore[union-attr]
    per_op = 1000 / 2_000
    print(
        f"write path, 2,000 ops per batch (reserve + release on 1,000 cells): "
        f"{percentile(sorted(without_ms), 50) * per_op:,.2f} µs CPU per op without totals, "
        f"{percentile(sorted(with_ms), 50) * per_op:,.2f} with (p50 over {rounds} batches each, interleaved); "
        f"a whole-estate read after such a batch: {percentile(sorted(read_ms), 50):,.1f} ms CPU p50"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20, help="requests per page (after one warm-up)")
    parser.add_argument("--in-process", action="store_true", help="one shard's cells in this process, no engine")
    args = parser.parse_args()
    if args.in_process:
        in_process(args.skus // 2, args.sites, args.rounds)  # one of the engine's two shards
        return
    asyncio.run(run(args.skus, args.sites, args.rounds))


if __name__ == "__main__":
    main()
