"""The core benchmark: orders (Reserve → Commit) over real gRPC, next to their two ceilings.

    scripts/in-netns .venv/bin/python -m bench.core --concurrency 1,16,64 --duration-s 10 --rounds 3

One process (this one) runs the engine embedded — `running_engine` with a local Ray, the
shard actors, the gateway and the gRPC server — and a second process (bench.loadgen)
drives it through `LotwiseClient`. For every round and concurrency it measures, in turn:

- lotwise:    N closed-loop workers, each Reserve (1–3 lines, FEFO) → Commit; an order's
              latency is both calls, timed with perf_counter_ns;
- grpc_empty: the same N workers calling grpc.health.v1.Health/Check on the same server
              (the cost of one gRPC round trip through this Python server, nothing else);
- ray_empty:  N concurrent `await shard.ping.remote()` from this process (the cost of one
              Ray actor call, nothing else; N = 1 is sequential).

Over each window it samples the CPU of the load generator (resource.getrusage in that
process), of this engine process, of the shard actors and of Ray's other processes
(psutil), and the shards' batch counters. Results: JSON + markdown + PNG plots under
--out; every latency sample, gzipped, under the git-ignored raw directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from bench import loadgen, pyspy, report
from bench.loadgen import HealthJob, JobResult, OrderJob, Window, error_key
from bench.stats import Kind, WindowResult, aggregate_rounds, summarize_latencies_ns, window_from_json

MAX_CONCURRENCY = 1024  # the server's in-flight bound is 2048; one order holds one call at a time
MAX_DURATION_S = 300.0
MAX_ROUNDS = 20
MAX_PAIRS = 100_000  # QueryStock's largest limit: the end-of-run stock check reads every pair at once
PIPE_SLACK_S = 60.0  # beyond a window's own length, how long to wait for the load generator
LOT_EXPIRY_DAYS = (200, 400)  # two lots per pair, so FEFO has a choice to make
MS_PER_DAY = 86_400_000

_T = TypeVar("_T")


# ---- CLI ----


def _concurrency_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected integers like 1,16,64, got {text!r}") from exc
    if not values or any(not 1 <= v <= MAX_CONCURRENCY for v in values):
        raise argparse.ArgumentTypeError(f"each concurrency must be in 1..{MAX_CONCURRENCY}")
    return sorted(set(values))


def _bounded_float(lo: float, hi: float) -> Any:
    def parse(text: str) -> float:
        value = float(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}")
        return value

    return parse


# Every journal follower `lotwise up` runs (settings names); `--followers` picks among them.
FOLLOWERS = ("history", "events", "ingest", "finance", "replenish", "health")


def _bounded_int(lo: int, hi: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    p = argparse.ArgumentParser(
        prog="python -m bench.core",
        description=(
            "Lotwise core benchmark: Reserve → Commit orders over real gRPC against an embedded engine, "
            "next to the empty-gRPC and empty-Ray-call ceilings. Starts Ray: run it inside "
            "scripts/in-netns."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--concurrency", type=_concurrency_list, default="1,16,64", help="comma-separated worker counts")
    p.add_argument("--duration-s", type=_bounded_float(0.5, MAX_DURATION_S), default=10.0, help="measured window")
    p.add_argument(
        "--ceiling-duration-s",
        type=_bounded_float(0.5, MAX_DURATION_S),
        default=None,
        help="measured window of the empty-call ceilings; unset: the same as --duration-s",
    )
    p.add_argument("--warmup-s", type=_bounded_float(0.0, 60.0), default=1.0, help="unmeasured lead-in of each window")
    p.add_argument(
        "--idle-s",
        type=_bounded_float(0.0, 60.0),
        default=5.0,
        help="seconds of no load first, to measure each process group's idle CPU (0 skips it)",
    )
    p.add_argument("--rounds", type=_bounded_int(1, MAX_ROUNDS), default=3, help="repeats; tables show medians")
    p.add_argument("--shards", type=_bounded_int(1, 64), default=2, help="shard actors")
    p.add_argument(
        "--journal",
        choices=("nats", "memory"),
        default="nats",
        help="the engine's journal: the durable embedded JetStream (the default engine) or in-memory",
    )
    p.add_argument("--skus", type=_bounded_int(1, 100_000), default=200, help="skus in the seeded catalog")
    p.add_argument("--sites", type=_bounded_int(1, 1_000), default=5, help="sites in the seeded catalog")
    p.add_argument("--max-lines", type=_bounded_int(1, 16), default=3, help="an order has 1..max-lines lines")
    p.add_argument("--seed", type=int, default=7, help="random seed of the order mix")
    p.add_argument(
        "--followers",
        type=_followers_arg,
        default="on",
        help="the journal followers to run: on (all, as `lotwise up` runs them), off (none), "
        f"or a comma-separated list of {', '.join(FOLLOWERS)} (the others off)",
    )
    p.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="py-spy every engine and shard process during the orders windows (bench.pyspy reads the files)",
    )
    p.add_argument(
        "--profile-concurrency",
        type=_concurrency_list,
        default="16,64",
        help="with --profile-dir: the concurrency levels whose orders windows are profiled",
    )
    p.add_argument(
        "--out", type=Path, default=Path("bench/results") / today / "core", help="where JSON, markdown and PNGs go"
    )
    p.add_argument(
        "--rerender",
        type=Path,
        default=None,
        metavar="CORE_JSON",
        help="only rebuild core.md and the plots from a finished run's core.json (starts nothing)",
    )
    p.add_argument(
        "--raw-dir",
        type=Path,
        default=None,
        help="where every latency sample goes; unset: <out>/../raw/<out name> (git-ignored)",
    )
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.ceiling_duration_s is None:
        args.ceiling_duration_s = args.duration_s
    if args.skus * args.sites > MAX_PAIRS:
        p.error(f"--skus × --sites must be at most {MAX_PAIRS:,} (the end-of-run stock check reads every pair)")
    if args.raw_dir is None:
        args.raw_dir = args.out.parent / "raw" / args.out.name
    return args


# ---- CPU accounting ----


@dataclass(slots=True)
class CpuSnapshot:
    engine_s: float  # this process: gRPC server + gateway + micro-batchers + Ray driver
    machine_busy_s: float  # every CPU of the machine, non-idle time (other users' processes too)
    by_pid: dict[int, tuple[str, float]] = field(default_factory=dict)  # child pid → (group, cpu seconds)


class CpuSampler:
    """CPU seconds of this process and of every process below it, grouped.

    Ray's processes (gcs_server, raylet, workers) are descendants of the driver when it
    starts a local Ray. A shard actor's process title names its class (`ray::ShardActor`).
    """

    def __init__(self, loadgen_pid: int) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._loadgen_pid = loadgen_pid
        self._groups: dict[int, str] = {}

    def _group(self, proc: Any) -> str:
        group = self._groups.get(proc.pid)
        if group is None:
            if proc.pid == self._loadgen_pid:
                group = "loadgen"
            else:
                try:
                    cmdline = " ".join(proc.cmdline())
                except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                    cmdline = ""
                if "ray::Shard" in cmdline:  # ShardActor (a ShardHost in its own process)
                    group = "ray_shards"
                elif "nats-server" in cmdline:
                    group = "nats"  # the embedded journal
                else:
                    group = "ray_other"
                if not cmdline.strip() or "ray::IDLE" in cmdline:
                    # Not known yet: a starting worker, or one of Ray's idle workers that may
                    # become a shard's standby (whose CPU would then count as "other").
                    return group
            self._groups[proc.pid] = group
        return group

    def sample(self) -> CpuSnapshot:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        machine = self._psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0) - getattr(machine, "guest", 0.0)
        busy -= getattr(machine, "guest_nice", 0.0)  # guest time is already counted in user / nice
        snap = CpuSnapshot(usage.ru_utime + usage.ru_stime, busy)
        for proc in self._me.children(recursive=True):
            try:
                t = proc.cpu_times()
                snap.by_pid[proc.pid] = (self._group(proc), t.user + t.system)
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                continue
        return snap

    def shard_pids(self) -> list[int]:
        return sorted(pid for pid, g in self._groups.items() if g == "ray_shards")


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds spent between two snapshots, by group (a process born in between counts fully)."""
    out = {"engine": after.engine_s - before.engine_s, "loadgen": 0.0, "ray_shards": 0.0, "nats": 0.0, "ray_other": 0.0}
    for pid, (group, cpu_s) in after.by_pid.items():
        prior = before.by_pid.get(pid)
        out[group] = out.get(group, 0.0) + cpu_s - (prior[1] if prior else 0.0)
    out["machine_busy"] = after.machine_busy_s - before.machine_busy_s
    return out


