"""One line per orders window of bench.core runs: orders/s, p50/p99, CPU per order by group,
shard calls and ops per order. Usage: python summarize_core.py core-*/core.json"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(path: Path) -> list[str]:
    rows = []
    for w in json.loads(path.read_text())["windows"]:
        if w["kind"] != "lotwise":
            continue
        n, cpu, extra = w["ops"], w["cpu_s"], w["extra"]
        rows.append(
            f"{path.parent.name:12s} c={w['concurrency']:<3d} orders/s={w['ops_per_s']:7.1f} "
            f"p50={w['latency']['p50_ms']:6.1f} p99={w['latency']['p99_ms']:6.1f} "
            f"engine={1000 * cpu['engine'] / n:.2f} shards={1000 * cpu['ray_shards'] / n:.2f} "
            f"nats={1000 * cpu['nats'] / n:.2f} ms/order calls/order={extra['shard_batches'] / n:.2f} "
            f"ops/order={extra['shard_ops'] / n:.2f} errors={w['errors']}"
        )
    return rows


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print("\n".join(summarize(Path(arg))))
