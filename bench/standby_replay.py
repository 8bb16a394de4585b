"""A warm standby's replay of a bulk load: CPU per receipt to decode and re-apply journal entries.

    .venv/bin/python -m bench.standby_replay --receipts 102400 --rounds 3
    .venv/bin/python -m bench.standby_replay --before 7e2550e     # the engine at 7e2550e first, then this checkout
    .venv/bin/python -m bench.standby_replay --profile            # cProfile of one replay, top functions

No server, no Ray, no NATS: a primary ShardCore applies the receipts in ReceiveBulk ops of
RECEIVE_BULK_MAX (200 skus × 10 sites, as bench.bulk_load) and each op's journal entry is
encoded as the JetStream journal encodes it (adapters.nats.codec). What a standby does per
entry (engine.runtime.host: `_catch_up`) is then timed on a fresh core, round by round: decode
the entry and `replay_entry` it (apply, compare the movements with the journal's). "load" is
the first import's entries (every receipt makes a movement); "re-run" the same file imported
again (every receipt answered from the idempotency window, no movement). The young collector's
threshold is the shard host's (`raise_young_threshold`), as in a shard actor.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adapters.nats.codec import decode_entry, encode_entry
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.ports import JournalEntry
from engine.domain.shard import RECEIVE_BULK_MAX, PutSite, PutSku, ReceiveBulk, ShardCore, journaled
from engine.runtime.host import raise_young_threshold, replay_entry

SKUS = 200
SITES = 10
NOW_MS = 1_000


def _catalog(core: ShardCore) -> None:
    core.apply_batch([PutSku(Sku(f"sku-{i}")) for i in range(SKUS)], 0)
    core.apply_batch([PutSite(Site(f"site-{i}")) for i in range(SITES)], 0)
    core.drain()


def _bulk(first: int, last: int) -> ReceiveBulk:
    return ReceiveBulk(
        tuple(
            Receive(
                f"r{i}",
                f"sku-{i % SKUS}",
                f"site-{i // SKUS % SITES}",
                f"L{i}",
                10,
                f"A/{i % 97:02d}",
                "available",
                expires_at_ms=1_900_000_000_000 + i,
            )
            for i in range(first, last)
        )
    )


def journal_of(receipts: int) -> tuple[list[bytes], list[bytes]]:
    """The encoded entries of a primary's bulk load and of its idempotent re-run."""
    primary = ShardCore("s")
    _catalog(primary)
    ops = [_bulk(first, min(first + RECEIVE_BULK_MAX, receipts)) for first in range(0, receipts, RECEIVE_BULK_MAX)]
    entries: list[bytes] = []
    for bulk in [*ops, *ops]:
        primary.apply_batch([bulk], NOW_MS)
        entry = JournalEntry("s", len(entries) + 1, NOW_MS, tuple(journaled(bulk)), tuple(primary.drain()))
        entries.append(encode_entry(entry))
    return entries[: len(ops)], entries[len(ops) :]


def replay(core: ShardCore, entries: list[bytes], first_seq: int) -> float:
    """CPU seconds to decode and replay `entries` onto `core`, as a standby's catch-up does."""
    started = time.process_time()
    for position, data in enumerate(entries, start=first_seq):
        replay_entry(core, decode_entry(data), position, "s")
    return time.process_time() - started


def run(receipts: int, rounds: int) -> None:
    load, rerun = journal_of(receipts)
    raise_young_threshold()
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    print("| round | run | CPU µs/receipt (decode + replay) |\n|---:|---|---:|")
    for n in range(1, rounds + 1):
        core = ShardCore("s")
        _catalog(core)
        gc.collect()
        for name, entries, first in (("load", load, 1), ("re-run", rerun, len(load) + 1)):
            cpu = replay(core, entries, first)
            print(f"| {n} | {name} | {cpu / receipts * 1e6:.1f} |", flush=True)
        del core
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)


def profile(receipts: int) -> None:
    load, _ = journal_of(receipts)
    raise_young_threshold()
    core = ShardCore("s")
    _catalog(core)
    profiler = cProfile.Profile()
    profiler.runcall(replay, core, load, 1)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def run_before(ref: str, argv: list[str]) -> None:
    """This bench over the engine at git `ref` (an export of that commit), in this invocation."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        export = subprocess.run(["git", "-C", str(root), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=export, check=True)
        (Path(tmp) / "bench" / "standby_replay.py").write_bytes(Path(__file__).read_bytes())
        print(f"before: the engine at {ref}", flush=True)
        subprocess.run([sys.executable, "-m", "bench.standby_replay", *argv], cwd=tmp, check=True)
    print("after: this checkout", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receipts", type=int, default=102_400, help="receipts in the bulk load")
    parser.add_argument(
        "--rounds", type=int, default=3, help="replays of the load and the re-run, each on a fresh core"
    )
    parser.add_argument("--before", metavar="GIT_REF", help="first run the same bench over the engine at GIT_REF")
    parser.add_argument("--profile", action="store_true", help="cProfile one replay of the load instead")
    args = parser.parse_args()
    if args.profile:
        profile(args.receipts)
        return
    if args.before:
        run_before(args.before, [a for a in sys.argv[1:] if a not in ("--before", args.before)])
    run(args.receipts, args.rounds)


if __name__ == "__main__":
    main()
