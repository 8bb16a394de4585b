"""What durability costs: the core benchmark with the durable journal and with the in-memory
one, in the same run, rounds interleaved (the machine drifts between runs).

    scripts/in-netns .venv/bin/python -m bench.journal_cost --concurrency 1,16,64 --duration-s 8 --rounds 3

Each round starts an engine with the embedded JetStream journal (every batch appended and
fsynced before its replies), runs the Reserve → Commit windows, stops it, then does the same
with the in-memory journal. The table gives medians over rounds and the difference, which
is what the durable ack costs. Writes bench/results/<date>/journal_cost/journal_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import core, report

JOURNALS = ("nats", "memory")
METRICS = ("ops_per_s", "p50_ms", "p99_ms")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.journal_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated worker counts")
    p.add_argument("--duration-s", type=float, default=8.0, help="measured window per concurrency")
    p.add_argument("--rounds", type=int, default=3, choices=range(1, 11), metavar="1..10", help="interleaved repeats")
    p.add_argument(
        "--out", type=Path, default=Path("bench/results") / dt.date.today().isoformat() / "journal_cost", help="output"
    )
    return p.parse_args(argv)


def order_rows(result: dict[str, Any]) -> dict[int, dict[str, float]]:
    """The Reserve → Commit rows of one core run, by concurrency."""
    return {
        row.concurrency: {m: getattr(row, m).median for m in METRICS}
        for row in result["aggregate"]
        if row.kind == "lotwise"
    }


def median_table(samples: dict[str, list[dict[int, dict[str, float]]]]) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for journal, rounds in samples.items():
        levels = sorted({c for r in rounds for c in r})
        out[journal] = {c: {m: statistics.median(r[c][m] for r in rounds if c in r) for m in METRICS} for c in levels}
    return out


def markdown(table: dict[str, dict[int, dict[str, float]]], rounds: int, machine: str) -> str:
    lines = [
        f"Durable vs in-memory journal, medians of {rounds} interleaved rounds; {machine}",
        "",
        "| concurrency | orders/s durable | orders/s in-memory | p50 ms durable | p50 ms in-memory "
        "| p99 ms durable | p99 ms in-memory | p99 cost of the durable ack (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(table["nats"]):
        d, m = table["nats"][c], table["memory"][c]
        lines.append(
            f"| {c} | {d['ops_per_s']:,.0f} | {m['ops_per_s']:,.0f} | {d['p50_ms']:.1f} | {m['p50_ms']:.1f} "
            f"| {d['p99_ms']:.1f} | {m['p99_ms']:.1f} | {d['p99_ms'] - m['p99_ms']:+.1f} |"
        )
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    samples: dict[str, list[dict[int, dict[str, float]]]] = {j: [] for j in JOURNALS}
    with tempfile.TemporaryDirectory(prefix="lotwise-journal-cost-") as tmp:
        for round_ in range(args.rounds):
            for journal in JOURNALS:
                core_args = core.parse_args(
                    [
                        "--concurrency",
                        args.concurrency,
                        "--duration-s",
                        str(args.duration_s),
                        "--ceiling-duration-s",
                        "0.5",
                        "--rounds",
                        "1",
                        "--journal",
                        journal,
                        "--out",
                        str(Path(tmp) / f"{journal}-{round_}"),
                    ]
                )
                result = await core.run_benchmark(core_args)
                if result["consistency"].get("ok") is False:
                    raise SystemExit(f"stock check failed with the {journal} journal: {result['consistency']}")
                samples[journal].append(order_rows(result))
                print(f"round {round_ + 1} {journal}: {order_rows(result)}", flush=True)
    return {"samples": samples, "table": median_table(samples)}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    outcome = asyncio.run(run(args))
    machine = report.machine_info()
    machine_line = f"{machine.get('usable_cpus', '?')} CPUs ({machine.get('cpu_model', '?')})"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "journal_cost.json").write_text(json.dumps({"machine": machine, **outcome}, indent=1, default=str))
    text = markdown(outcome["table"], args.rounds, machine_line)
    (args.out / "journal_cost.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
