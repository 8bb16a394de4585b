"""The comparison suite: Lotwise vs PostgreSQL vs Redis on the same work (bench/README.md).

    scripts/in-netns .venv/bin/python -m bench.suite            # or: make bench-suite / lotwise bench

This process starts every system on loopback — the Lotwise engine embedded (local Ray,
2 shards, durable journal; history, events and ingestion on, as `lotwise up` runs it), a
PostgreSQL cluster (fsync on) and two Redis servers (no persistence, and `appendfsync
always`) — and one load-generator process (bench.suite_loadgen) drives them all with the
same asyncio workers. Every server is driven in the modes it has (`VARIANTS`): Lotwise
two-phase unary, one-call sale and auto-batched (and two-phase with followers off, the
row that shows their cost); PostgreSQL two-phase and one-transaction sale; Redis
two-phase and its lean pipelined driver. For every round, workload, system (interleaved, the
order rotating per round) and concurrency: load fresh stock, run one window, read back
what the system believes and check it (no oversell, units conserved, no hold left open).
A window whose check fails is reported as failed, not as a number. Medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import report
from bench.stats import jsonable, render_table, spread, summarize_latencies_ns
from bench.suite_loadgen import SuiteJob, SuiteResult, SystemSpec, merge
from bench.systems import Audit, CheckResult, Dataset, check, wrong_refusals
from bench.workloads import WORKLOADS, dataset, shape


@dataclass(frozen=True, slots=True)
class Variant:
    """A row of the suite: which server it drives, and how (bench.suite_loadgen.MODES)."""

    server: str  # "lotwise", "postgres", "redis" or "redis-aof-always": started once, shared
    mode: str = "two-phase"
    followers: bool = True  # Lotwise: history, events and ingestion on, as `lotwise up` runs


VARIANTS = {
    "lotwise": Variant("lotwise"),
    "lotwise-sale": Variant("lotwise", "sale"),
    "lotwise-batched": Variant("lotwise", "batched"),
    "lotwise-nofollowers": Variant("lotwise", followers=False),
    "postgres": Variant("postgres"),
    "postgres-sale": Variant("postgres", "sale"),
    "redis": Variant("redis"),
    "redis-aof-always": Variant("redis-aof-always"),
    "redis-aof-always-lean": Variant("redis-aof-always", "lean"),
}
SYSTEMS = tuple(VARIANTS)
PIPE_SLACK_S = 120.0


# ---- CLI ----


def _csv(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
        return list(dict.fromkeys(items))

    return parse


def _ints(text: str) -> list[int]:
    try:
        values = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1 or values[-1] > 512:
        raise argparse.ArgumentTypeError("concurrency levels must be in 1..512")
    return values


def _bounded(kind: type, lo: float, hi: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    today = dt.date.today().isoformat()
    p = argparse.ArgumentParser(
        prog="python -m bench.suite",
        description="Lotwise vs PostgreSQL (row locks) vs Redis (Lua) on the same POS, hot-pair and WMS "
        "workloads, interleaved rounds, correctness checked after every run. Starts Ray: run it inside "
        "scripts/in-netns.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--systems", type=_csv(SYSTEMS), default=list(SYSTEMS), help="systems to compare")
    p.add_argument("--workloads", type=_csv(WORKLOADS), default=list(WORKLOADS), help="workloads to run")
    p.add_argument("--concurrency", type=_ints, default=[1, 16, 64], help="client concurrency levels")
    p.add_argument("--rounds", type=_bounded(int, 1, 20), default=3, help="repeats; tables show medians")
    p.add_argument("--duration-s", type=_bounded(float, 1, 300), default=6.0, help="measured window")
    p.add_argument("--warmup-s", type=_bounded(float, 0, 60), default=1.0, help="unmeasured lead-in")
    p.add_argument("--skus", type=_bounded(int, 1, 20_000), default=2_000, help="skus of the POS datasets")
    p.add_argument("--sites", type=_bounded(int, 1, 100), default=10, help="sites of the POS datasets")
    p.add_argument("--seed", type=int, default=11, help="seed of datasets and order streams")
    p.add_argument(
        "--lean-batch",
        type=_bounded(int, 2, 256),
        default=16,
        help="orders per round trip of each worker of the '-lean' systems (Redis's pipelined driver)",
    )
    p.add_argument(
        "--batch",
        type=_bounded(int, 1, 256),
        default=1,
        help="> 1: the lean driver — each worker sends this many orders per round trip (systems with "
        "reserve_many: Redis), so the server's ceiling shows rather than the Python client's",
    )
    p.add_argument(
        "--loadgens",
        type=_bounded(int, 1, 8),
        default=1,
        help="load-generator processes sharing each window's workers: one Python process saturates a core "
        "before Redis does; 2 shows how far that bounds a result (on 2 cores they then compete with the server)",
    )
    p.add_argument(
        "--profile",
        default="pos-deep",
        help="py-spy the gateway process and one shard during Lotwise's windows of this workload at the "
        "highest concurrency ('' = no profile)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results") / today / "suite", help="report directory")
    args = p.parse_args(argv)
    if args.batch > 1:
        lean = ("redis", "redis-aof-always")  # the systems with reserve_many / finish_many
        if any(s not in lean for s in args.systems) or "wms-bulk" in args.workloads:
            p.error(f"--batch > 1 drives only {', '.join(lean)}, on the POS and hot-pair workloads")
    return args


# ---- the systems, as the parent sees them ----


@dataclass(slots=True)
class Running:
    """A started system: how the child reaches it, and how the parent loads, audits and
    measures it."""

    spec: SystemSpec
    load: Callable[[Dataset], Any]
    audit: Callable[[Dataset], Any]
    pids: Callable[[], list[int]]
    foreign: set[int] = field(default_factory=set)  # processes below this one that are not its own
    restart: Callable[[], Any] | None = None  # a fresh instance (between workloads), if the system needs one


async def start_systems(stack: contextlib.AsyncExitStack, names: Sequence[str], tmp: Path) -> dict[str, Running]:
    """Each server once; every variant of it a `Running` of its own over the same server."""
    servers = {VARIANTS[n].server for n in names}
    out: dict[str, Running] = {}
    if "lotwise" in servers:
        out.update(await _start_lotwise(stack, tmp, [n for n in names if VARIANTS[n].server == "lotwise"]))
    base: dict[str, Running] = {}
    if "postgres" in servers:
        base["postgres"] = await _start_postgres(stack)
    for name, durable in (("redis", False), ("redis-aof-always", True)):
        if name in servers:
            base[name] = await _start_redis(stack, name, durable)
    for name in names:
        server = VARIANTS[name].server
        if server in base:
            spec = replace(base[server].spec, name=name, mode=VARIANTS[name].mode)
            out[name] = replace(base[server], spec=spec)
    return out


async def _start_postgres(stack: contextlib.AsyncExitStack) -> Running:
    from bench.peers.postgres import PostgresServer, PostgresSystem

    server = await stack.enter_async_context(PostgresServer())
    admin = PostgresSystem(server.dsn, 4)
    await _open(admin)
    stack.push_async_callback(admin.close)
    return Running(SystemSpec("postgres", server.dsn, "postgres"), admin.load, _audit_of(admin), server.pids)


async def _start_redis(stack: contextlib.AsyncExitStack, name: str, durable: bool) -> Running:
    from bench.peers.redis_peer import RedisServer, RedisSystem

    server = await stack.enter_async_context(RedisServer(durable=durable))
    admin = RedisSystem(server.url, 4, name)
    await _open(admin)
    stack.push_async_callback(admin.close)
    return Running(SystemSpec("redis", server.url, name), admin.load, _audit_of(admin), server.pids)


async def _open(system: Any) -> None:
    opener = getattr(system, "open", None)
    if opener is not None:
        await opener()


def _audit_of(system: Any) -> Callable[[Dataset], Any]:
    async def audit(_: Dataset) -> Audit:
        result: Audit = await system.audit()
        return result

    return audit


class LotwiseEngine:
    """The embedded engine, restartable with followers on or off (fresh namespace, journal
    and shards). Every window books into sites of its own, so windows need no fresh engine;
    a start costs 10 s to minutes on a loaded machine, so the suite restarts only to switch
    followers (and orders the systems so that it switches seldom: `run_order`)."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._stack: contextlib.AsyncExitStack | None = None
        self._n = 0
        self.followers: bool | None = None  # the running engine's setting
        self.engine: Any = None

    async def use(self, followers: bool) -> None:
        """An engine with `followers` for the next series of windows."""
        if self.followers is not followers:
            await self.restart(followers)

    async def restart(self, followers: bool = True) -> None:
        from engine.bootstrap import running_engine
        from engine.settings import Settings

        await self.stop()
        self._n += 1
        self.followers = followers
        settings = Settings(
            port=0,
            metrics_port=0,
            shards=2,
            namespace=f"bench-suite-{time.strftime('%Y%m%d%H%M%S')}-{self._n}",
            data_dir=self._tmp / f"lotwise-{self._n}",
            # As `lotwise up` runs (history, the event bus and ingestion on): their CPU is
            # charged to the orders, as users pay it. Off, the row shows what they cost.
            history=followers,
            events=followers,
            ingest=followers,
            log_level="warning",
        )
        self._stack = contextlib.AsyncExitStack()
        self.engine = await self._stack.enter_async_context(running_engine(settings))

    def token(self) -> str:
        """The admin token the engine wrote (auth on, as `lotwise up` runs it); "" when off."""
        path = self.engine.token_file
        return path.read_text(encoding="utf-8").strip() if path is not None else ""

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None


