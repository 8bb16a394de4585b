"""Graceful overload: goodput and p99 against offered load, 0.5× to 8× saturation (issue 19).

    scripts/in-netns .venv/bin/python -m bench.overload                      # defaults below
    scripts/in-netns .venv/bin/python -m bench.overload --saturation 64 --levels 0.5,1,2,4,8 --seconds 8
    scripts/in-netns .venv/bin/python -m bench.overload --compare     # each row with the AIMD / the gradient limit

A server process (Gateway.local: shards in that process, journal in memory, no Ray; the
door of engine.api.admission with its default bounds) serves lotwise.v1.Inventory and
Admin on 127.0.0.1. Load comes from `--procs` worker processes of closed-loop callers,
each placing orders (Reserve of one unit, then Commit) through LotwiseClient with 2 s
deadlines and its default retries (jittered back-off, RetryInfo as a floor, a retry
budget). "Saturation" is `--saturation` callers — about where orders/s stops growing on
this box — and each level runs that many callers times the level, unary and batched.

Per row: goodput (orders whose Reserve and Commit both succeeded, per second), goodput
as a share of the 1× row of the same mode, p50/p99 of successful calls, and every call's
outcome: ok, shed (RESOURCE_EXHAUSTED OVERLOADED after the client's retries), deadline
(DEADLINE_EXCEEDED), cancelled/unknown (must be 0) and other; the retries the budget
refused; the server's RSS growth. Afterwards `verify` rebuilds every shard from its
journal and compares it with the live state (books exact). With `--compare` each row runs
twice, interleaved: lean callers as at 5e2849f ("before": adaptive throttle, back-off after
a refusal, the AIMD ConcurrencyLimit per channel) and the same with a GradientLimit instead
("after"); without it, rows are "after"'s. Rows carry `door` and
the p99 of calls that succeeded at their first attempt. Writes the rows as JSON and a
PNG plot next to it (bench/results/<date>/overload/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench import lean_load
from bench.served import Served, served_process
from engine.api.client import DEFAULT_BATCHING, ConcurrencyLimit, LotwiseClient, Throttled
from engine.api.errors import RemoteError
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.errors import DeadlineExceeded, DomainError, Overloaded
from engine.logs import configure_logging
from engine.runtime.types import HoldLine

SKUS = 64  # orders spread over this many pairs, so no one cell is the bottleneck
STOCK_PER_SKU = 10_000_000  # deep: no order is refused for stock
TTL_MS = 60_000
DEADLINE_S = 2.0
OUTCOMES = lean_load.OUTCOMES
# --compare runs each row against both, interleaved: one server process each (both pinned
# to the server's CPUs, one idle while the other serves), one set of load processes at a time.
DOOR_AFTER = "after"  # as "before", but the callers' limit is a GradientLimit (tied to the
# quickest answer of the last seconds, engine.api.gradient) instead of the AIMD one
DOOR_BEFORE = "before"  # as at 5e2849f: the door with its cap on the wait before it, callers
# throttling adaptively, backing off after a refused call, and keeping a ConcurrencyLimit per
# channel (AIMD on first-try latency, a 100 ms target): an attempt beyond it fails at once
DOOR_WIRE = "wire"  # rows of earlier runs: the door with CoDel on the wait, callers sending the header
Tally = lean_load.Tally


# ---- the server process ----


# ---- a worker process: closed-loop callers ----


def outcome_of(err: BaseException) -> str:
    match err:
        case Throttled():
            return "throttled"
        case Overloaded():
            return "shed"
        case DeadlineExceeded():
            return "deadline"
        case RemoteError() if err.code.name in ("CANCELLED", "UNKNOWN"):
            return "cancelled_unknown"
    return "other"


async def work(target: str, callers: int, batched: bool, start_at: float, seconds: float, offset: int) -> Tally:
    """Closed-loop callers through LotwiseClient (`--client lotwise`): the real client's
    behaviour under overload, at ~0.5–1 ms of client CPU per call."""
    tally = Tally()
    batching = DEFAULT_BATCHING if batched else None
    async with LotwiseClient(
        target, timeout_s=DEADLINE_S, batching=batching, concurrency_limit=ConcurrencyLimit()
    ) as client:
        await client.wait_ready(30)
        await asyncio.sleep(max(start_at - time.time(), 0.0))
        t0 = time.monotonic()
        stop_at = t0 + seconds

        async def timed(call: Any) -> Any:
            started = time.monotonic()
            try:
                result = await call
            except (DomainError, RemoteError) as err:
                tally.outcomes[outcome_of(err)] += 1
                return None
            tally.outcomes["ok"] += 1
            tally.latencies_ms.append((time.monotonic() - started) * 1000)
            return result

        async def caller(k: int) -> None:
            i = offset + k
            while time.monotonic() < stop_at:
                line = HoldLine(f"sku-{i % SKUS}", "bench-site", ReserveLine(1))
                hold = await timed(client.reserve([line], TTL_MS))
                if hold is not None and await timed(client.commit(hold.hold_id)) is not None:
                    tally.orders += 1
                i += callers

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(caller(k) for k in range(callers)))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        tally.cpu_s = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
        tally.throttled_retries = client.retry_budget.throttled
    return tally


async def work_lean(
    target: str,
    callers: int,
    batch: int,
    start_at: float,
    seconds: float,
    offset: int,
    door: str = DOOR_AFTER,
    before_tolerance: float = 0.0,
) -> lean_load.Tally:
    """Closed-loop callers on raw gRPC (bench/lean_load.py): unary Reserve then Commit, or
    (batch > 1) an Execute of `batch` reserves then one of their commits. `door` says how
    the callers behave: both throttle adaptively, back off after a refused call and keep a
    limit on their channel's attempts in flight: DOOR_AFTER a GradientLimit, DOOR_BEFORE
    the AIMD ConcurrencyLimit — or, with `before_tolerance` > 0, a GradientLimit of that
    tolerance (to compare two tolerances in one run)."""
    tally = lean_load.Tally()
    encoder = lean_load.Encoder(SKUS, "bench-site", TTL_MS)
    lean_load.check_encoding(encoder, "bench-site", TTL_MS)
    tag = f"{os.getpid()}-{int(start_at)}"
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        if door == DOOR_AFTER or before_tolerance > 0:
            tolerance = before_tolerance if door == DOOR_BEFORE else 0.0
            caller = lean_load.LeanCaller(channel, tally, DEADLINE_S, limit="gradient", tolerance=tolerance)
        else:
            caller = lean_load.LeanCaller(channel, tally, DEADLINE_S, limit="aimd")
        await asyncio.sleep(max(start_at - time.time(), 0.0))
        stop_at = time.monotonic() + seconds
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)

        async def unary(k: int) -> None:
            n = 0
            while time.monotonic() < stop_at:
                hold = f"{tag}-{k}-{n}".encode()
                if await caller.unary(True, encoder.reserve(hold, offset + k + n)) and await caller.unary(
                    False, encoder.commit(hold)
                ):
                    tally.orders += 1
                n += 1

        async def batched(k: int) -> None:
            n = 0
            while time.monotonic() < stop_at:
                holds = [f"{tag}-{k}-{n + j}".encode() for j in range(batch)]
                n += batch
                reserved = await caller.execute(
                    [encoder.reserve_command(h, offset + k + j) for j, h in enumerate(holds)]
                )
                held = [h for h, ok in zip(holds, reserved, strict=True) if ok]
                if held:
                    committed = await caller.execute([encoder.commit_command(h) for h in held], critical=True)
                    tally.orders += sum(committed)  # after the await: `+= await` would lose updates

        callers_done = asyncio.gather(*((batched if batch > 1 else unary)(k) for k in range(callers)))
        await asyncio.gather(callers_done, lean_load.probe_loop_lag(tally, stop_at))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        tally.cpu_s = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
        tally.throttled_retries = caller.budget.throttled
    return tally


def worker_main(args: argparse.Namespace) -> None:
    configure_logging("error")
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.client == "lean":
        batch = args.batch if args.batched else 1
        lean = asyncio.run(
            work_lean(
                args.target,
                args.callers,
                batch,
                args.start_at,
                args.seconds,
                args.offset,
                args.door,
                args.before_tolerance,
            )
        )
        print(json.dumps(asdict(lean)))
        return
    tally = asyncio.run(work(args.target, args.callers, args.batched, args.start_at, args.seconds, args.offset))
    print(json.dumps(asdict(tally)))


# ---- the driver ----


@dataclass(frozen=True, slots=True)
class Row:
    mode: str
    level: float
    callers: int
    seconds: float
    orders: int
    outcomes: dict[str, int]
    p50_ms: float
    p99_ms: float
    throttled_retries: int
    rss_growth_mib: float
    server_cpu: float  # cores the server process used over the row (1.0 = one core busy)
    server_cpu_ms_per_call: float  # server CPU per call answered (ok or refused)
    client_cpu_ms_per_call: float  # load generators' CPU per call answered: the harness's own cost
    goodput_share: float = 0.0  # of the 1× row of the same mode and door
    door: str = DOOR_AFTER  # which door and callers (DOOR_AFTER, DOOR_BEFORE; DOOR_WIRE in older runs)
    p99_first_ms: float = 0.0  # p99 of calls that succeeded at their first attempt (lean client)
    # The server's view (its histograms over the row, every call that reached the door) and
    # the load processes' own loop: where the client's latency comes from.
    server_wire_p99_ms: float = 0.0  # the wait before the door (callers that send the header)
    server_admitted_p99_ms: float = 0.0  # from the door until the handler returned
    client_lag_p99_ms: float = 0.0  # how late the load processes' loops ran a 5 ms timer

    @property
    def goodput(self) -> float:
        return self.orders / self.seconds

    @property
    def orders_per_cpu_s(self) -> float:
        """Orders per second of server CPU: what overload costs in wasted work, whatever
        share of a core the (shared) machine gave the server in this row. The CPU is all
        the server spent from the window's start until the last call in flight answered."""
        cpu_s = self.server_cpu_ms_per_call * server_calls(self.outcomes) / 1000
        return self.orders / max(cpu_s, 1e-9)