def foreign_cpu_s(cpu: dict[str, float]) -> float:
    """Busy CPU of the machine not spent by the bench's own processes (other users' load)."""
    own = sum(v for k, v in cpu.items() if k != "machine_busy")
    return max(cpu.get("machine_busy", 0.0) - own, 0.0)


# ---- the run ----


@dataclass(slots=True)
class Run:
    args: argparse.Namespace
    conn: Connection
    sampler: CpuSampler
    engine: Any  # engine.bootstrap.RunningEngine
    pairs: tuple[tuple[str, str], ...]
    seeded_qty: int
    windows: list[WindowResult] = field(default_factory=list)
    raw: list[tuple[WindowResult, list[int]]] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    committed_qty_replies: int = 0  # every successful Commit of the run, warm-ups included
    problems: list[str] = field(default_factory=list)
    idle_cpus: dict[str, float] = field(default_factory=dict)  # CPUs each group uses with no load at all


async def _recv(conn: Connection, timeout_s: float) -> tuple[Any, ...]:
    def wait() -> tuple[Any, ...]:
        if not conn.poll(timeout_s):
            raise TimeoutError(f"the load generator said nothing for {timeout_s:.0f} s")
        return conn.recv()

    return await asyncio.to_thread(wait)


def shard_handles(gateway: Any) -> dict[str, Any]:
    """The gateway's Ray actor handles of its shards, by name."""
    handles: dict[str, Any] = getattr(gateway, "handles", None) or getattr(gateway, "actors", {})
    if not handles:
        raise RuntimeError("the gateway exposes no shard handles (Gateway.handles)")
    return handles


