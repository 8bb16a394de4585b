"""Bulk load: lots/s of `lotwise import` (Admin.Import) at 10⁴–10⁵ lots.

    .venv/bin/python -m bench.bulk_load                       # 10,000 and 100,000 lots
    .venv/bin/python -m bench.bulk_load --lots 20000 --chunk-rows 4096
    .venv/bin/python -m bench.bulk_load --up                  # a `lotwise up` started for the run
    .venv/bin/python -m bench.bulk_load --target 127.0.0.1:50051   # a running `lotwise up`
    .venv/bin/python -m bench.bulk_load --before a07f5ec      # the same bench over an older engine first

Without --target or --up, a server process (bootstrap.local_gateway: 2 shards in that
process, journal in memory, no Ray, no fsync; logging at warning) serves lotwise.v1.Admin
on 127.0.0.1, and this process imports a generated CSV into it the way `lotwise import`
does (read, parse, chunk, stream). With --up, `lotwise up` itself serves (its defaults:
local Ray, the embedded JetStream journal with fsync, every follower and ingestion on;
with --followers-off all of them off), in a data directory of its own. Each size is
imported twice: the first run loads the lots, the second is the idempotent re-run (every
row answered from the cells' idempotency window, nothing changes). Printed per run: lots/s
(wall clock, reading the file included), the server's CPU per lot (psutil: the server
process and, with --up, every process under it — Ray, nats-server), this process's CPU per
lot, and with --up the followers' lag: the most journal messages the history sink and the
event bus had not acknowledged during the run, and how long after the import's end they
took to catch up. With --target the server's CPU is not measured (it may be many
processes); the import itself is the same.

    .venv/bin/python -m bench.bulk_load --shard-only 102400 --rounds 3

--shard-only N: no server, no client — a shard's own work per bulk receipt in this
process: N receipts in ReceiveBulk ops of RECEIVE_BULK_MAX applied to a ShardCore and
each op's journal entry encoded, two ways interleaved round by round on fresh cores:
"records" (the journal entry as Avro records, CPython's young-collection threshold of 700:
the engine before journal v5) and "columns" (journal v5's receipt columns, the shard
host's threshold, engine.runtime.host.YOUNG_THRESHOLD). CPU µs per receipt, and the size
of the entries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil

from bench.served import server_process
from engine.api.client import LotwiseClient
from engine.api.import_client import import_file
from engine.logs import configure_logging

SKUS = 200
SITES = 10  # 2,000 pairs: lots spread over both shards and many cells
UP_START_TIMEOUT_S = 420.0  # `lotwise up` retries a Ray start that timed out; at load 15–20 both can take minutes
LAG_SAMPLE_S = 0.5
LAG_DRAIN_TIMEOUT_S = 300.0
LAG_SETTLED_S = 3.0
# Everything that follows the journal (or feeds the engine besides the import): off with
# --followers-off, so what is left is the engine's own write path.
FOLLOWER_SETTINGS = (
    "LOTWISE_HISTORY",
    "LOTWISE_EVENTS",
    "LOTWISE_INGEST",
    "LOTWISE_FINANCE",
    "LOTWISE_REPLENISH",
    "LOTWISE_HEALTH",
)
LAG_METRICS = ("lotwise_history_lag_messages", "lotwise_bus_lag_messages")


@dataclass(frozen=True, slots=True)
class Lag:
    """The followers' lag over one import: the most journal messages not yet acknowledged
    (history, events), and seconds from the import's end until both were caught up."""

    max_history: int
    max_events: int
    drain_s: float

    def cell(self) -> str:
        return f"{self.max_history:,} / {self.max_events:,} msgs, {self.drain_s:.1f} s"


@dataclass(frozen=True, slots=True)
class Run:
    lots: int
    rerun: bool
    seconds: float
    server_cpu_s: float | None
    client_cpu_s: float
    refused: int
    lag: Lag | None = None

    def row(self) -> str:
        server = "—" if self.server_cpu_s is None else f"{self.server_cpu_s / self.lots * 1e6:,.0f}"
        lag = "—" if self.lag is None else self.lag.cell()
        return (
            f"| {self.lots:>7,} | {'re-run' if self.rerun else 'load':<6} | {self.lots / self.seconds:>8,.0f} | "
            f"{server:>6} | {self.client_cpu_s / self.lots * 1e6:>6,.0f} | {self.refused} | {lag} |"
        )


