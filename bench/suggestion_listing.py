"""One page of replenishment suggestions over many stored ones: the key watch per page
against the suggestion index (issue 17: every console page ≤ 300 ms over 100,000 pairs).

    .venv/bin/python -m bench.suggestion_listing --suggestions 100000 --rounds 3

An embedded nats-server and the real JetStream store (adapters/nats/replenish.py) with
`--suggestions` suggestions over 100 sites, one in ten open, one in 500 flagged, written once.
Then, per round, the same five listings (a page of 50) two ways on the same store:
- per page (before): every key learnt from a fresh key watch of the bucket (meta only),
  then values read one by one in key order until the page is full — what ListSuggestions
  did;
- index (now): `suggestion_entries` a slice at a time (state and flag known from the
  index), then the values of the rows that can be on the page, 16 at a time — what it does.
Printed: wall ms and process CPU ms per listing, and the index's first load once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.nats.replenish import JetStreamReplenishStore, ReplenishStoreConfig, connect_replenish_store
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from bench.stats import percentile
from engine.replenish.store import Panel, Suggestion, pair_of

GiB = 1024**3
PAGE = 50
SLICE = 1_024
READ_AHEAD = 16
WRITERS = 32  # concurrent writes while filling (more time out on a loaded machine)


@dataclass(frozen=True, slots=True)
class Listing:
    name: str
    state: str = ""
    flagged_only: bool = False
    site: str = ""

    def keeps(self, s: Suggestion) -> bool:
        return (
            (not self.state or s.state == self.state)
            and (not self.flagged_only or s.flagged)
            and (not self.site or s.site == self.site)
        )


LISTINGS = (
    Listing("first page"),
    Listing("open", state="open"),
    Listing("flagged (1 in 500)", flagged_only=True),
    Listing("one site", site="SITE-50"),
    Listing("one site, open", state="open", site="SITE-50"),
)


async def fill(store: JetStreamReplenishStore, n: int) -> None:
    gate = asyncio.Semaphore(WRITERS)

    async def put(i: int) -> None:
        state = "open" if i % 10 == 0 else "none"
        s = Suggestion(f"SKU-{i // 100}", f"SITE-{i % 100}", 1, state, i % 40, Panel(), flagged=i % 500 == 0)
        async with gate:
            await store.put_suggestion(s, 0)

    await asyncio.gather(*(put(i) for i in range(n)))


async def per_page(store: JetStreamReplenishStore, listing: Listing) -> int:
    keys = await store._keys("s")  # the key watch the listing made per page
    page = 0
    for key in keys:
        sku, site = pair_of(key)
        if listing.site and site != listing.site:
            continue
        s = await store.get_suggestion(sku, site)
        if s is not None and listing.keeps(s):
            page += 1
            if page > PAGE:
                break
    return page


async def indexed(store: JetStreamReplenishStore, listing: Listing) -> int:
    page, after = 0, ""
    while page <= PAGE:
        entries = await store.suggestion_entries(after, SLICE, listing.site)
        wanted = [pair_of(e.key) for e in entries if e.may_match(listing.state, listing.flagged_only)]
        for start in range(0, len(wanted), READ_AHEAD):
            got = await asyncio.gather(*(store.get_suggestion(k, t) for k, t in wanted[start : start + READ_AHEAD]))
            page += sum(1 for s in got if s is not None and listing.keeps(s))
            if page > PAGE:
                break
        if len(entries) < SLICE:
            break
        after = entries[-1].key
    return min(page, PAGE + 1)


async def timed(call: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    rows = await call()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000, rows


async def run(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nats = EmbeddedNats(EmbeddedNatsConfig(data_dir=Path(tmp) / "nats", max_file_store_bytes=4 * GiB))
        await nats.start()
        store = await connect_replenish_store(ReplenishStoreConfig(url=nats.url, bucket="bench-suggestions"))
        try:
            started = time.perf_counter()
            await fill(store, n)
            print(f"{n:,} suggestions written in {time.perf_counter() - started:.0f} s")
            reader = await connect_replenish_store(ReplenishStoreConfig(url=nats.url, bucket="bench-suggestions"))
            wall, cpu, _ = await timed(lambda: _count(reader))
            print(f"index first load (a fresh process's first listing): {wall:,.0f} ms wall, {cpu:,.0f} ms CPU")
            print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            await report(reader, rounds)
            print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            await reader.close()
        finally:
            await store.close()
            await nats.stop()


async def _count(store: JetStreamReplenishStore) -> int:
    return len(await store.suggestion_entries(limit=1))


async def report(store: JetStreamReplenishStore, rounds: int) -> None:
    print("| listing | rows | per page: wall ms p50 (max) | CPU ms | index: wall ms p50 (max) | CPU ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for listing in LISTINGS:
        before: list[tuple[float, float, int]] = []
        after: list[tuple[float, float, int]] = []
        for _ in range(rounds):  # interleaved: both see the same machine
            before.append(await timed(lambda listing=listing: per_page(store, listing)))  # type: ignore[misc]
            after.append(await timed(lambda listing=listing: indexed(store, listing)))  # type: ignore[misc]
        assert {r for _, _, r in before} == {r for _, _, r in after}, (before, after)
        print(f"| {listing.name} | {min(PAGE, after[0][2])} | {_ms(before)} | {_ms(after)} |", flush=True)


def _ms(samples: list[tuple[float, float, int]]) -> str:
    walls = sorted(w for w, _, _ in samples)
    cpus = sorted(c for _, c, _ in samples)
    return f"{percentile(walls, 50):,.1f} ({walls[-1]:,.1f}) | {percentile(cpus, 50):,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suggestions", type=int, default=100_000, help="suggestions stored (default 100,000)")
    parser.add_argument("--rounds", type=int, default=3, help="times each listing is timed each way (default 3)")
    args = parser.parse_args()
    if args.suggestions < 1 or args.rounds < 1:
        parser.error("--suggestions and --rounds must be 1 or more")
    asyncio.run(run(args.suggestions, args.rounds))


if __name__ == "__main__":
    main()
