"""The load generator: a separate process that drives the engine over real gRPC.

It runs apart from the engine process so that the client's CPU (protobuf encoding,
its own gRPC stack) is neither charged to the engine nor contending for the engine's
GIL; both still share the machine's cores, which the report says.

The parent sends one job at a time over a multiprocessing pipe; the child answers
("start",) when its measured window opens (after the warm-up), ("end",) when it closes,
and then ("result", JobResult). The parent samples the CPU of the engine and Ray
processes at those two messages, so every process group is measured over the same window.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

Pair = tuple[str, str]

CALL_TIMEOUT_S = 10.0  # per RPC; a call slower than this is an error, not a latency sample
ERROR_PAUSE_S = 0.01  # after a failed op, so a broken engine is not hammered in a tight loop


@dataclass(frozen=True, slots=True)
class OrderJob:
    """Reserve (1..max_lines lines, FEFO) → Commit, in `concurrency` closed loops."""

    address: str
    concurrency: int
    duration_s: float
    warmup_s: float
    pairs: tuple[Pair, ...]
    tag: str  # makes request and hold ids unique across jobs and rounds
    seed: int
    max_lines: int = 3
    max_qty: int = 3
    token_file: str | None = None  # the engine's admin token (auth is on by default)
    ttl_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class HealthJob:
    """grpc.health.v1.Health/Check with service "" in `concurrency` closed loops (the empty-RPC ceiling)."""

    address: str
    concurrency: int
    duration_s: float
    warmup_s: float


@dataclass(slots=True)
class JobResult:
    ops: int = 0
    lines: int = 0
    qty_requested: int = 0
    qty_committed: int = 0  # as the Commit replies report it, inside the window
    qty_committed_all: int = 0  # every successful Commit of the job, warm-up and drain included
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)  # the first few messages, for the report
    latencies_ns: list[int] = field(default_factory=list)
    reserve_ns: list[int] = field(default_factory=list)  # orders only: the Reserve call alone
    commit_ns: list[int] = field(default_factory=list)  # orders only: the Commit call alone
    window_s: float = 0.0
    cpu_s: float = 0.0  # this process, over the window (resource.getrusage)
    abandoned_workers: int = 0  # workers still in a call when the drain time ran out

    def error(self, key: str, message: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{key}: {message[:300]}")


def error_key(exc: BaseException) -> str:
    """A stable name for an error: the gRPC / domain status code and the exception type."""
    code: Any = getattr(exc, "code", None)
    if callable(code):
        try:
            code = code()
        except Exception:
            code = None
    name = getattr(code, "name", code)
    return f"{name} {type(exc).__name__}" if isinstance(name, str) else type(exc).__name__


def _cpu_self_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


class Window:
    """The measured window, shared by the workers of one job: [t0, t1] in perf_counter_ns."""

    def __init__(self, warmup_s: float, duration_s: float) -> None:
        now = time.perf_counter_ns()
        self.t0_ns = now + int(warmup_s * 1e9)
        self.t1_ns = self.t0_ns + int(duration_s * 1e9)

    def open(self, now_ns: int) -> bool:
        return now_ns < self.t1_ns

    def counts(self, started_ns: int, ended_ns: int) -> bool:
        """An op counts when it both started and finished inside the window."""
        return started_ns >= self.t0_ns and ended_ns <= self.t1_ns


async def run_window(
    conn: Connection,
    window: Window,
    workers: list[Callable[[], Coroutine[Any, Any, None]]],
    result: JobResult,
    drain_s: float,
) -> None:
    """Run the workers, telling the parent when the window opens and closes."""
    tasks = [asyncio.create_task(w()) for w in workers]
    await asyncio.sleep(max(window.t0_ns - time.perf_counter_ns(), 0) / 1e9)
    cpu0 = _cpu_self_s()
    conn.send(("start",))
    await asyncio.sleep(max(window.t1_ns - time.perf_counter_ns(), 0) / 1e9)
    cpu1 = _cpu_self_s()
    conn.send(("end",))
    result.cpu_s = cpu1 - cpu0
    result.window_s = (window.t1_ns - window.t0_ns) / 1e9
    # Workers stop on their own after their current op; bound the wait anyway.
    _done, pending = await asyncio.wait(tasks, timeout=drain_s)
    result.abandoned_workers = len(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_orders(job: OrderJob, conn: Connection) -> JobResult:
    from engine.api.client import NO_RETRY, LotwiseClient
    from engine.domain.commands import ReserveLine, Strategy
    from engine.runtime.types import HoldLine

    result = JobResult()
    rng = random.Random(job.seed)
    # The bench wants to see every refusal, so the client does not retry (NO_RETRY).
    token_file = Path(job.token_file) if job.token_file else None
    async with LotwiseClient(job.address, timeout_s=CALL_TIMEOUT_S, retry=NO_RETRY, token_file=token_file) as client:
        await client.wait_ready(CALL_TIMEOUT_S)
        window = Window(job.warmup_s, job.duration_s)

        def worker(index: int) -> Callable[[], Coroutine[Any, Any, None]]:
            async def loop() -> None:
                n = 0
                while window.open(time.perf_counter_ns()):
                    n += 1
                    hold_id = f"{job.tag}-w{index}-{n}"
                    chosen = rng.sample(job.pairs, rng.randint(1, min(job.max_lines, len(job.pairs))))
                    lines = [
                        HoldLine(sku, site, ReserveLine(rng.randint(1, job.max_qty), Strategy.FEFO))
                        for sku, site in chosen
                    ]
                    requested = sum(hl.line.qty for hl in lines)
                    started = time.perf_counter_ns()
                    try:
                        hold = await client.reserve(lines, job.ttl_ms, hold_id=hold_id, request_id=hold_id)
                        reserved = time.perf_counter_ns()
                        done = await client.commit(hold_id, request_id=f"{hold_id}:c")
                    except Exception as exc:
                        ended = time.perf_counter_ns()
                        if window.counts(started, ended):
                            result.error(error_key(exc), str(exc))
                        await asyncio.sleep(ERROR_PAUSE_S)
                        continue
                    ended = time.perf_counter_ns()
                    result.qty_committed_all += done.committed_qty
                    if not window.counts(started, ended):
                        continue
                    if hold.held_qty != requested or done.committed_qty != requested:
                        result.error(
                            "WRONG_QTY",
                            f"{hold_id}: requested {requested}, held {hold.held_qty}, committed {done.committed_qty}",
                        )
                        continue
                    result.ops += 1
                    result.lines += len(lines)
                    result.qty_requested += requested
                    result.qty_committed += done.committed_qty
                    result.latencies_ns.append(ended - started)
                    result.reserve_ns.append(reserved - started)
                    result.commit_ns.append(ended - reserved)

            return loop

        await run_window(
            conn, window, [worker(i) for i in range(job.concurrency)], result, drain_s=2 * CALL_TIMEOUT_S + 5
        )
    return result


async def run_health(job: HealthJob, conn: Connection) -> JobResult:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    result = JobResult()
    async with grpc.aio.insecure_channel(job.address) as channel:
        await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        window = Window(job.warmup_s, job.duration_s)

        async def loop() -> None:
            while window.open(time.perf_counter_ns()):
                started = time.perf_counter_ns()
                try:
                    # types-grpcio-health-checking declares HealthStub without its RPC attributes.
                    await stub.Check(request, timeout=CALL_TIMEOUT_S)  # type: ignore[attr-defined]
                except Exception as exc:
                    ended = time.perf_counter_ns()
                    if window.counts(started, ended):
                        result.error(error_key(exc), str(exc))
                    await asyncio.sleep(ERROR_PAUSE_S)
                    continue
                ended = time.perf_counter_ns()
                if window.counts(started, ended):
                    result.ops += 1
                    result.latencies_ns.append(ended - started)

        await run_window(conn, window, [loop for _ in range(job.concurrency)], result, drain_s=CALL_TIMEOUT_S + 5)
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
            if isinstance(job, OrderJob):
                result = asyncio.run(run_orders(job, conn))
            elif isinstance(job, HealthJob):
                result = asyncio.run(run_health(job, conn))
            else:
                raise TypeError(f"unknown job {type(job).__name__}")
        except Exception as exc:  # tell the parent instead of dying silently
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("result", result))
