"""CPU per thread name of each sampled process between two wall times (threadcpu.py's file).

    python threadsum.py THREADS.jsonl START_HH:MM:SS END_HH:MM:SS [orders]

Prints, per process, CPU ms and voluntary context switches per thread name over the window
(and per order when `orders` is given)."""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
import os
import sys


def _at(day: dt.date, hms: str) -> float:
    t = dt.datetime.combine(day, dt.time.fromisoformat(hms), tzinfo=dt.UTC)
    return t.timestamp()


def main() -> None:
    path, start, end = sys.argv[1], sys.argv[2], sys.argv[3]
    orders = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        rows = [json.loads(line) for line in f]
    day = dt.datetime.fromtimestamp(rows[0]["t"], dt.UTC).date()
    t0, t1 = _at(day, start), _at(day, end)
    a = min(rows, key=lambda r: abs(r["t"] - t0))
    b = min(rows, key=lambda r: abs(r["t"] - t1))
    span = b["t"] - a["t"]
    hz = os.sysconf("SC_CLK_TCK")
    print(f"window {span:.1f} s")
    for pid, proc in b["procs"].items():
        before = a["procs"].get(pid)
        if before is None:
            continue
        cpu: collections.Counter[str] = collections.Counter()
        sw: dict[str, int] = collections.Counter()
        n: dict[str, int] = collections.Counter()
        sys_: collections.Counter[str] = collections.Counter()
        for tid, (comm, ticks, vol, *stime) in proc["threads"].items():
            old = before["threads"].get(tid, [comm, 0, 0, 0])
            cpu[comm] += (ticks - old[1]) * 1000 / hz
            if stime and len(old) > 3:
                sys_[comm] += (stime[0] - old[3]) * 1000 / hz
            sw[comm] += vol - old[2]
            n[comm] += 1
        total = sum(cpu.values())
        print(
            f"pid {pid} {proc['cmd'][:50]!r}: {total:.0f} ms CPU = {total / span / 1000:.2f} cores"
            + (f", {total / orders:.3f} ms/order" if orders else "")
        )
        for comm, ms in sorted(cpu.items(), key=lambda kv: -kv[1]):
            if ms == 0 and sw[comm] == 0:
                continue
            per = f" {ms / orders:.3f} ms/order" if orders else ""
            switches = f"vol.switches {sw[comm]:>7} ({sw[comm] / span:.0f}/s)"
            print(f"   {comm:<22} x{n[comm]:<3} {ms:8.0f} ms (sys {sys_[comm]:.0f}){per}  {switches}")


if __name__ == "__main__":
    main()