def write_file(path: Path, lots: int) -> None:
    """The catalog, then `lots` lots spread over every pair (dates, bins, statuses set)."""
    with path.open("w", encoding="utf-8") as f:
        f.write("record,sku,site,name,org_path,lot_id,qty,expires_at,bin,status\n")
        f.writelines(f"sku,SKU-{i},,Item {i},,,,,,\n" for i in range(SKUS))
        f.writelines(f"site,,SITE-{j},Site {j},acme/east,,,,,\n" for j in range(SITES))
        f.writelines(
            f"lot,SKU-{k % SKUS},SITE-{(k // SKUS) % SITES},,,LOT-{k},{1 + k % 50},2027-{1 + k % 12:02d}-28,"
            f"A/{k % 20:02d},available\n"
            for k in range(lots)
        )


# ---- the server process ----


# ---- the import ----


def _cpu_s(procs: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds so far of each process (a process gone meanwhile is left out)."""
    out: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


def _tree(proc: psutil.Process | None) -> list[psutil.Process]:
    if proc is None:
        return []
    with contextlib.suppress(psutil.Error):
        return [proc, *proc.children(recursive=True)]
    return [proc]


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _lag_now(metrics_url: str) -> tuple[int, int]:
    with urllib.request.urlopen(metrics_url, timeout=5) as reply:  # our own 127.0.0.1 endpoint
        text = reply.read().decode()
    found = dict.fromkeys(LAG_METRICS, 0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = int(float(value))
    return found[LAG_METRICS[0]], found[LAG_METRICS[1]]


async def _watch_lag(
    metrics_url: str, done: asyncio.Event, procs: list[psutil.Process]
) -> tuple[Lag, dict[int, float]]:
    """Sample the followers' lag until the import is done and they have caught up: both
    gauges at 0 for LAG_SETTLED_S (they are refreshed about once a second, so a single 0
    right after a short import may be stale). Returns the lag and the server's CPU times
    at the first sample that saw them caught up (not counting the idle wait after it)."""
    most = [0, 0]
    ended_at = last_lag_at = 0.0
    cpu_at_zero: dict[int, float] | None = None
    while True:
        history, events = await asyncio.to_thread(_lag_now, metrics_url)
        now = time.perf_counter()
        most = [max(most[0], history), max(most[1], events)]
        if (history, events) != (0, 0):
            last_lag_at, cpu_at_zero = now, None
        elif cpu_at_zero is None or (done.is_set() and not ended_at):
            cpu_at_zero = _cpu_s(procs)  # the first 0 after a lag, or the import's end
        if done.is_set():
            ended_at = ended_at or now
            settled = now - max(last_lag_at, ended_at) >= LAG_SETTLED_S
            if settled or now - ended_at > LAG_DRAIN_TIMEOUT_S:
                lag = Lag(most[0], most[1], max(0.0, last_lag_at - ended_at))
                return lag, cpu_at_zero if cpu_at_zero is not None else _cpu_s(procs)
        await asyncio.sleep(LAG_SAMPLE_S)


async def measure(server: Server, path: Path, lots: int, rerun: bool, chunk_rows: int) -> Run:
    done = asyncio.Event()
    procs = _tree(server.proc)
    watch = asyncio.create_task(_watch_lag(server.metrics_url, done, procs)) if server.metrics_url else None
    metadata = server.metadata()
    async with grpc.aio.insecure_channel(server.target) as channel:
        server0, own0, t0 = _cpu_s(procs), _own_cpu_s(), time.perf_counter()
        tally = await import_file(channel, path, chunk_rows=chunk_rows, metadata=metadata)
        seconds = time.perf_counter() - t0
        own_s = _own_cpu_s() - own0
    done.set()
    # With followers, the server's CPU counts until they have caught up: that work is the load's too.
    lag, server1 = await watch if watch is not None else (None, _cpu_s(procs))
    if tally.lots != lots:
        raise RuntimeError(f"imported {tally.lots} lots of {lots}; refused: {tally.refused[:5]}")
    server_s = sum(cpu - server0.get(pid, 0.0) for pid, cpu in server1.items()) if procs else None
    if len(procs) > 1:  # where a `lotwise up`'s CPU went, process by process
        by_name: dict[str, float] = {}
        for proc in procs:
            if proc.pid in server1:
                name = _name(proc)
                by_name[name] = by_name.get(name, 0.0) + server1[proc.pid] - server0.get(proc.pid, 0.0)
        parts = sorted(by_name.items(), key=lambda kv: -kv[1])
        print("    server CPU µs/lot by process: " + ", ".join(f"{n} {s / lots * 1e6:,.0f}" for n, s in parts if s > 0))
    return Run(lots, rerun, seconds, server_s, own_s, len(tally.refused), lag)


def _name(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        cmdline = proc.cmdline()
        if cmdline and cmdline[0].startswith("ray::"):
            return cmdline[0]
        if "up" in cmdline[:5] and any("engine.cli" in part for part in cmdline[:3]):
            return "lotwise up (gateway, API, followers)"
        return proc.name()
    return "?"


@dataclass(frozen=True, slots=True)
class Server:
    target: str
    proc: psutil.Process | None = None
    metrics_url: str = ""
    token_file: Path | None = None  # the admin token `lotwise up` wrote (auth is on by default)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.token_file is None:
            return ()
        return (("authorization", f"Bearer {self.token_file.read_text().strip()}"),)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def lotwise_up(data_dir: Path, followers: bool = True) -> Iterator[Server]:
    """`lotwise up` with its defaults, on free ports, in a data directory of its own;
    `followers=False` turns every journal follower and ingestion off (what they cost)."""
    port, metrics_port = _free_port(), _free_port()
    # `lotwise up` from the engine this bench imports (the checkout it runs in).
    exe = [sys.executable, "-c", "from engine.cli import app; app()"]
    args = [*exe, "up", "--port", str(port), "--metrics-port", str(metrics_port), "--data-dir", str(data_dir)]
    off = {} if followers else dict.fromkeys(FOLLOWER_SETTINGS, "false")
    proc = subprocess.Popen([*args, "--log-level", "warning"], env={**os.environ, **off})
    try:
        server = Server(
            f"127.0.0.1:{port}",
            psutil.Process(proc.pid),
            f"http://127.0.0.1:{metrics_port}/metrics",
            data_dir / "auth" / "admin.token",
        )
        asyncio.run(_wait_serving(server, proc))
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _wait_serving(server: Server, proc: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + UP_START_TIMEOUT_S
    while server.token_file is not None and not server.token_file.exists():  # written early in start-up
        if proc.poll() is not None or time.monotonic() > give_up:
            raise RuntimeError(f"lotwise up wrote no admin token at {server.token_file}")
        await asyncio.sleep(0.2)
    async with LotwiseClient(server.target, timeout_s=2.0, token_file=server.token_file) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lotwise up exited with {proc.returncode}")
            try:
                await client.list_skus()
                return
            except Exception:  # not serving yet (connection refused, UNAVAILABLE)
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.5)


async def run(sizes: list[int], chunk_rows: int, server: Server) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n, lots in enumerate(sizes):
            path = Path(tmp) / f"lots-{lots}.csv"
            write_file(path, lots)
            # Distinct lot ids per size: a size's load is never a re-run of another's.
            path.write_text(path.read_text(encoding="utf-8").replace("LOT-", f"LOT{n}-"), encoding="utf-8")
            for rerun in (False, True):
                print((await measure(server, path, lots, rerun, chunk_rows)).row(), flush=True)


def serve_and_run(sizes: list[int], chunk_rows: int, target: str | None, up: bool, followers: bool) -> None:
    with contextlib.ExitStack() as stack:
        if target is not None:
            server = Server(target)
        elif up:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(lotwise_up(data_dir, followers))
        else:
            pid, port = stack.enter_context(server_process())
            server = Server(f"127.0.0.1:{port}", psutil.Process(pid))
        asyncio.run(run(sizes, chunk_rows, server))


def run_before(ref: str, argv: list[str]) -> None:
    """This bench, as it is, over the engine at git `ref` (an export of that commit): the
    "before" of a before/after pair, run in the same invocation on the same machine."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        export = subprocess.run(["git", "-C", str(root), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=export, check=True)
        (Path(tmp) / "bench" / "bulk_load.py").write_bytes(Path(__file__).read_bytes())
        print(f"before: the engine at {ref}", flush=True)
        subprocess.run([sys.executable, "-m", "bench.bulk_load", *argv], cwd=tmp, check=True)
    print("after: this checkout", flush=True)


def shard_only(receipts: int, rounds: int) -> None:
    """The shard's CPU per bulk receipt: apply + journal encode, records vs columns."""
    import gc

    from adapters.nats.codec import encode_entry
    from engine.domain.catalog import Site, Sku
    from engine.domain.commands import Receive
    from engine.domain.ports import JournalEntry
    from engine.domain.shard import RECEIVE_BULK_MAX, PutSite, PutSku, ReceiveBulk, ShardCore, journaled
    from engine.runtime.host import YOUNG_THRESHOLD

    def op(first: int) -> ReceiveBulk:
        rows = range(first, min(first + RECEIVE_BULK_MAX, receipts))
        return ReceiveBulk(
            tuple(
                Receive(
                    f"r{i}",
                    f"sku-{i % 200}",
                    f"site-{i // 200 % 10}",
                    f"L{i}",
                    10,
                    f"A/{i % 97:02d}",
                    "available",
                    expires_at_ms=1_900_000_000_000 + i,
                )
                for i in rows
            )
        )

    ops = [op(first) for first in range(0, receipts, RECEIVE_BULK_MAX)]
    saved = gc.get_threshold()
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    print("| round | way | CPU µs/receipt | journal bytes/receipt |\n|---:|---|---:|---:|")
    try:
        for n in range(1, rounds + 1):
            for way, columns, young in (("records", False, 700), ("columns", True, YOUNG_THRESHOLD)):
                core = ShardCore("s")
                core.apply_batch([PutSku(Sku(f"sku-{i}")) for i in range(200)], 0)
                core.apply_batch([PutSite(Site(f"site-{i}")) for i in range(10)], 0)
                core.drain()
                gc.collect()
                gc.set_threshold(young, saved[1], saved[2])
                size, started = 0, time.process_time()
                for seq, bulk in enumerate(ops, start=1):
                    core.apply_batch([bulk], 1_000)
                    entry = JournalEntry("s", seq, 1_000, tuple(journaled(bulk)), tuple(core.drain()))
                    size += len(encode_entry(entry, columns=columns))
                cpu = time.process_time() - started
                gc.set_threshold(*saved)
                print(f"| {n} | {way} | {cpu / receipts * 1e6:.1f} | {size / receipts:.0f} |", flush=True)
                del core
    finally:
        gc.set_threshold(*saved)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lots", default="10000,100000", help="lots per file, comma-separated")
    parser.add_argument("--chunk-rows", type=int, default=2048, help="rows per Import chunk (1..4096)")
    parser.add_argument("--target", help="host:port of a running engine (default: a bench server process)")
    parser.add_argument("--up", action="store_true", help="start `lotwise up` (its defaults) for the run")
    parser.add_argument(
        "--followers-off",
        action="store_true",
        help="with --up: every follower (history, events, finance, replenishment, health) and ingestion off",
    )
    parser.add_argument("--before", metavar="GIT_REF", help="first run the same bench over the engine at GIT_REF")
    parser.add_argument("--shard-only", type=int, metavar="N", help="only a shard's own work for N receipts")
    parser.add_argument("--rounds", type=int, default=3, help="with --shard-only: rounds of each way")
    args = parser.parse_args()
    if args.shard_only:
        shard_only(args.shard_only, args.rounds)
        return
    if args.before:
        run_before(args.before, [a for a in sys.argv[1:] if a not in ("--before", args.before)])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    configure_logging("warning")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    print("| lots | run | lots/s | server CPU µs/lot | client CPU µs/lot | refused | follower lag (history / events) |")
    print("|---:|---|---:|---:|---:|---:|---|")
    serve_and_run([int(n) for n in args.lots.split(",")], args.chunk_rows, args.target, args.up, not args.followers_off)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