async def _seed_and_settle(box: LotwiseEngine, data: Dataset) -> None:
    """Seed, then wait for the followers to apply the seeding (not the window's work)."""
    from bench.peers import lotwise

    await lotwise.seed(box.engine.gateway, data)
    await lotwise.settle(box.engine)


async def _start_lotwise(stack: contextlib.AsyncExitStack, tmp: Path, names: Sequence[str]) -> dict[str, Running]:
    """One engine process tree for every Lotwise variant: each variant's series of windows
    gets a fresh engine with its followers setting (`LotwiseEngine.use`)."""
    import psutil

    from bench.peers import lotwise

    box = LotwiseEngine(tmp)
    await box.restart(VARIANTS[names[0]].followers)
    stack.push_async_callback(box.stop)
    me = psutil.Process()
    foreign: set[int] = set()  # peers' servers and the load generator: not Lotwise's CPU

    def pids() -> list[int]:
        others = set(foreign)
        for pid in foreign:  # a PostgreSQL backend is born below its postmaster, later
            with contextlib.suppress(psutil.NoSuchProcess):
                others.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        return [me.pid, *(p.pid for p in me.children(recursive=True) if p.pid not in others)]

    def variant(name: str) -> Running:
        mode, followers = VARIANTS[name].mode, VARIANTS[name].followers
        running = Running(
            SystemSpec("lotwise", box.engine.grpc_address, name, mode, box.token()),
            lambda data: _seed_and_settle(box, data),
            lambda data: lotwise.audit(box.engine.gateway, data),
            pids,
            foreign,
        )

        async def restart() -> None:
            await box.use(followers)
            running.spec = SystemSpec("lotwise", box.engine.grpc_address, name, mode, box.token())

        running.restart = restart
        return running

    return {name: variant(name) for name in names}


