"""Per-thread CPU of the shard processes (and the engine), sampled from /proc.

    python threadcpu.py OUT.jsonl [interval_s]

Every `interval_s` it appends one line: {"t": wall time, "procs": {pid: {"cmd": ..,
"threads": {tid: [comm, utime+stime ticks, voluntary switches, stime ticks]}}}} for every
process whose command line names
ShardActor (Ray's `ray::ShardActor`) or bench.core. `summarize` (below) turns two
timestamps into CPU ms per thread name."""

from __future__ import annotations

import json
import os
import sys
import time


def _procs() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ShardActor" not in cmd and "bench.core" not in cmd:
            continue
        threads: dict[str, list[object]] = {}
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                # [name, user+system ticks, voluntary switches, system ticks]
                threads[tid] = [comm, int(fields[11]) + int(fields[12]), 0, int(fields[12])]
                try:
                    with open(f"/proc/{pid}/task/{tid}/status") as f:
                        st = f.read()
                    vol = int(st.split("voluntary_ctxt_switches:")[1].split()[0])
                    threads[tid][2] = vol
                except (OSError, IndexError, ValueError):
                    pass
        except OSError:
            continue
        out[pid] = {"cmd": cmd[:80], "threads": threads}
    return out


def main() -> None:
    path, interval = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    with open(path, "a") as f:
        while True:
            f.write(json.dumps({"t": time.time(), "procs": _procs()}) + "\n")
            f.flush()
            time.sleep(interval)


if __name__ == "__main__":
    main()
