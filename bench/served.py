"""The in-process engine a bench drives from another process: `with server_process() as (pid, port)`.

The server runs in its own process so the bench's load (client CPU) and the server's CPU are
measured apart (psutil on `pid`). In-process shards over an in-memory journal: the write path
without Ray and fsync, which is what the wire, overload and bulk-load benches compare.
`served_process()` also gives the port of the server's Prometheus metrics (the door's
wire-wait and admitted-time histograms), which bench/overload.py reads before and after a row.

    python -m bench.served PORT_FILE [DOOR_MAX_COST [WIRE_MAX_WAIT_MS]]   # until killed; writes "PORT METRICS_PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import start_http_server

from engine import bootstrap
from engine.api.admission import AdmissionLimits
from engine.api.server import start_server
from engine.logs import configure_logging

START_TIMEOUT_S = 30.0


def door_limits(max_cost: int = 0, wire_max_wait_ms: float | None = None) -> AdmissionLimits | None:
    """The door's bounds: max_cost > 0 sets its cost bound (bench/overload.py --door-max-cost),
    `wire_max_wait_ms` its cap on the wait before it (0: none, as before issue 19's cap);
    None when both are the defaults (start_server's own)."""
    base = AdmissionLimits()
    limits = AdmissionLimits(
        max_cost=max_cost if max_cost > 0 else base.max_cost,
        wire_max_wait_ms=base.wire_max_wait_ms if wire_max_wait_ms is None else wire_max_wait_ms,
    )
    return None if limits == base else limits


async def serve(port_file: Path, max_cost: int = 0, wire_max_wait_ms: float | None = None) -> None:
    configure_logging("warning")  # as an operator runs it: no per-call lines
    gateway = bootstrap.local_gateway(shards=2)
    admission = door_limits(max_cost, wire_max_wait_ms)
    server, _ = await start_server(gateway, "127.0.0.1", 0, admin=gateway, admission=admission)
    # The default registry (the door's metrics), from a thread of its own: scraping it
    # costs the event loop nothing.
    metrics_server, _thread = start_http_server(0, "127.0.0.1")
    await asyncio.to_thread(port_file.write_text, f"{server.port} {metrics_server.server_port}")
    try:
        await asyncio.Event().wait()  # until killed
    finally:
        await server.stop(grace_s=0.5)
        await gateway.close()


@dataclass(frozen=True, slots=True)
class Served:
    pid: int
    port: int  # gRPC
    metrics_port: int  # Prometheus text format on http://127.0.0.1:<it>/metrics


@contextlib.contextmanager
def server_process(max_cost: int = 0) -> Iterator[tuple[int, int]]:
    """Start the server process; yield (its pid, its gRPC port); terminate it on the way out.
    `max_cost` > 0 sets the door's cost bound (engine.api.admission), else its default."""
    with served_process(max_cost) as served:
        yield served.pid, served.port


@contextlib.contextmanager
def served_process(max_cost: int = 0, wire_max_wait_ms: float | None = None) -> Iterator[Served]:
    """`server_process`, with the port of the server's metrics too; `wire_max_wait_ms` as
    `door_limits` takes it."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        args = [str(port_file), str(max_cost), *([] if wire_max_wait_ms is None else [str(wire_max_wait_ms)])]
        proc = subprocess.Popen([sys.executable, "-m", "bench.served", *args])
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bench server did not start")
                time.sleep(0.05)
            port, metrics_port = (int(word) for word in port_file.read_text().split())
            yield Served(proc.pid, port, metrics_port)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.served",
        description="Serve an in-process engine (in-memory journal, no Ray) for another bench process "
        "until killed; writes 'PORT METRICS_PORT' to PORT_FILE once it serves.",
    )
    parser.add_argument("port_file", type=Path, help="where the gRPC and metrics ports are written")
    parser.add_argument("door_max_cost", type=int, nargs="?", default=0, help="the door's cost bound (0: its default)")
    parser.add_argument("wire_max_wait_ms", type=float, nargs="?", default=None, help="the door's wire-wait bound")
    args = parser.parse_args(argv)
    if args.door_max_cost < 0:
        parser.error("door_max_cost must be ≥ 0")
    asyncio.run(serve(args.port_file, args.door_max_cost, args.wire_max_wait_ms))


if __name__ == "__main__":
    main()
