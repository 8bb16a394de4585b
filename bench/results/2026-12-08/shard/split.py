"""Shard CPU per order split into primaries and standbys (and the asyncio thread's share),
from a run directory's threads.jsonl (threadcpu.py) and its bench.core output.

    python split.py DIR...

The orders windows are found from stderr.txt (each `lotwise c=N` line ends a window of
--duration-s after a 1 s warm-up); primaries are the two shard processes that used the
most CPU over the window, standbys the next two."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import sys
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def _window(rows: list[dict], end: float, seconds: float) -> tuple[dict, dict]:
    a = min(rows, key=lambda r: abs(r["t"] - (end - seconds)))
    b = min(rows, key=lambda r: abs(r["t"] - end))
    return a, b


def _cpu(a: dict, b: dict) -> list[tuple[float, float]]:
    """(process ms, asyncio-thread ms) per shard process, busiest first."""
    out = []
    for pid, proc in b["procs"].items():
        if "Shard" not in proc["cmd"] or pid not in a["procs"]:
            continue
        old = a["procs"][pid]["threads"]
        total = loop = 0.0
        for tid, (comm, ticks, *_rest) in proc["threads"].items():
            ms = (ticks - old.get(tid, [comm, 0])[1]) * 1000 / HZ
            total += ms
            if comm == "ray::IDLE":  # Ray names the actor's asyncio thread so (py-spy: "AsyncIO Thread")
                loop += ms
        out.append((total, loop))
    return sorted(out, reverse=True)


def main() -> None:
    print("| run | conc | orders | primaries ms/order (asyncio thread) | standbys ms/order |")
    print("| :--- | ---: | ---: | ---: | ---: |")
    for name in sys.argv[1:]:
        run = Path(name)
        plain, packed = run / "threads.jsonl", run / "threads.jsonl.gz"
        text = plain.read_text() if plain.exists() else gzip.decompress(packed.read_bytes()).decode()
        rows = [json.loads(line) for line in text.splitlines() if line]
        core = json.loads((run / "core.json").read_text())
        duration = float(core["config"].get("duration_s", 8)) if isinstance(core.get("config"), dict) else 8.0
        day = dt.datetime.fromtimestamp(rows[0]["t"], dt.UTC).date()
        windows = {w["concurrency"]: w for w in core["windows"] if w["kind"] == "lotwise"}
        for line in (run / "stderr.txt").read_text().splitlines():
            m = re.match(r"\[bench.core (\d\d:\d\d:\d\d)\] lotwise\s+c=(\d+)", line)
            if not m:
                continue
            end = dt.datetime.combine(day, dt.time.fromisoformat(m[1]), tzinfo=dt.UTC).timestamp()
            conc = int(m[2])
            orders = windows[conc]["ops"]
            a, b = _window(rows, end, duration)
            scale = windows[conc]["duration_s"] / max(b["t"] - a["t"], 1e-9)  # sampled span → window
            procs = _cpu(a, b)
            prim = sum(p[0] for p in procs[:2]) * scale / orders
            loop = sum(p[1] for p in procs[:2]) * scale / orders
            stand = sum(p[0] for p in procs[2:4]) * scale / orders
            print(f"| {run.name} | {conc} | {orders} | {prim:.2f} ({loop:.2f}) | {stand:.2f} |")


if __name__ == "__main__":
    main()
