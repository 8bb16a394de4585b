"""One row per bench.core run directory and concurrency: orders/s, p50, CPU ms per order by
process group, and the load average at the run's start (load.txt).

    python table.py DIR...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    print("| run | load at start | conc | orders/s | p50 ms | ray_shards ms/order | engine | nats | total |")
    print("| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in sys.argv[1:]:
        run = Path(name)
        core = run / "core.json"
        if not core.exists():
            continue
        load = (run / "load.txt").read_text().split("\n")[0].split()[2:5]
        for w in json.loads(core.read_text())["windows"]:
            if w["kind"] != "lotwise":
                continue
            cpu, ops = w["cpu_s"], w["ops"]
            per = {k: 1000 * v / ops for k, v in cpu.items()}
            print(
                f"| {run.name} | {' '.join(load)} | {w['concurrency']} | {w['ops_per_s']:.0f} | "
                f"{w['latency']['p50_ms']:.2f} | {per['ray_shards']:.2f} | {per['engine']:.2f} | "
                f"{per['nats']:.2f} | {sum(per.values()):.2f} |"
            )


if __name__ == "__main__":
    main()