async def shard_counters(run: Run) -> dict[str, float]:
    """Batches and ops the shards have applied so far (their own counters)."""
    actors = shard_handles(run.engine.gateway)
    stats = await asyncio.gather(*(a.stats.remote() for a in actors.values()))
    return {"shard_batches": float(sum(s["batches"] for s in stats)), "shard_ops": float(sum(s["ops"] for s in stats))}


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a.get(k, 0.0) for k in b}


async def run_loadgen_job(run: Run, kind: Kind, job: OrderJob | HealthJob, round_: int) -> WindowResult:
    run.conn.send(job)
    slack = job.warmup_s + PIPE_SLACK_S
    msg = await _recv(run.conn, slack)
    if msg[0] == "failed":
        raise RuntimeError(f"load generator failed before its window: {msg[1]}")
    if msg[0] != "start":
        raise RuntimeError(f"unexpected message from the load generator: {msg[0]}")
    cpu0, counters0 = run.sampler.sample(), await shard_counters(run)
    profiling = _start_profiling(run, kind, job, round_)
    msg = await _recv(run.conn, job.duration_s + PIPE_SLACK_S)
    if msg[0] != "end":
        raise RuntimeError(f"unexpected message from the load generator: {msg[0]}")
    cpu1, counters1 = run.sampler.sample(), await shard_counters(run)
    if profiling is not None:
        await profiling
    msg = await _recv(run.conn, 2 * loadgen.CALL_TIMEOUT_S + PIPE_SLACK_S)
    if msg[0] == "failed":
        raise RuntimeError(f"load generator failed: {msg[1]}")
    result: JobResult = msg[1]
    cpu = cpu_delta(cpu0, cpu1)
    cpu["loadgen"] = result.cpu_s  # its own getrusage: all of its threads, same window
    run.committed_qty_replies += result.qty_committed_all
    run.error_samples.extend(f"{kind} c={job.concurrency} r={round_}: {s}" for s in result.error_samples)
    if result.abandoned_workers:
        run.problems.append(
            f"{kind} c={job.concurrency} r={round_}: {result.abandoned_workers} workers were still in a call "
            f"{2 * loadgen.CALL_TIMEOUT_S + 5:.0f} s after the window closed"
        )
    return _window(kind, job.concurrency, round_, result, cpu, _delta(counters0, counters1), run)


