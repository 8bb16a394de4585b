"""The in-process engine a bench drives from another process: `with server_process() as (pid, port)`.

The server runs in its own process so the bench's load (client CPU) and the server's CPU are
measured apart (psutil on `pid`). In-process shards over an in-memory journal: the write path
without Ray and fsync, which is what the wire, overload and bulk-load benches compare.

    python -m bench.served PORT_FILE [DOOR_MAX_COST]   # serve until killed; writes the port to PORT_FILE
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from engine import bootstrap
from engine.api.admission import AdmissionLimits
from engine.api.server import start_server
from engine.logs import configure_logging

START_TIMEOUT_S = 30.0


async def serve(port_file: Path, max_cost: int = 0) -> None:
    configure_logging("warning")  # as an operator runs it: no per-call lines
    gateway = bootstrap.local_gateway(shards=2)
    # max_cost > 0: the door's cost bound (bench/overload.py --door-max-cost); else its defaults.
    admission = AdmissionLimits(max_cost=max_cost) if max_cost > 0 else None
    server, _ = await start_server(gateway, "127.0.0.1", 0, admin=gateway, admission=admission)
    await asyncio.to_thread(port_file.write_text, str(server.port))
    try:
        await asyncio.Event().wait()  # until killed
    finally:
        await server.stop(grace_s=0.5)
        await gateway.close()


@contextlib.contextmanager
def server_process(max_cost: int = 0) -> Iterator[tuple[int, int]]:
    """Start the server process; yield (its pid, its gRPC port); terminate it on the way out.
    `max_cost` > 0 sets the door's cost bound (engine.api.admission), else its default."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([sys.executable, "-m", "bench.served", str(port_file), str(max_cost)])
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bench server did not start")
                time.sleep(0.05)
            yield proc.pid, int(port_file.read_text())
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m bench.served PORT_FILE [DOOR_MAX_COST]")
    asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 0))