# The server's own view of a call (engine.api.admission): the wait before the door and the
# time from the door to the handler's answer. The client's latency minus these two is the
# response path and the load process's own loop.
SERVER_HISTOGRAMS = ("lotwise_admission_wire_wait_seconds", "lotwise_admission_admitted_seconds")
Buckets = dict[str, list[tuple[float, float]]]  # histogram -> [(upper bound s, cumulative count)]


def scrape(metrics_port: int) -> Buckets:
    """The server's histograms now (cumulative since it started)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    out: Buckets = {name: [] for name in SERVER_HISTOGRAMS}
    for family in text_string_to_metric_families(text):
        if family.name in out:
            buckets = [(float(x.labels["le"]), x.value) for x in family.samples if x.name.endswith("_bucket")]
            out[family.name] = sorted(buckets)
    return out


def histogram_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """The q-quantile (ms) of what a histogram observed between two scrapes, interpolated
    linearly inside its bucket as Prometheus does; 0 when nothing was observed."""
    counts = dict(before)
    diff = [(le, n - counts.get(le, 0.0)) for le, n in after]
    total = diff[-1][1] if diff else 0.0
    if total <= 0:
        return 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for le, cumulative in diff:
        if cumulative >= rank:
            if le == float("inf"):
                return lower * 1000  # beyond the largest bound: say the largest bound
            inside = cumulative - below
            return 1000 * (lower + (le - lower) * ((rank - below) / inside if inside else 1.0))
        lower, below = le, cumulative
    return lower * 1000


def server_calls(outcomes: dict[str, int]) -> int:
    """Calls the server answered: all but those the client's throttle never sent (≥ 1)."""
    return max(sum(outcomes.values()) - outcomes.get("throttled", 0), 1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True, slots=True)
