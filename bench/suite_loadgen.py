"""The suite's load generator: one process, asyncio, the same for every system.

N closed-loop workers, each taking operations from its own seeded `OrderStream`: hold the
order's lines (FEFO, all or nothing), then commit (70 %) or release (30 %); receipts in
the WMS workload. An order's latency is its hold plus its commit/release. The child tells
the parent when the measured window opens and closes (as bench.loadgen does), and tallies
from acknowledged replies only what the correctness check needs: units committed and
received per pair, and how many operations ended without a known outcome.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench.loadgen import ERROR_PAUSE_S, Window, error_key, run_window
from bench.systems import Pair, Shed, System
from bench.workloads import Op, OrderStream, Shape, units_of

# How a worker places an order: "two-phase" reserve, then commit or release; "sale" one call
# that holds and commits (a POS that has taken payment: every order is sold, none released);
# "batched" two-phase through Lotwise's auto-batching client (concurrent calls share an
# Execute); "lean" two-phase, `batch` orders per round trip (Redis's pipelined driver).
MODES = ("two-phase", "sale", "batched", "lean")
DRAIN_S = 60.0  # after the window, how long workers may take to finish their current order
MAX_REFUSALS_KEPT = 100_000  # refused orders kept for the refusal check (bounded memory)


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """How the child reaches a system (picklable)."""

    kind: str  # "lotwise" | "postgres" | "redis"
    target: str  # gRPC address, DSN or URL
    name: str = ""  # the row's label, e.g. "redis-aof-always"
    mode: str = "two-phase"  # see MODES
    token: str = ""  # Lotwise: the bearer token (auth is on, as `lotwise up` runs it)


@dataclass(frozen=True, slots=True)
class SuiteJob:
    system: SystemSpec
    shape: Shape
    tag: str  # the dataset's tag: its sites, and unique hold ids
    seed: int
    concurrency: int
    duration_s: float
    warmup_s: float
    first_worker: int = 0  # with several load-generator processes, each runs its own slice of workers
    batch: int = 1  # > 1: the lean driver — each worker sends this many orders per round trip


@dataclass(slots=True)
class SuiteResult:
    orders: int = 0  # held and then committed or released, inside the window
    refused: int = 0  # refused for stock (all or nothing: nothing held), inside the window
    receipts: int = 0
    lines: int = 0  # lines of the orders counted in `orders`
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)  # every order and refusal in the window
    hold_latencies_ns: list[int] = field(default_factory=list)  # the reserve (or sale) call alone
    cpu_s: float = 0.0
    window_s: float = 0.0
    abandoned_workers: int = 0
    # For the correctness check: every acknowledged reply, window or not.
    committed: dict[Pair, int] = field(default_factory=dict)
    received: dict[Pair, int] = field(default_factory=dict)
    unknown_outcomes: int = 0  # an op failed after it may have been applied
    shed: int = 0  # orders the system refused for load at their first call, nothing applied (in the window)
    refusals: list[tuple[tuple[Pair, int], ...]] = field(default_factory=list)  # refused orders' lines (bounded)

    def error(self, key: str, detail: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{key}: {detail}"[:300])


def merge(results: list[SuiteResult]) -> SuiteResult:
    """The results of one window's load-generator processes, as one."""
    out = SuiteResult(window_s=max(r.window_s for r in results))
    for r in results:
        out.orders += r.orders
        out.refused += r.refused
        out.receipts += r.receipts
        out.lines += r.lines
        out.cpu_s += r.cpu_s
        out.abandoned_workers += r.abandoned_workers
        out.unknown_outcomes += r.unknown_outcomes
        out.shed += r.shed
        out.latencies_ns.extend(r.latencies_ns)
        out.hold_latencies_ns.extend(r.hold_latencies_ns)
        out.refusals.extend(r.refusals[: MAX_REFUSALS_KEPT - len(out.refusals)])
        out.first_errors.extend(r.first_errors[: 5 - len(out.first_errors)])
        for key, n in r.errors.items():
            out.errors[key] = out.errors.get(key, 0) + n
        _add(out.committed, r.committed)
        _add(out.received, r.received)
    return out


def make_system(spec: SystemSpec, pool_size: int) -> System:
    match spec.kind:
        case "lotwise":
            from bench.peers.lotwise import LotwiseSystem

            return LotwiseSystem(spec.target, batched=spec.mode == "batched", token=spec.token)
        case "postgres":
            from bench.peers.postgres import PostgresSystem

            return PostgresSystem(spec.target, pool_size)
        case "redis":
            from bench.peers.redis_peer import RedisSystem

            return RedisSystem(spec.target, pool_size, spec.name or "redis")
    raise ValueError(f"unknown system kind {spec.kind!r}")


def _add(tally: dict[Pair, int], units: dict[Pair, int]) -> None:
    for pair, qty in units.items():
        tally[pair] = tally.get(pair, 0) + qty


async def place(system: System, mode: str, hold_id: str, op: Op, committed: dict[Pair, int]) -> tuple[bool, int]:
    """One order as `mode` places it: (held or sold, ns the hold or sale call took). The
    units of an acknowledged commit or sale go into `committed` (what the check expects to
    have left stock); a refused order, a release or a failed call adds nothing."""
    started = time.perf_counter_ns()
    if mode == "sale":
        sold: bool = await system.sell(hold_id, op.lines)  # type: ignore[attr-defined]
        took = time.perf_counter_ns() - started
        if sold:
            _add(committed, units_of(op.lines))
        return sold, took
    held = await system.reserve(hold_id, op.lines)
    took = time.perf_counter_ns() - started
    if held and op.commit:
        await system.commit(hold_id)
        _add(committed, units_of(op.lines))
    elif held:
        await system.release(hold_id)
    return held, took


