"""CPU per movement of the finance follower's sink, in process: FinanceFeed (business
events → costing → vouchers) over the ClickHouse finance store on an embedded chDB, the
journal batches handed over as the follower hands them (no NATS, so nothing else shares
the process). Read next to `bench.finance` (the lag through a real journal): this is the
part of its CPU that the finance code owns, stable enough on a loaded machine to compare
two checkouts in one invocation.

    .venv/bin/python -m bench.finance_sink                        # 40,000 movements, batches of 1,000
    .venv/bin/python -m bench.finance_sink --compare /path/to/other/checkout --rounds 3

`--compare DIR` runs this same file against DIR's code (a checkout of another commit, e.g.
`git archive main | tar -x -C DIR`) in a subprocess, alternating with this checkout, and
prints each run and the ratio of the medians; then one `--digest` run in each tree (journal
times from a counter): the sha256 of every voucher row (its document byte for byte),
valuation row and checkpoint state row stored must be the same, or it exits 1. Uses only what
both sides have: bench.finance's Writer and SETUP, FinanceFeed(store, setup, rules),
open_finance_store.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _fixed_clock() -> None:
    """Journal times from a counter instead of the wall clock (for --digest): the same
    entries, so the same vouchers, in any checkout and any run."""
    import types

    import bench.finance

    ticks = iter(range(10**9))
    bench.finance.time = types.SimpleNamespace(time=lambda: 1_795_000_000 + next(ticks) / 1000)  # type: ignore[assignment]


def _digesting(store: Any, digest: Any) -> None:
    """Every commit's voucher rows (their documents byte for byte), valuation rows and
    checkpoint state rows (without the write's sequence number, in key order) into `digest`."""
    from adapters.clickhouse.finance import _state_rows, _voucher_row

    commit = store.commit

    async def digested(checkpoint: Any, vouchers: Any, valuations: Any, baselines: Any = ()) -> None:
        for v in vouchers:
            digest.update(repr(_voucher_row(v)).encode())
        for r in valuations:
            digest.update(repr(tuple(r)).encode())
        for kind, key, _, doc in sorted(_state_rows(checkpoint)):  # a set's order: the rows of one insert have none
            digest.update(f"{kind}|{key}|{doc}".encode())
        await commit(checkpoint, vouchers, valuations, baselines)

    store.commit = digested


async def run(movements: int, batch_messages: int, digest: Any = None) -> tuple[float, float]:
    """(µs CPU, µs wall) per movement booked and stored, after a seeding batch; with
    `digest` (a hashlib object), what every commit stores goes into it too (not timed apart)."""
    from adapters.clickhouse.finance import FinanceStoreConfig, open_finance_store
    from adapters.clickhouse.store import chdb_dsn
    from bench.finance import SETUP, Writer
    from engine.domain.ports import FollowedEntry, JournalEntry
    from engine.finance.follower import FinanceFeed
    from engine.finance.mapping import default_rules

    with tempfile.TemporaryDirectory(prefix="lotwise-finance-sink-") as tmp:
        store = await open_finance_store(FinanceStoreConfig(chdb_dsn(Path(tmp) / "chdb"), "sink"))
        if digest is not None:
            _fixed_clock()
            _digesting(store, digest)
        try:
            feed = FinanceFeed(store, SETUP, default_rules())
            writer = Writer(50)
            position = 0

            def followed(entries: list[JournalEntry]) -> tuple[FollowedEntry, ...]:
                nonlocal position
                out = []
                for entry in entries:
                    position += 1
                    out.append(FollowedEntry(position, entry))
                return tuple(out)

            await feed.apply(followed(writer.seed()))
            batches = [
                followed([writer.next() for _ in range(batch_messages)])
                for _ in range(movements // 50 // batch_messages)
            ]
            booked = sum(len(e.entry.movements) for b in batches for e in b)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for b in batches:
                await feed.apply(b)
            return 1e6 * (time.process_time() - cpu0) / booked, 1e6 * (time.perf_counter() - wall0) / booked
        finally:
            await store.close()


def _one(root: Path, movements: int, batch: int, digest: bool = False) -> tuple[float, float, str]:
    """This file run under `root`'s code, in a fresh interpreter (as a module: bench/ holds
    files named like standard modules, so it must not be the first entry of sys.path)."""
    module = "bench.finance_sink"
    if root.resolve() != Path(__file__).resolve().parents[1]:
        shutil.copy(__file__, root / "bench" / "_finance_sink_run.py")
        module = "bench._finance_sink_run"
    env = {**os.environ, "PYTHONPATH": str(root)}
    args = [sys.executable, "-m", module, "--movements", str(movements), "--batch", str(batch), "--raw"]
    args += ["--digest"] if digest else []
    out = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=True)
    cpu, wall, *rest = out.stdout.strip().splitlines()[-1].split()
    return float(cpu), float(wall), rest[0] if rest else ""


def compare(other: Path, movements: int, batch: int, rounds: int) -> int:
    """Alternating runs; then one digest run each (fixed journal times): what the two trees
    store must be the same bytes. Returns 1 when it is not."""
    here = Path(__file__).resolve().parents[1]
    runs: dict[str, list[float]] = {"other": [], "this": []}
    for r in range(rounds):
        for name, root in (("other", other), ("this", here)):
            load = os.getloadavg()[0]
            cpu, wall, _ = _one(root, movements, batch)
            runs[name].append(cpu)
            print(f"round {r + 1} {name:5}: {cpu:6.1f} µs CPU / movement, {wall:6.1f} µs wall (load {load:.1f})")
    a, b = statistics.median(runs["other"]), statistics.median(runs["this"])
    print(f"median: other {a:.1f}, this {b:.1f} µs CPU per movement → this/other = {b / a:.2f}")
    digests = {name: _one(root, movements, batch, digest=True)[2] for name, root in (("other", other), ("this", here))}
    same = digests["other"] == digests["this"]
    other_digest, this_digest = digests["other"][:16], digests["this"][:16]
    print(f"stored vouchers, valuation rows and state, sha256: other {other_digest}, this {this_digest}")
    print("→ the same bytes" if same else "→ DIFFERENT: the two trees do not store the same vouchers")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finance_sink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--movements", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=20, help="journal messages (of 50 movements) per apply")
    parser.add_argument("--compare", type=Path, default=None, help="another checkout to run alternately")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--digest", action="store_true", help="fixed journal times; print the sha256 of what is stored")
    args = parser.parse_args(argv)
    if not 1_000 <= args.movements <= 1_000_000 or not 1 <= args.batch <= 1_000 or not 1 <= args.rounds <= 10:
        parser.error("--movements in [1000, 1e6], --batch in [1, 1000], --rounds in [1, 10]")
    if args.compare is not None:
        return compare(args.compare, args.movements, args.batch, args.rounds)
    digest = hashlib.sha256() if args.digest else None
    cpu, wall = asyncio.run(run(args.movements, args.batch, digest))
    if args.raw:
        print(f"{cpu:.2f} {wall:.2f}" + (f" {digest.hexdigest()}" if digest is not None else ""))
    elif digest is not None:
        print(f"finance sink: stored sha256 {digest.hexdigest()}")
    else:
        load = os.getloadavg()
        print(f"finance sink: {cpu:.1f} µs CPU, {wall:.1f} µs wall per movement; load average {load[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