def _start_profiling(run: Run, kind: Kind, job: OrderJob | HealthJob, round_: int) -> asyncio.Task[Any] | None:
    """py-spy on the engine process and every shard actor over this window, if asked for."""
    args = run.args
    if args.profile_dir is None or kind != "lotwise" or job.concurrency not in args.profile_concurrency:
        return None
    pids = {"engine": os.getpid(), **{f"shard{i}": pid for i, pid in enumerate(run.sampler.shard_pids())}}
    tag = f"r{round_}-c{job.concurrency}-followers-{args.followers}"
    return asyncio.create_task(pyspy.record(pids, job.duration_s, args.profile_dir, tag))


def _window(
    kind: Kind,
    concurrency: int,
    round_: int,
    result: JobResult,
    cpu: dict[str, float],
    extra: dict[str, float],
    run: Run,
) -> WindowResult:
    cpu = dict(cpu)
    for name, samples in (("reserve", result.reserve_ns), ("commit", result.commit_ns)):
        if samples:
            part = summarize_latencies_ns(samples)
            extra = {**extra, f"{name}_p50_ms": part.p50_ms or 0.0, f"{name}_p99_ms": part.p99_ms or 0.0}
    if "machine_busy" in cpu:
        foreign = foreign_cpu_s(cpu)
        extra = {**extra, "machine_busy_cpu_s": cpu.pop("machine_busy"), "foreign_cpu_s": foreign}
    w = WindowResult(
        kind=kind,
        concurrency=concurrency,
        round=round_,
        duration_s=result.window_s,
        ops=result.ops,
        lines=result.lines,
        errors=dict(result.errors),
        latency=summarize_latencies_ns(result.latencies_ns),
        cpu_s=cpu,
        extra=extra,
    )
    run.windows.append(w)
    run.raw.append((w, result.latencies_ns))
    return w