async def run_job(job: SuiteJob, conn: Connection) -> SuiteResult:
    result = SuiteResult()
    system = make_system(job.system, job.concurrency)
    opener = getattr(system, "open", None)
    if opener is not None:
        await opener()
    try:
        window = Window(job.warmup_s, job.duration_s)

        def worker(index: int) -> Any:
            stream = OrderStream(job.shape, job.tag, job.seed, index)

            async def loop() -> None:
                n = 0
                while window.open(time.perf_counter_ns()):
                    n += 1
                    op = stream.next()
                    started = time.perf_counter_ns()
                    stage = "hold"
                    try:
                        if op.receipt is not None:
                            sku, site, lot = op.receipt
                            stage = "receipt"
                            await system.receive(sku, site, lot)
                            _add(result.received, {(sku, site): lot.qty})
                            if window.counts(started, time.perf_counter_ns()):
                                result.receipts += 1
                            continue
                        stage = "sale" if job.system.mode == "sale" else "order"
                        hold_id = f"{job.tag}-w{index}-{n}"
                        held, hold_ns = await place(system, job.system.mode, hold_id, op, result.committed)
                    except Shed:
                        if window.counts(started, time.perf_counter_ns()):
                            result.shed += 1
                        await asyncio.sleep(ERROR_PAUSE_S)
                        continue
                    except Exception as exc:
                        # The op may or may not have been applied: the stock check cannot
                        # account for it, so it is counted (and the run reported failed).
                        result.unknown_outcomes += 1
                        if window.counts(started, time.perf_counter_ns()):
                            result.error(f"{stage}:{error_key(exc)}", str(exc))
                        await asyncio.sleep(ERROR_PAUSE_S)
                        continue
                    ended = time.perf_counter_ns()
                    if not window.counts(started, ended):
                        continue
                    result.latencies_ns.append(ended - started)
                    result.hold_latencies_ns.append(hold_ns)
                    if held:
                        result.orders += 1
                        result.lines += len(op.lines)
                    else:
                        result.refused += 1
                        if len(result.refusals) < MAX_REFUSALS_KEPT:
                            result.refusals.append(tuple(units_of(op.lines).items()))

            return loop

        def lean_worker(index: int) -> Any:
            """B orders per round trip (`reserve_many`, `finish_many`): the same scripts and
            checks, much less client CPU per order. An order's latency is its batch's."""
            stream = OrderStream(job.shape, job.tag, job.seed, index)

            async def loop() -> None:
                n = 0
                while window.open(time.perf_counter_ns()):
                    ops = [stream.next() for _ in range(job.batch)]
                    ids = [f"{job.tag}-w{index}-{n + i + 1}" for i in range(len(ops))]
                    n += len(ops)
                    started = time.perf_counter_ns()
                    try:
                        held = await system.reserve_many([(i, op.lines) for i, op in zip(ids, ops, strict=True)])  # type: ignore[attr-defined]
                        held_at = time.perf_counter_ns()
                        done = [(i, op) for i, op, h in zip(ids, ops, held, strict=True) if h]
                        await system.finish_many(  # type: ignore[attr-defined]
                            [i for i, op in done if op.commit], [i for i, op in done if not op.commit]
                        )
                    except Exception as exc:
                        result.unknown_outcomes += len(ops)
                        if window.counts(started, time.perf_counter_ns()):
                            result.error(f"batch:{error_key(exc)}", str(exc))
                        await asyncio.sleep(ERROR_PAUSE_S)
                        continue
                    for _, op in done:
                        if op.commit:
                            _add(result.committed, units_of(op.lines))
                    ended = time.perf_counter_ns()
                    if not window.counts(started, ended):
                        continue
                    result.latencies_ns.extend([ended - started] * len(ops))
                    result.hold_latencies_ns.extend([held_at - started] * len(ops))
                    result.orders += len(done)
                    result.lines += sum(len(op.lines) for _, op in done)
                    result.refused += len(ops) - len(done)
                    for op, h in zip(ops, held, strict=True):
                        if not h and len(result.refusals) < MAX_REFUSALS_KEPT:
                            result.refusals.append(tuple(units_of(op.lines).items()))

            return loop

        make = worker if job.batch <= 1 else lean_worker
        workers = [make(job.first_worker + i) for i in range(job.concurrency)]
        await run_window(conn, window, workers, result, DRAIN_S)  # type: ignore[arg-type]
        # A worker cut off after DRAIN_S was inside an operation whose outcome nobody saw.
        result.unknown_outcomes += result.abandoned_workers
        if result.abandoned_workers:
            result.error(
                "abandoned", f"{result.abandoned_workers} workers still waiting {DRAIN_S:.0f} s after the window"
            )
    finally:
        await system.close()
    return result


def serve(conn: Connection) -> None:
    """The child's main loop: one job at a time until it receives None (or the pipe closes)."""
    from engine.logs import configure_logging

    configure_logging("warning")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = asyncio.run(run_job(job, conn))
        except Exception as exc:  # tell the parent instead of dying silently
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("result", result))