# ---- CPU ----


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds so far of each process (user + system)."""
    import psutil

    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples; a process born in between counts from zero, one that
    ended in between is lost (PostgreSQL backends live as long as the pool's connections,
    which outlive the window)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# ---- profile (py-spy, sampling: it costs the profiled process little) ----


async def profile_window(pids: dict[str, int], seconds: float, out: Path) -> dict[str, list[tuple[str, float]]]:
    """py-spy `record --format raw` of each process for `seconds`; the top frames by own time."""
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    procs = {}
    for name, pid in pids.items():
        path = out / f"profile-{name}.txt"
        cmd = [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200"]
        cmd += ["--format", "raw", "--output", str(path), "--nonblocking"]
        procs[name] = (
            await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            ),
            path,
        )
    tops = {}
    for name, (proc, path) in procs.items():
        await proc.wait()
        raw = await asyncio.to_thread(_read_if_exists, path)
        tops[name] = top_frames(raw)
        tops[f"{name} by component"] = top_parts(top_frames(raw, n=10_000))
    return tops


def _read_if_exists(path: Path) -> str:
    return path.read_text() if path.exists() else ""


_IDLE = ("select (selectors.py", "Condition.wait", "Worker.main_loop", "Thread.run", "_read_from_self")
_PARTS = (
    ("engine/", "lotwise engine"),
    ("adapters/", "lotwise adapters"),
    ("ray/", "ray"),
    ("grpc", "grpc"),
    ("google/protobuf", "protobuf"),
    ("nats/", "nats-py"),
    ("asyncio/", "asyncio"),
    ("structlog", "logging"),
)


def part_of(frame: str) -> str:
    """Which component a leaf frame's time belongs to (idle = waiting for work)."""
    if any(marker in frame for marker in _IDLE):
        return "idle (waiting)"
    where = frame.rpartition("(")[2]
    return next((name for marker, name in _PARTS if marker in where), "other")