async def run_ray_ping(run: Run, concurrency: int, round_: int) -> WindowResult:
    """N concurrent empty actor calls on the first shard, from this (the driver) process."""
    args = run.args
    actors = shard_handles(run.engine.gateway)
    actor = actors[sorted(actors)[0]]
    result = JobResult()
    window = Window(args.warmup_s, args.ceiling_duration_s)

    async def loop() -> None:
        while window.open(time.perf_counter_ns()):
            started = time.perf_counter_ns()
            try:
                await asyncio.wait_for(actor.ping.remote(), loadgen.CALL_TIMEOUT_S)
            except Exception as exc:
                ended = time.perf_counter_ns()
                if window.counts(started, ended):
                    result.error(error_key(exc), str(exc))
                await asyncio.sleep(loadgen.ERROR_PAUSE_S)
                continue
            ended = time.perf_counter_ns()
            if window.counts(started, ended):
                result.ops += 1
                result.latencies_ns.append(ended - started)

    tasks = [asyncio.create_task(loop()) for _ in range(concurrency)]
    await asyncio.sleep(max(window.t0_ns - time.perf_counter_ns(), 0) / 1e9)
    cpu0 = run.sampler.sample()
    await asyncio.sleep(max(window.t1_ns - time.perf_counter_ns(), 0) / 1e9)
    cpu1 = run.sampler.sample()
    result.window_s = (window.t1_ns - window.t0_ns) / 1e9
    _done, pending = await asyncio.wait(tasks, timeout=loadgen.CALL_TIMEOUT_S + 5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if pending:
        run.problems.append(f"ray_empty c={concurrency} r={round_}: {len(pending)} pings never returned")
    run.error_samples.extend(f"ray_empty c={concurrency} r={round_}: {s}" for s in result.error_samples)
    return _window("ray_empty", concurrency, round_, result, cpu_delta(cpu0, cpu1), {}, run)


async def standbys_following(gateway: Any, wanted: bool, limit_s: float = 60.0) -> str:
    """Wait until every shard's warm standby follows its journal (bounded); say how long it took."""
    started = time.perf_counter()
    while wanted:
        stats = await gateway.shard_stats()
        if all(s.get("standby") == "standby" for s in stats):
            return f"standbys following after {time.perf_counter() - started:.1f} s"
        if time.perf_counter() - started > limit_s:
            return f"standbys not all following after {limit_s:.0f} s: {[s.get('standby') for s in stats]}"
        await asyncio.sleep(0.1)
    return "no standbys"


async def measure_idle(run: Run, idle_s: float) -> dict[str, float]:
    """CPU each process group burns with no load at all (background loops, Ray's daemons)."""
    if idle_s <= 0:
        return {}
    before = run.sampler.sample()
    started = time.perf_counter()
    await asyncio.sleep(idle_s)
    after = run.sampler.sample()
    elapsed_s = time.perf_counter() - started
    cpu = cpu_delta(before, after)
    cpu["foreign"] = foreign_cpu_s(cpu)
    return {k: v / elapsed_s for k, v in cpu.items()}


async def seed_catalog(gateway: Any, skus: int, sites: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """Skus × sites with two lots each, deep enough that no order of the run is refused.

    Seeded through the gateway in this process (it is set-up, not the thing measured).
    """
    from engine.domain.catalog import Site, Sku
    from engine.domain.commands import Receive

    sku_ids = [f"SKU-{i:05d}" for i in range(skus)]
    site_ids = [f"SITE-{j:03d}" for j in range(sites)]
    for sku_chunk in _chunks(sku_ids, 256):
        await asyncio.gather(*(gateway.put_sku(Sku(s, name=f"bench {s}")) for s in sku_chunk))
    for s in site_ids:
        await gateway.put_site(Site(s, org_path="bench/region", kind="store"))
    pairs = tuple((sku, site) for sku in sku_ids for site in site_ids)
    now_ms = int(time.time() * 1000)
    qty_per_lot = 1_000_000  # ≫ what any pair loses in a run (a few thousand units at most)
    receives = [
        Receive(
            f"seed-{sku}-{site}-{n}",
            sku,
            site,
            f"LOT-{n}",
            qty_per_lot,
            status="available",
            expires_at_ms=now_ms + days * MS_PER_DAY,
        )
        for sku, site in pairs
        for n, days in enumerate(LOT_EXPIRY_DAYS)
    ]
    for receive_chunk in _chunks(receives, 512):
        await asyncio.gather(*(gateway.execute(r) for r in receive_chunk))
    return pairs, qty_per_lot * len(receives)


def _chunks(items: Sequence[_T], n: int) -> list[Sequence[_T]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


async def stock_totals(gateway: Any) -> tuple[int, int]:
    """(qty, held) summed over every pair, as the engine reports them."""
    from engine.domain.inventory import StockQuery

    # QueryStock's limit caps each shard's scanned rows *before* they are merged, so it must
    # cover every pair or the totals come out short (pairs ≤ MAX_PAIRS is checked at start).
    rows = await gateway.query_stock(StockQuery(by_sku=False, by_site=False, limit=MAX_PAIRS))
    return sum(r.row.qty for r in rows), sum(r.row.held for r in rows)


def _log(text: str) -> None:
    print(f"[bench.core {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


CATCH_UP_TIMEOUT_S = 300.0


def journal_followers(engine: Any) -> dict[str, Any]:
    """The running engine's journal followers (each has `wait_caught_up`), by FOLLOWERS name."""
    health = getattr(engine.health, "follower", None)
    found = {
        "history": engine.history.sink if engine.history else None,
        "events": engine.bus.publisher if engine.bus else None,
        "finance": engine.finance.follower if engine.finance else None,
        "replenish": engine.replenish.follower if engine.replenish else None,
        "health": getattr(health, "follower", None),
    }
    return {name: f for name, f in found.items() if f is not None}


async def followers_catch_up(engine: Any) -> dict[str, float]:
    """Seconds from now until each follower has applied the whole journal so far, and the
    journal messages each was behind when asked (`catch_up_s.<name>`, `behind.<name>`)."""
    started = time.perf_counter()

    async def one(name: str, follower: Any) -> dict[str, float]:
        behind = (await follower.lag()).pending_messages
        await follower.wait_caught_up(timeout_s=CATCH_UP_TIMEOUT_S, poll_s=0.05)
        return {f"catch_up_s.{name}": time.perf_counter() - started, f"behind.{name}": float(behind)}

    out: dict[str, float] = {}
    for part in await asyncio.gather(*(one(n, f) for n, f in journal_followers(engine).items())):
        out.update(part)
    return out


def _describe_catch_up(extra: dict[str, float]) -> str:
    parts = [
        f"{key.split('.', 1)[1]} {value:.2f} s ({extra.get('behind.' + key.split('.', 1)[1], 0):.0f} behind)"
        for key, value in sorted(extra.items())
        if key.startswith("catch_up_s.")
    ]
    return "followers caught up: " + (", ".join(parts) if parts else "none running")


def _describe(w: WindowResult) -> str:
    lat = w.latency
    p = f"p50 {lat.p50_ms:.2f} ms, p99 {lat.p99_ms:.2f} ms" if lat.p50_ms is not None and lat.p99_ms else "no samples"
    errors = f", errors {w.errors}" if w.errors else ""
    return f"{w.kind:<10} c={w.concurrency:<4} round {w.round}: {w.ops_per_s:,.0f}/s, {p}{errors}"


def followers_settings(followers: tuple[str, ...]) -> dict[str, bool]:
    """The settings that switch the named journal followers on and every other one off.
    `on` (all of FOLLOWERS, as `lotwise up` runs them) against `off` (none) is the 15 % rule;
    a single name shows what that follower costs."""
    return {name: name in followers for name in FOLLOWERS}


def _followers(text: str) -> tuple[str, ...]:
    """`on`, `off`, or a comma-separated list of FOLLOWERS."""
    if text in ("on", "off"):
        return FOLLOWERS if text == "on" else ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(FOLLOWERS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"on, off or a list of {', '.join(FOLLOWERS)} (not {', '.join(unknown)})")
    return names


def _followers_arg(text: str) -> str:
    """--followers: checked here, kept as typed (it names the results and the profiles)."""
    _followers(text)
    return text


async def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from engine.bootstrap import running_engine, shutdown_ray
    from engine.logs import configure_logging
    from engine.settings import Settings

    # Per-RPC access logs are info-level; at thousands of calls per second they would be
    # a large share of the work and flood the terminal, so the bench logs warnings only.
    configure_logging("warning")
    # With no address, ray.init() joins the cluster named in /tmp/ray/ray_current_cluster
    # if one was recorded there (by `ray start` or ray.cluster_utils in another session,
    # possibly in another network namespace, where it cannot be reached: ray.init then
    # retries for minutes). The bench always wants its own embedded Ray.
    os.environ["RAY_ADDRESS"] = "local"
    # A fresh data directory per run: the journal starts empty and nothing of a user's .data is touched.
    data_dir = Path(tempfile.mkdtemp(prefix="lotwise-bench-"))
    settings = Settings(
        port=0,
        metrics_port=0,
        nats_port=0,
        shards=args.shards,
        journal=args.journal,
        data_dir=data_dir,
        log_level="warning",
    ).model_copy(update=followers_settings(_followers(args.followers)))
    started_at = dt.datetime.now(dt.UTC)

    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs gRPC or Ray threads
    parent_conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=loadgen.serve, args=(child_conn,), name="lotwise-bench-loadgen", daemon=True)
    child.start()
    child_conn.close()
    assert child.pid is not None
    try:
        async with running_engine(settings) as engine:
            _log(f"engine up at {engine.grpc_address} with {args.shards} shards; seeding the catalog")
            seed_started = time.perf_counter()
            pairs, seeded_qty = await seed_catalog(engine.gateway, args.skus, args.sites)
            _log(
                f"seeded {len(pairs)} pairs × {len(LOT_EXPIRY_DAYS)} lots in {time.perf_counter() - seed_started:.1f} s"
            )
            run = Run(args, parent_conn, CpuSampler(child.pid), engine, pairs, seeded_qty)
            # The seeding's journal entries are the followers' backlog: applied before any window.
            _log(_describe_catch_up(await followers_catch_up(engine)))
            # The standbys start after the gateway serves and replay the seeding's entries:
            # that is start-up, not the idle burn this window means to measure.
            _log(await standbys_following(engine.gateway, engine.settings.standby))
            run.sampler.sample()  # learn the process groups before the first window
            run.idle_cpus = await measure_idle(run, args.idle_s)
            _log("idle CPU use (CPUs): " + ", ".join(f"{k} {v:.3f}" for k, v in run.idle_cpus.items()))
            for round_ in range(1, args.rounds + 1):
                for c in args.concurrency:
                    order_job = OrderJob(
                        engine.grpc_address,
                        c,
                        args.duration_s,
                        args.warmup_s,
                        pairs,
                        tag=f"r{round_}c{c}",
                        seed=args.seed * 1_000_003 + round_ * 1_009 + c,
                        max_lines=args.max_lines,
                        token_file=str(engine.token_file) if engine.token_file else None,
                    )
                    orders = await run_loadgen_job(run, "lotwise", order_job, round_)
                    _log(_describe(orders))
                    # How far the followers fell behind: the window's work is not done until
                    # they have applied it (a cost deferred without bound would not be a saving).
                    orders.extra.update(await followers_catch_up(engine))
                    _log(_describe_catch_up(orders.extra))
                    health_job = HealthJob(engine.grpc_address, c, args.ceiling_duration_s, args.warmup_s)
                    _log(_describe(await run_loadgen_job(run, "grpc_empty", health_job, round_)))
                    _log(_describe(await run_ray_ping(run, c, round_)))
            consistency = await check_consistency(run)
            shard_pids = run.sampler.shard_pids()
    finally:
        if child.is_alive():
            with contextlib.suppress(OSError):
                parent_conn.send(None)
        child.join(10)
        if child.is_alive():
            child.terminate()  # our own child, by its handle
            child.join(5)
        shutdown_ray()
        shutil.rmtree(data_dir, ignore_errors=True)
    finished_at = dt.datetime.now(dt.UTC)
    return {
        "schema": "lotwise.bench.core/1",
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished_at.isoformat(timespec="seconds"),
        "argv": args.argv,
        "command": command_line(args.argv),
        "config": {
            "concurrency": args.concurrency,
            "duration_s": args.duration_s,
            "ceiling_duration_s": args.ceiling_duration_s,
            "warmup_s": args.warmup_s,
            "rounds": args.rounds,
            "shards": args.shards,
            "journal": args.journal,
            "followers": args.followers,
            "skus": args.skus,
            "sites": args.sites,
            "pairs": len(run.pairs),
            "max_lines": args.max_lines,
            "seed": args.seed,
            "client_retries": "off (NO_RETRY): every refusal is counted",
            "call_timeout_s": loadgen.CALL_TIMEOUT_S,
            "engine_settings": {
                k: getattr(settings, k)
                for k in (
                    "batch_max",
                    "batch_window_ms",
                    "queue_max",
                    "max_in_flight",
                    "max_concurrent_rpcs",
                    "journal",
                    "journal_replicas",
                    "snapshot_min_tail_ops",
                    "snapshot_tail_fraction",
                    "snapshot_max_tail_ops",
                    "snapshot_interval_ms",
                    "sweep_interval_ms",
                )
            },
            "log_level": "warning",
            "shard_pids_seen": shard_pids,
        },
        "machine": report.machine_info(),
        "idle_cpus": run.idle_cpus,
        "consistency": consistency,
        "problems": run.problems,
        "error_samples": run.error_samples[:50],
        "windows": report.windows_json(run.windows),
        "aggregate": aggregate_rounds(run.windows),
        "_raw": run.raw,
    }


async def check_consistency(run: Run) -> dict[str, Any]:
    """Stock the engine reports vs what the Commit replies said was taken.

    With no failed calls, final qty must be seeded − committed exactly, and nothing held.
    """
    gateway = run.engine.gateway
    final_qty, final_held = await stock_totals(gateway)
    expected_qty = run.seeded_qty - run.committed_qty_replies
    failed_calls = sum(w.error_count for w in run.windows if w.kind == "lotwise")
    ok = final_qty == expected_qty and final_held == 0
    result = {
        "seeded_qty": run.seeded_qty,
        "committed_qty_by_replies": run.committed_qty_replies,
        "expected_qty": expected_qty,
        "final_qty": final_qty,
        "final_held": final_held,
        "failed_order_calls_in_windows": failed_calls,
        "ok": ok,
    }
    if not ok:
        run.problems.append(f"stock does not add up: {result}")
    _log(f"consistency: {'ok' if ok else 'MISMATCH'} {result}")
    return result


def command_line(argv: Sequence[str]) -> str:
    return " ".join(["scripts/in-netns .venv/bin/python -m bench.core", *(shlex.quote(a) for a in argv)])


def write_results(args: argparse.Namespace, result: dict[str, Any]) -> list[Path]:
    """Every latency sample to the raw directory; JSON, markdown and plots to --out."""
    raw = result.pop("_raw")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    raw_path: Path = args.raw_dir / "latencies.jsonl.gz"
    report.write_raw_latencies(raw_path, raw)
    result["raw_latencies"] = os.path.relpath(raw_path, out)
    return [*render_outputs(out, result), raw_path]


def render_outputs(out: Path, result: dict[str, Any]) -> list[Path]:
    """core.json, core.md and the PNGs, from a run's result (fresh, or loaded by --rerender)."""
    machine, config = result["machine"], result["config"]
    title = (
        f"{machine['usable_cpus']} CPUs ({machine['cpu_model']}), "
        f"{config['shards']} shards, {config['journal']} journal"
    )
    git = machine["git"]
    header = (
        f"## Lotwise core benchmark — {result['started_at'][:10]}\n\n"
        f"Machine: {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, {machine['memory_gib']} GiB; "
        f"Python {machine['python']}, Ray {machine['versions']['ray']}, grpcio {machine['versions']['grpcio']}; "
        f"git {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}.\n\n"
        f"Command: `{result['command']}`  \n"
        f"{config['rounds']} rounds × {config['duration_s']:g} s windows "
        f"(ceilings {config['ceiling_duration_s']:g} s), "
        f"{config['warmup_s']:g} s warm-up each; concurrency {', '.join(map(str, config['concurrency']))}; "
        f"{config['shards']} shards; journal: {config['journal']}; "
        f"followers: {config.get('followers', 'on')}; {config['pairs']} (sku, site) pairs. "
        "Medians over rounds (min–max in brackets). "
        f"Stock consistency check: {'ok' if result['consistency']['ok'] else 'FAILED'}."
    )
    idle = result.get("idle_cpus") or {}
    if idle:
        header += (
            "\n\nIdle CPU use before any load, in CPUs: "
            + ", ".join(f"{k} {v:.3f}" for k, v in idle.items() if k != "machine_busy")
            + " (foreign = other processes on the machine)."
        )
    markdown = report.render_markdown(result["aggregate"], header)
    (out / "core.md").write_text(markdown)
    report.write_json(out / "core.json", result)
    return [out / "core.json", out / "core.md", *report.plot(result["aggregate"], out, title)]


def rerender(path: Path) -> list[Path]:
    """Rebuild the tables and plots of a finished run from its core.json (no engine, no Ray)."""
    result = json.loads(path.read_text())
    windows = [window_from_json(w) for w in result["windows"]]
    result["aggregate"] = aggregate_rounds(windows)
    if "argv" not in result:  # written before argv was recorded: "python -m bench.core ARGS"
        result["argv"] = result["command"].split()[3:]
    result["command"] = command_line(result["argv"])
    return render_outputs(path.parent, result)


def in_network_namespace() -> bool:
    return os.environ.get("LOTWISE_IN_NETNS") == "1" or os.environ.get("LOTWISE_NO_NETNS") == "1"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender is not None:
        for path in rerender(args.rerender):
            _log(f"wrote {path}")
        return 0
    if not in_network_namespace():
        print(
            "bench.core starts Ray, which must run in a loopback-only network namespace:\n"
            "  scripts/in-netns .venv/bin/python -m bench.core ...",
            file=sys.stderr,
        )
        return 2
    result = asyncio.run(run_benchmark(args))
    paths = write_results(args, result)
    print(report.render_markdown(result["aggregate"], "## Results"))
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    for path in paths:
        _log(f"wrote {path}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
