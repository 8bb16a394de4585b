"""The replenishment trigger's first look at many pairs after a bulk import (issues 14 and 12).

    scripts/in-netns nice -n 5 .venv/bin/python -m bench.replenish_import --skus 2000 --sites 10

An embedded engine as users run it (`engine.bootstrap.running_engine`, every follower on, as
bench.suite's LotwiseEngine starts it) receives `--skus` × `--sites` pairs × 3 lots through
`gateway.receive_bulk` (bench.peers.lotwise.seed, as `lotwise import` loads). Every pair's
receipt moves its position, so the trigger takes a first look at each. Timed: the import,
then until every journal follower has caught up, then until the trigger is idle. CPU is the
engine process's and its children's (shards, NATS, history), user + system. The row to read
is `after import → trigger idle`: CPU s per pair of the work the import leaves behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import REGISTRY

from bench.peers import lotwise
from bench.workloads import dataset, shape


def cpu_s(me: psutil.Process) -> float:
    """CPU seconds (user + system) of this process and every live child."""
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += sum(child.cpu_times()[:2])
    return total


def recomputed() -> float:
    return REGISTRY.get_sample_value("lotwise_replenish_pairs_recomputed_total") or 0.0


async def run(skus: int, sites: int, tmp: Path) -> dict[str, Any]:
    from engine.bootstrap import running_engine
    from engine.settings import Settings

    settings = Settings(
        port=0,
        metrics_port=0,
        shards=2,
        namespace=f"bench-import-{time.strftime('%Y%m%d%H%M%S')}",
        data_dir=tmp / "lotwise",
        log_level="warning",
    )
    data = dataset(shape("pos-deep", skus, sites), f"imp{os.getpid()}", seed=1)
    me = psutil.Process()
    async with running_engine(settings) as engine:
        followers = lotwise.journal_followers(engine)
        trigger = next(f.sink for f in followers if getattr(f.sink, "name", "") == "replenishment")
        marks = [("start", time.perf_counter(), cpu_s(me), recomputed())]
        await lotwise.seed(engine.gateway, data)
        marks.append(("import done", time.perf_counter(), cpu_s(me), recomputed()))
        await asyncio.gather(*(f.wait_caught_up(1800) for f in followers))
        marks.append(("followers caught up", time.perf_counter(), cpu_s(me), recomputed()))
        await asyncio.wait_for(trigger.idle(), 1800)
        marks.append(("trigger idle", time.perf_counter(), cpu_s(me), recomputed()))
    pairs = len(data.pairs)
    phases: list[dict[str, Any]] = []
    for (a, t0, c0, r0), (b, t1, c1, r1) in itertools.pairwise(marks):
        phases.append({"phase": f"{a} → {b}", "wall_s": t1 - t0, "cpu_s": c1 - c0, "recomputed": r1 - r0})
    after: dict[str, Any] = {
        "phase": "import done → trigger idle",
        "wall_s": marks[-1][1] - marks[1][1],
        "cpu_s": marks[-1][2] - marks[1][2],
        "recomputed": marks[-1][3] - marks[1][3],
    }
    phases.append(after)
    for p in phases:
        p["cpu_ms_per_pair"] = p["cpu_s"] * 1000 / pairs
    return {"pairs": pairs, "lots": pairs * 3, "load_avg": os.getloadavg(), "phases": phases}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skus", type=int, default=2_000)
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here too")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lotwise-import-") as tmp:
        result = asyncio.run(run(args.skus, args.sites, Path(tmp)))
    result["load_avg_before"] = load
    print(f"{result['pairs']} pairs, {result['lots']} lots; load average {load[0]:.1f} → {result['load_avg'][0]:.1f}")
    print(f"{'phase':<44} {'wall s':>8} {'CPU s':>8} {'CPU ms/pair':>12} {'recomputed':>11}")
    for ph in result["phases"]:
        print(
            f"{ph['phase']:<44} {ph['wall_s']:8.2f} {ph['cpu_s']:8.2f} {ph['cpu_ms_per_pair']:12.3f}"
            f" {ph['recomputed']:11.0f}"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