def top_parts(frames: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    shares: dict[str, float] = {}
    for frame, share in frames:
        shares[part_of(frame)] = shares.get(part_of(frame), 0.0) + share
    return sorted(shares.items(), key=lambda kv: -kv[1])


def top_frames(raw: str, n: int = 12) -> list[tuple[str, float]]:
    """Collapsed stacks ('a;b;c 17' per line) → the n leaf frames with the most samples, as
    shares of all samples (idle waits included: they say the process had nothing to do)."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, num = line.rpartition(" ")
        if not stack or not num.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        counts[leaf] = counts.get(leaf, 0) + int(num)
        total += int(num)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return [(frame, count / total) for frame, count in ranked] if total else []


# ---- one window ----


@dataclass(slots=True)
class WindowOut:
    system: str
    workload: str
    concurrency: int
    round: int
    result: SuiteResult
    server_cpu_s: float
    check: CheckResult
    load_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.check.ok and not self.result.unknown_outcomes and not self.result.errors


async def _recv(conn: Any, timeout_s: float) -> tuple[Any, ...]:
    def wait() -> tuple[Any, ...]:
        if not conn.poll(timeout_s):
            raise TimeoutError(f"the load generator said nothing for {timeout_s:.0f} s")
        msg: tuple[Any, ...] = conn.recv()
        return msg

    return await asyncio.to_thread(wait)


def _split(job: SuiteJob, parts: int) -> list[SuiteJob]:
    """The window's workers over `parts` processes (fewer when there are fewer workers)."""
    parts = min(parts, job.concurrency)
    sizes = [job.concurrency // parts + (i < job.concurrency % parts) for i in range(parts)]
    starts = [sum(sizes[:i]) for i in range(parts)]
    return [replace(job, concurrency=n, first_worker=first) for n, first in zip(sizes, starts, strict=True)]


async def _expect(conns: Sequence[Any], what: str, timeout_s: float, *where: object) -> list[tuple[Any, ...]]:
    msgs = await asyncio.gather(*(_recv(c, timeout_s) for c in conns))
    for msg in msgs:
        if msg[0] == "failed":
            raise RuntimeError(f"{' '.join(map(str, where))}: load generator failed: {msg[1]}")
        if msg[0] != what:
            raise RuntimeError(
                f"{' '.join(map(str, where))}: expected {what!r} from the load generator, got {msg[0]!r}"
            )
    return msgs


async def run_one(
    conns: Sequence[Any],
    running: Running,
    workload: str,
    concurrency: int,
    round_: int,
    args: argparse.Namespace,
    profile: dict[str, int] | None = None,
) -> WindowOut:
    s = shape(workload, args.skus, args.sites)
    # Fresh sites for every window (Lotwise keeps earlier ones; its seeding is idempotent
    # by request id, so a reused tag would be refused as a conflicting retry).
    tag = f"w{WORKLOADS.index(workload)}r{round_}c{concurrency}s{SYSTEMS.index(running.spec.name)}"
    data = dataset(s, tag, args.seed)
    t0 = time.perf_counter()
    await running.load(data)
    load_s = time.perf_counter() - t0
    batch = args.lean_batch if running.spec.mode == "lean" else args.batch
    job = SuiteJob(running.spec, s, tag, args.seed + round_, concurrency, args.duration_s, args.warmup_s, batch=batch)
    jobs = _split(job, len(conns))
    for conn, job in zip(conns, jobs, strict=False):
        conn.send(job)
    timeout = args.warmup_s + args.duration_s + PIPE_SLACK_S
    await _expect(conns[: len(jobs)], "start", timeout, running.spec.name, workload, concurrency)
    cpu0 = cpu_seconds(running.pids())
    spying = (
        asyncio.create_task(profile_window(profile, args.duration_s * 0.9, args.out / "profile")) if profile else None
    )
    await _expect(conns[: len(jobs)], "end", timeout, running.spec.name, workload, concurrency)
    cpu1 = cpu_seconds(running.pids())
    results = await _expect(conns[: len(jobs)], "result", timeout, running.spec.name, workload, concurrency)
    result = merge([m[1] for m in results])
    audit = await running.audit(data)
    checked = check(data, result.received, result.committed, audit)
    if result.refusals and not result.received:  # stock only shrank: refusals can be checked
        wrong = wrong_refusals(result.refusals, audit, concurrency, s.max_qty)
        if wrong:
            checked.problems.append(f"{wrong} of {len(result.refusals)} refusals had stock to hold the order")
    out = WindowOut(running.spec.name, workload, concurrency, round_, result, cpu_delta(cpu0, cpu1), checked, load_s)
    if spying is not None:
        out.extra["profile"] = await spying
    return out


# ---- the run ----


def _log(text: str) -> None:
    print(f"[bench.suite {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def describe(w: WindowOut) -> str:
    r = w.result
    lat = summarize_latencies_ns(r.latencies_ns)
    status = "ok" if w.ok else "FAILED: " + "; ".join(w.check.problems[:3] + r.first_errors[:2])
    return (
        f"{w.system:<21} {w.workload:<10} c{w.concurrency:<3} {r.orders / r.window_s:8,.0f} orders/s "
        f"{r.refused / r.window_s:7,.0f} refused/s {r.shed / r.window_s:5,.0f} shed/s "
        f"p50 {lat.p50_ms or 0:6.1f} p99 {lat.p99_ms or 0:6.1f} ms "
        f"(load {w.load_s:.1f}s) {status}"
    )


async def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    from bench import suite_loadgen

    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(args.loadgens)]
    loadgens = [
        ctx.Process(target=suite_loadgen.serve, args=(child,), name=f"bench-suite-loadgen-{i}", daemon=True)
        for i, (_, child) in enumerate(pipes)
    ]
    conns = [parent for parent, _ in pipes]
    windows: list[WindowOut] = []
    with tempfile.TemporaryDirectory(prefix="lotwise-suite-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            systems = await start_systems(stack, args.systems, Path(tmp))
            for conn, proc in zip(conns, loadgens, strict=True):
                proc.start()
                stack.callback(_stop_loadgen, conn, proc)
            foreign = {proc.pid or 0 for proc in loadgens}
            for name, running in systems.items():
                if VARIANTS[name].server != "lotwise":
                    foreign.update(running.pids())
            for running in systems.values():  # the Lotwise variants share one set
                running.foreign.update(foreign)
            order = [n for n in SYSTEMS if n in systems]
            for round_ in range(1, args.rounds + 1):
                for k, workload in enumerate(args.workloads):
                    for name in run_order(order, round_, k):
                        if not runs(name, workload):
                            continue
                        restart = systems[name].restart
                        if restart is not None:
                            await restart()
                        for c in args.concurrency:
                            spy = None
                            if name == "lotwise" and workload == args.profile and c == max(args.concurrency):
                                spy = profile_targets(systems[name]) if round_ == args.rounds else None
                            w = await run_one(conns, systems[name], workload, c, round_, args, spy)
                            windows.append(w)
                            _log(f"round {round_}: {describe(w)}")
    return {"windows": windows}


def run_order(systems: Sequence[str], round_: int, workload_index: int) -> list[str]:
    """The systems' order: rotating per round (no system always first), reversed every
    other workload — so the Lotwise variants with followers off come last in one workload
    and first in the next, and the engine switches once per two workloads, not twice."""
    k = (round_ - 1) % len(systems)
    rotated = [*systems[k:], *systems[:k]]
    return rotated[::-1] if workload_index % 2 else rotated


def runs(system: str, workload: str) -> bool:
    """The lean driver has no receipts: it sits out the WMS workload."""
    return not (VARIANTS[system].mode == "lean" and workload == "wms-bulk")


def profile_targets(running: Running) -> dict[str, int]:
    """The gateway (this process) and one shard actor."""
    import os

    import psutil

    targets = {"gateway": os.getpid()}
    for pid in running.pids():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if "ray::Shard" in " ".join(psutil.Process(pid).cmdline()):
                targets["shard"] = pid
                break
    return targets


def _stop_loadgen(conn: Any, proc: Any) -> None:
    with contextlib.suppress(Exception):
        conn.send(None)
    proc.join(10)
    if proc.is_alive():
        proc.kill()


# ---- aggregation and the report ----


def aggregate(windows: Sequence[WindowOut]) -> list[dict[str, Any]]:
    """One row per (workload, system, concurrency): medians over rounds; failed if any round failed."""
    keys = sorted({(w.workload, w.system, w.concurrency) for w in windows}, key=_row_order)
    rows = []
    for workload, system, c in keys:
        ws = [w for w in windows if (w.workload, w.system, w.concurrency) == (workload, system, c)]
        lats = [summarize_latencies_ns(w.result.latencies_ns) for w in ws]
        orders = [w.result.orders / w.result.window_s for w in ws]
        rows.append(
            {
                "workload": workload,
                "system": system,
                "concurrency": c,
                "rounds": len(ws),
                "ok": all(w.ok for w in ws),
                "problems": [p for w in ws for p in (w.check.problems + w.result.first_errors)][:5],
                "orders_per_s": spread(orders),
                "lines_per_s": spread(w.result.lines / w.result.window_s for w in ws),
                "refused_per_s": spread(w.result.refused / w.result.window_s for w in ws),
                "receipts_per_s": spread(w.result.receipts / w.result.window_s for w in ws),
                "p50_ms": spread(lat.p50_ms for lat in lats),
                "p99_ms": spread(lat.p99_ms for lat in lats),
                "hold_p99_ms": spread(summarize_latencies_ns(w.result.hold_latencies_ns).p99_ms for w in ws),
                "server_cpu_ms_per_order": spread(_per_order(w.server_cpu_s, w) for w in ws),
                "loadgen_cpu_ms_per_order": spread(_per_order(w.result.cpu_s, w) for w in ws),
                "loadgen_cpu_busy": spread(w.result.cpu_s / w.result.window_s for w in ws),
            }
        )
    return rows


def _row_order(key: tuple[str, str, int]) -> tuple[int, int, int]:
    workload, system, c = key
    return (WORKLOADS.index(workload), SYSTEMS.index(system), c)


def _per_order(cpu_s: float, w: WindowOut) -> float | None:
    done = w.result.orders + w.result.refused + w.result.receipts
    return cpu_s * 1000 / done if done else None


def render(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [f"## Lotwise vs PostgreSQL vs Redis — {meta['date']}", "", f"Command: `{meta['command']}`  "]
    out.append(
        f"{meta['rounds']} rounds, systems interleaved (order rotating per round), medians (min–max); "
        f"{meta['duration_s']:.0f} s windows after {meta['warmup_s']:.0f} s warm-up; the same asyncio load "
        f"generator for every system ({meta.get('loadgens', 1)} process(es), "
        f"{meta.get('batch', 1)} order(s) per round trip). A ✗ row failed its correctness "
        "check (no oversell, units conserved, no open hold) or had errors: its numbers are not results. "
        "'loadgen busy' is the load generator's CPU over the window: near 1.0 per process, the client, not the "
        "server, bounds the row."
    )
    for workload in dict.fromkeys(r["workload"] for r in rows):
        wr = [r for r in rows if r["workload"] == workload]
        out += ["", f"### {workload}", ""]
        headers = [
            "system",
            "c",
            "orders/s",
            "lines/s",
            "refused/s",
            "p50 ms",
            "p99 ms",
            "hold p99 ms",
            "server CPU ms/op",
            "loadgen CPU ms/op",
            "loadgen busy",
            "check",
        ]
        body = [
            [
                r["system"],
                str(r["concurrency"]),
                r["orders_per_s"].fmt(0, with_range=True),
                r["lines_per_s"].fmt(0),
                r["refused_per_s"].fmt(0),
                r["p50_ms"].fmt(1),
                r["p99_ms"].fmt(1),
                r["hold_p99_ms"].fmt(1),
                r["server_cpu_ms_per_order"].fmt(2),
                r["loadgen_cpu_ms_per_order"].fmt(2),
                r["loadgen_cpu_busy"].fmt(2),
                "ok" if r["ok"] else "✗ " + "; ".join(r["problems"][:2]),
            ]
            for r in wr
        ]
        out.append(render_table(headers, body, right_align_from=1))
        out += ["", ratio_table(wr)]
    targets = targets_table(rows)
    if targets:
        out += ["", "### Issue 12's targets, from this run", "", targets]
    return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True)
class Target:
    """One line of issue 12's targets table: `ours` against `peer` in one (workload, c)."""

    measure: str
    workload: str
    ours: str
    peer: str
    concurrency: int  # 0: the highest the run measured
    metric: str  # a row's column; orders_per_s compares as a ratio, the others as they are
    bar: float  # orders_per_s: ratio ≥ bar; else: Lotwise's value ≤ bar
    unit: str = ""


TARGETS = (
    Target("pos-deep @64, unary two-phase, ÷ PostgreSQL", "pos-deep", "lotwise", "postgres", 64, "orders_per_s", 1.0),
    Target(
        "pos-deep @64, one-call sale, ÷ PostgreSQL sale",
        "pos-deep",
        "lotwise-sale",
        "postgres-sale",
        64,
        "orders_per_s",
        2.0,
    ),
    Target(
        "pos-deep @64, auto-batched, ÷ durable Redis-Lua lean driver",
        "pos-deep",
        "lotwise-batched",
        "redis-aof-always-lean",
        64,
        "orders_per_s",
        0.5,
    ),
    Target("hot-pair @64, unary, ÷ PostgreSQL", "hot-pair", "lotwise", "postgres", 64, "orders_per_s", 2.0),
    Target("wms-bulk, unary, ÷ PostgreSQL", "wms-bulk", "lotwise", "postgres", 0, "orders_per_s", 2.0),
    Target(
        "pos-deep @64, followers on ÷ off (unary)",
        "pos-deep",
        "lotwise",
        "lotwise-nofollowers",
        64,
        "orders_per_s",
        0.85,
    ),
    Target(
        "server CPU per order, batched @64 (peer: Redis lean)",
        "pos-deep",
        "lotwise-batched",
        "redis-aof-always-lean",
        64,
        "server_cpu_ms_per_order",
        0.5,
        " ms",
    ),
    Target(
        "order p50 at 1 client, unary (peer: PostgreSQL)", "pos-deep", "lotwise", "postgres", 1, "p50_ms", 3.0, " ms"
    ),
    *(
        Target(f"reserve p99 at 64, {ours} (peer: {peer})", "pos-deep", ours, peer, 64, "hold_p99_ms", 50.0, " ms")
        for ours, peer in (
            ("lotwise", "postgres"),
            ("lotwise-sale", "postgres-sale"),
            ("lotwise-batched", "redis-aof-always-lean"),
        )
    ),
)


def targets_table(rows: Sequence[dict[str, Any]], targets: Sequence[Target] = TARGETS) -> str:
    """measure | Lotwise | peer | ratio | bar, for every target this run has rows for. A
    side whose window failed its check shows ✗ and no ratio: a failed window is no number."""
    top = max((r["concurrency"] for r in rows), default=0)
    by = {(r["workload"], r["system"], r["concurrency"]): r for r in rows}
    body = []
    for t in targets:
        c = t.concurrency or top
        ours, peer = by.get((t.workload, t.ours, c)), by.get((t.workload, t.peer, c))
        if ours is None and peer is None:
            continue
        a, b = (_cell(r, t.metric) for r in (ours, peer))
        ratio, met = "–", "–"
        if isinstance(a, float) and isinstance(b, float) and b:
            ratio = f"{a / b:.2f}×"
            if t.metric == "orders_per_s":
                met = "met" if a / b >= t.bar else "not met"
        if t.metric != "orders_per_s" and isinstance(a, float):
            met = "met" if a <= t.bar else "not met"
        bar = f"≥ {t.bar:g}×" if t.metric == "orders_per_s" else f"≤ {t.bar:g}{t.unit}"
        body.append([t.measure, _show(a, t), _show(b, t), ratio, f"{bar} ({met})"])
    return render_table(["measure", "Lotwise", "peer", "ratio", "bar"], body, right_align_from=1) if body else ""


def _cell(row: dict[str, Any] | None, metric: str) -> float | str:
    if row is None:
        return "–"
    if not row["ok"]:
        return "✗"
    value = row[metric].median
    return float(value) if value is not None else "–"


def _show(value: float | str, t: Target) -> str:
    if not isinstance(value, float):
        return value
    return f"{value:,.0f}" if t.metric == "orders_per_s" else f"{value:.2f}{t.unit}"


def ratio_table(rows: Sequence[dict[str, Any]]) -> str:
    """Lotwise orders/s ÷ each peer's, per concurrency (only where both runs passed)."""
    peers = [s for s in SYSTEMS if s != "lotwise" and any(r["system"] == s for r in rows)]
    cs = sorted({r["concurrency"] for r in rows})
    by = {(r["system"], r["concurrency"]): r for r in rows}
    body = []
    for peer in peers:
        cells = [f"Lotwise ÷ {peer}"]
        for c in cs:
            lw, pr = by.get(("lotwise", c)), by.get((peer, c))
            if lw is None or pr is None or not (lw["ok"] and pr["ok"]) or not pr["orders_per_s"].median:
                cells.append("–")
            else:
                cells.append(f"{lw['orders_per_s'].median / pr['orders_per_s'].median:.2f}×")
        body.append(cells)
    return render_table(["orders/s ratio", *(f"c={c}" for c in cs)], body, right_align_from=1) if body else ""


def plot(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    paths = []
    for metric, label, fname, log in (
        ("orders_per_s", "orders/s (median; bars min–max)", "throughput.png", False),
        ("p99_ms", "p99 latency, ms (median)", "latency.png", True),
    ):
        fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 3.8), squeeze=False)
        for ax, workload in zip(axes[0], workloads, strict=True):
            for system in SYSTEMS:
                rs = [r for r in rows if r["workload"] == workload and r["system"] == system]
                if not rs:
                    continue
                xs = [r["concurrency"] for r in rs]
                med = [r[metric].median or 0 for r in rs]
                lo = [m - (r[metric].lo or m) for m, r in zip(med, rs, strict=True)]
                hi = [(r[metric].hi or m) - m for m, r in zip(med, rs, strict=True)]
                style = "-" if all(r["ok"] for r in rs) else ":"
                ax.errorbar(xs, med, yerr=[lo, hi], marker="o", linestyle=style, capsize=3, label=system)
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r["concurrency"] for r in rows}))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            if log:
                ax.set_yscale("log")
            ax.set_title(workload)
            ax.set_xlabel("client concurrency")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(label)
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(args: argparse.Namespace, windows: Sequence[WindowOut], argv: Sequence[str]) -> list[Path]:
    rows = aggregate(windows)
    meta = {
        "date": dt.date.today().isoformat(),
        "command": "scripts/in-netns .venv/bin/python -m bench.suite " + shlex.join(argv),
        "rounds": args.rounds,
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "loadgens": args.loadgens,
        "batch": args.batch,
        "machine": report.machine_info(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / "suite.md"
    md.write_text(render(rows, meta) + profile_section(windows) + "\n" + machine_table(meta["machine"]))
    data = {
        "meta": meta,
        "rows": rows,
        "windows": [
            {
                "system": w.system,
                "workload": w.workload,
                "concurrency": w.concurrency,
                "round": w.round,
                "ok": w.ok,
                "orders": w.result.orders,
                "refused": w.result.refused,
                "receipts": w.result.receipts,
                "lines": w.result.lines,
                "window_s": w.result.window_s,
                "errors": w.result.errors,
                "problems": w.check.problems,
                "latency": summarize_latencies_ns(w.result.latencies_ns),
                "server_cpu_s": w.server_cpu_s,
                "loadgen_cpu_s": w.result.cpu_s,
                "load_s": w.load_s,
            }
            for w in windows
        ],
    }
    report.write_json(args.out / "suite.json", jsonable(data))
    return [md, args.out / "suite.json", *plot(rows, args.out)]


def profile_section(windows: Sequence[WindowOut]) -> str:
    """py-spy's top frames (own time) of the gateway process and one shard, one window."""
    profiled = [w for w in windows if w.extra.get("profile")]
    if not profiled:
        return ""
    w = profiled[-1]
    out = [
        "",
        f"### Where Lotwise's time goes ({w.workload}, c={w.concurrency}, round {w.round}; py-spy, 200 Hz)",
        "",
        "Leaf frames by share of samples, idle waits included (a process waiting in `epoll_wait`/`select` "
        "had nothing to do); raw stacks in `profile/`.",
    ]
    for process, frames in w.extra["profile"].items():
        what = "component" if process.endswith("by component") else "frame"
        out += ["", f"**{process}**", ""]
        out.append(render_table([what, "share"], [[f"`{f}`", f"{s:.1%}"] for f, s in frames], right_align_from=1))
    return "\n".join(out) + "\n"


def machine_table(m: dict[str, Any]) -> str:
    rows = [
        ["CPU", f"{m['cpu_model']}, {m['usable_cpus']} usable of {m['logical_cpus']}"],
        ["memory", f"{m['memory_gib']:.1f} GiB" if m.get("memory_gib") else "–"],
        ["software", f"Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())],
    ]
    return "### Machine\n\n" + render_table(["", ""], rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from engine.logs import configure_logging

    configure_logging("warning")  # the engine runs in this process: its access logs would drown the progress
    started = time.monotonic()
    result = asyncio.run(run_suite(args))
    for path in write_report(args, result["windows"], argv):
        _log(f"wrote {path}")
    failed = [w for w in result["windows"] if not w.ok]
    _log(f"done in {time.monotonic() - started:.0f} s; {len(failed)} of {len(result['windows'])} windows failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