class Harness:
    """How the load is generated: which client, how many processes, which CPUs."""

    client: str  # "lean" (bench/lean_load.py) or "lotwise" (LotwiseClient)
    procs: int
    batch: int  # commands per Execute of the lean batched mode
    server_cpus: str  # "" when not pinned
    load_cpus: str
    door_max_cost: int = 0  # 0: the door's default bounds
    before_tolerance: float = 0.0  # > 0: --compare's "before" callers keep a GradientLimit of it, not the AIMD


def run_level(
    target: str, served: Served, batched: bool, level: float, saturation: int, seconds: float, h: Harness, door: str
) -> Row:
    callers = max(1, round(saturation * level))
    per_proc = [callers // h.procs + (1 if p < callers % h.procs else 0) for p in range(h.procs)]
    start_at = time.time() + 4.0  # the workers import and connect meanwhile
    server = psutil.Process(served.pid)
    rss0 = server.memory_info().rss
    workers = [
        worker(target, n, sum(per_proc[:p]), batched, start_at, seconds, h, door) for p, n in enumerate(per_proc) if n
    ]
    time.sleep(max(start_at - time.time(), 0.0))
    cpu0, t0, hist0 = server.cpu_times(), time.monotonic(), scrape(served.metrics_port)
    tallies = [Tally(**json.loads(w.communicate(timeout=seconds + 120)[0])) for w in workers]
    rss1, cpu1, t1 = server.memory_info().rss, server.cpu_times(), time.monotonic()
    hist1 = scrape(served.metrics_port)
    wire, admitted = SERVER_HISTOGRAMS
    server_cpu_s = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    latencies = [ms for t in tallies for ms in t.latencies_ms]
    first = [ms for t in tallies for ms in t.first_latencies_ms]
    outcomes = {k: sum(t.outcomes[k] for t in tallies) for k in OUTCOMES}
    calls = server_calls(outcomes)
    return Row(
        "batched" if batched else "unary",
        level,
        callers,
        seconds,
        sum(t.orders for t in tallies),
        outcomes,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        sum(t.throttled_retries for t in tallies),
        (rss1 - rss0) / 2**20,
        server_cpu_s / max(t1 - t0, 0.1),
        1000 * server_cpu_s / calls,
        1000 * sum(t.cpu_s for t in tallies) / calls,
        door=door,
        p99_first_ms=percentile(first, 0.99),
        server_wire_p99_ms=histogram_quantile(hist0[wire], hist1[wire], 0.99),
        server_admitted_p99_ms=histogram_quantile(hist0[admitted], hist1[admitted], 0.99),
        client_lag_p99_ms=percentile([ms for t in tallies for ms in t.loop_lag_ms], 0.99),
    )


def worker(
    target: str, callers: int, offset: int, batched: bool, start_at: float, seconds: float, h: Harness, door: str
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "bench.overload", "--worker", target, "--callers", str(callers)]
    args += ["--start-at", str(start_at), "--seconds", str(seconds), "--offset", str(offset)]
    args += ["--client", h.client, "--batch", str(h.batch), *(["--batched"] if batched else [])]
    args += ["--cpus", h.load_cpus] if h.load_cpus else []
    args += ["--door", door, "--before-tolerance", str(h.before_tolerance)]
    return subprocess.Popen(args, stdout=subprocess.PIPE)


async def stock(target: str) -> None:
    async with LotwiseClient(target, timeout_s=30) as client:
        await client.put_site(Site("bench-site"))
        await asyncio.gather(*(client.put_sku(Sku(f"sku-{i}")) for i in range(SKUS)))
        await asyncio.gather(
            *(client.receive(f"sku-{i}", "bench-site", "L1", STOCK_PER_SKU, status="available") for i in range(SKUS))
        )


async def books_exact(target: str) -> bool:
    async with LotwiseClient(target, timeout_s=120) as client:
        ok, _checks = await client.verify()
        return ok


def with_shares(rows: list[Row]) -> list[Row]:
    base = {(r.mode, r.door): r.goodput for r in rows if r.level == 1.0}
    out = []
    for r in rows:
        share = r.goodput / base[r.mode, r.door] if base.get((r.mode, r.door)) else 0.0
        out.append(Row(**{**asdict(r), "goodput_share": share}))
    return out


def format_row(r: Row) -> str:
    o = r.outcomes
    return (
        f"| {r.mode:<7} | {r.door:<6} | {r.level:>4g}× | {r.callers:>5} | {r.goodput:>7,.0f} | "
        f"{r.goodput_share:>5.0%} | "
        f"{r.p50_ms:>7,.0f} | {r.p99_ms:>7,.0f} | {r.p99_first_ms:>7,.0f} | "
        f"{o['ok']:>7,} | {o['shed']:>7,} | {o.get('throttled', 0):>7,} | {o['deadline']:>6,} | "
        f"{o['cancelled_unknown']:>3} | {o['other']:>3} | {r.throttled_retries:>6,} | "
        f"{r.rss_growth_mib:>+6.0f} | {r.server_cpu:>4.2f} | {r.server_cpu_ms_per_call:>5.2f} | "
        f"{r.client_cpu_ms_per_call:>5.2f} | {r.orders_per_cpu_s:>6,.0f} | "
        f"{r.server_wire_p99_ms:>6,.0f} | {r.server_admitted_p99_ms:>6,.0f} | {r.client_lag_p99_ms:>6,.0f} |"
    )


HEADER = (
    "| mode | door | load | callers | orders/s | of 1× | p50 ms | p99 ms | p99 1st try ms | ok calls | shed "
    "| throttled | deadline "
    "| cancelled/unknown | other | retries throttled | server RSS MiB | server cores "
    "| server ms CPU/call | client ms CPU/call | orders per server CPU-s "
    "| server wire p99 ms | server admitted p99 ms | client loop lag p99 ms |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right, first) = plt.subplots(1, 4, figsize=(21, 4))
    for mode, door in sorted({(r.mode, r.door) for r in rows}):
        mine = sorted((r for r in rows if (r.mode, r.door) == (mode, door)), key=lambda r: r.level)
        levels = [r.level for r in mine]
        label = f"{mode} ({door})"
        style = "--" if door == DOOR_BEFORE else "-"
        left.plot(levels, [r.goodput_share * 100 for r in mine], style, marker="o", label=label)
        base = next((r.orders_per_cpu_s for r in mine if r.level == 1.0), 0.0)
        per_cpu = [100 * r.orders_per_cpu_s / base if base else 0.0 for r in mine]
        middle.plot(levels, per_cpu, style, marker="o", label=label)
        right.plot(levels, [r.p99_ms for r in mine], style, marker="o", label=label)
        first.plot(levels, [r.p99_first_ms for r in mine], style, marker="o", label=label)
    x = "offered load (× saturation callers)"
    for ax in (left, middle):
        ax.axhline(90, color="grey", linestyle="--", linewidth=0.8, label="target at 8× (90%)")
    left.set(xscale="log", xlabel=x, ylabel="goodput, % of 1×", title="Goodput")
    middle.set(xscale="log", xlabel=x, ylabel="% of 1×", title="Orders per server CPU-second")
    right.set(xscale="log", xlabel=x, ylabel="ms", title="p99 of successful calls (retries included)")
    first.set(xscale="log", xlabel=x, ylabel="ms", title="p99 of calls that succeeded at their first try")
    levels = sorted({r.level for r in rows})
    for ax in (left, middle, right, first):
        ax.set_xticks(levels, [f"{level:g}×" for level in levels])
        ax.minorticks_off()
        ax.legend()
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(path: Path) -> None:
    """Print the table of a run's overload.json again and redraw its plot next to it."""
    run = json.loads(path.read_text())
    rows = [Row(**r) for r in run["rows"]]
    print(HEADER)
    for row in rows:
        print(format_row(row))
    print(f"\nbooks exact afterwards (verify): {run['books_exact']}; harness {run.get('harness')}")
    print(f"load average {run.get('loadavg')}")
    plot(rows, path.with_suffix(".png"))


def pin(pid: int, cpus: str) -> None:
    if cpus:
        os.sched_setaffinity(pid, {int(c) for c in cpus.split(",")})


def drive(args: argparse.Namespace) -> None:
    if args.compare and args.client != "lean":
        sys.exit("--compare needs --client lean (LotwiseClient always throttles and backs off)")
    levels = [float(x) for x in args.levels.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    out_dir = args.out or Path("bench/results") / datetime.date.today().isoformat() / "overload"
    out_dir.mkdir(parents=True, exist_ok=True)
    harness = Harness(
        args.client, args.procs, args.batch, args.server_cpus, args.load_cpus, args.door_max_cost, args.before_tolerance
    )
    saturation = {"unary": args.saturation, "batched": args.saturation_batched or args.saturation}
    rows: list[Row] = []
    load_before = os.getloadavg()
    doors = [DOOR_BEFORE, DOOR_AFTER] if args.compare else [DOOR_AFTER]
    with contextlib.ExitStack() as stack:
        servers = {}
        for door in doors:
            # Both doors are the same server code (the callers differ): one process each all the same,
            # so that neither row inherits the other's queue.
            served = stack.enter_context(served_process(args.door_max_cost, None))
            pin(served.pid, harness.server_cpus)  # the servers on their own CPU, the load on the other(s)
            asyncio.run(stock(f"127.0.0.1:{served.port}"))
            servers[door] = served
        print(HEADER, flush=True)
        for mode in modes:
            for level in levels:
                for door in doors:  # interleaved: both see the same minutes of the shared machine
                    served = servers[door]
                    target = f"127.0.0.1:{served.port}"
                    row = run_level(
                        target, served, mode == "batched", level, saturation[mode], args.seconds, harness, door
                    )
                    rows.append(row)
                    print(format_row(row), flush=True)
        exact = all([asyncio.run(books_exact(f"127.0.0.1:{s.port}")) for s in servers.values()])
    rows = with_shares(rows)
    print("\n" + HEADER)
    for row in rows:
        print(format_row(row))
    loadavg = {"before": load_before, "after": os.getloadavg()}
    print(f"\nbooks exact afterwards (verify): {exact}; harness {asdict(harness)}; load average {loadavg}")
    report = {"books_exact": exact, "harness": asdict(harness), "loadavg": loadavg, "rows": [asdict(r) for r in rows]}
    (out_dir / "overload.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, out_dir / "overload.png")
    print(f"wrote {out_dir / 'overload.json'} and {out_dir / 'overload.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saturation", type=int, default=64, help="callers at 1× (where orders/s stops growing)")
    parser.add_argument("--levels", default="0.5,1,2,4,8,10", help="offered load, in multiples of --saturation")
    parser.add_argument("--modes", default="unary,batched", help="unary, batched or both")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per row")
    parser.add_argument("--saturation-batched", type=int, default=0, help="batched callers at 1× (default: as unary)")
    parser.add_argument("--procs", type=int, default=2, help="load-generating processes")
    parser.add_argument("--client", choices=("lean", "lotwise"), default="lean", help="raw gRPC or LotwiseClient")
    parser.add_argument("--batch", type=int, default=8, help="orders per Execute of a lean batched caller")
    parser.add_argument("--server-cpus", default="0", help="CPUs the server is pinned to ('' = not pinned)")
    parser.add_argument("--load-cpus", default="1", help="CPUs the load processes are pinned to ('' = not pinned)")
    parser.add_argument("--door-max-cost", type=int, default=0, help="the door's cost bound (0: its default)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run every row twice: callers with the AIMD ConcurrencyLimit and with a GradientLimit",
    )
    parser.add_argument(
        "--before-tolerance",
        type=float,
        default=0.0,
        help="with --compare: the 'before' callers keep a GradientLimit of this tolerance instead of the AIMD"
        " limit (0: AIMD), e.g. 2.0 against the default's",
    )
    parser.add_argument("--cpus", default="", help=argparse.SUPPRESS)
    parser.add_argument("--door", default=DOOR_AFTER, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help="print and plot an earlier run's overload.json, run nothing")
    parser.add_argument("--out", type=Path, help="where to write overload.json and overload.png")
    # internal: be one load-generating worker
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--callers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.before_tolerance != 0 and args.before_tolerance < 1:
        parser.error("--before-tolerance: 0 (the AIMD limit) or a GradientLimit tolerance ≥ 1")
    if args.report is not None:
        report(args.report)
    elif args.worker is not None:
        args.target = args.worker
        worker_main(args)
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        drive(args)


if __name__ == "__main__":
    main()
