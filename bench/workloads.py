"""The suite's workloads: seeded datasets and order streams, the same for every system.

- pos-scarce / pos-deep: 2,000 skus × 10 sites, 3 lots a pair with different expiries
  (lot numbers not in expiry order: FEFO must sort); orders of 1–3 lines over Zipf-skewed
  skus (s = 1.1) at a uniform site, 1–5 units a line; 70 % commit, 30 % release. Scarce:
  50–200 units a lot, hot skus run out and orders are refused (the refusals must be
  right); deep: no order is ever refused (the one to compare throughput on).
- hot-pair: every order on one sku at one site, stock that cannot run out.
- wms-bulk: large holds (20–60 lines over one site's skus) committed, and receipts of
  whole pallets in between (one in four operations).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bench.systems import Dataset, LotSeed, OrderLine, Pair

ZIPF_S = 1.1
COMMIT_SHARE = 0.7
EPOCH_DAY_2027 = 20_819  # 2027-01-01 in days since 1970-01-01: expiries a year or two out
DEEP_QTY = 1_000_000_000  # no run takes a billion units from one lot
WORKLOADS = ("pos-scarce", "pos-deep", "hot-pair", "wms-bulk")


@dataclass(frozen=True, slots=True)
class Shape:
    """A workload's parameters (picklable: the load generator rebuilds the stream from it)."""

    name: str
    skus: int = 2_000
    sites: int = 10
    lots_per_pair: int = 3
    scarce: bool = False
    hot: bool = False
    bulk: bool = False
    min_lines: int = 1
    max_lines: int = 3
    max_qty: int = 5


def shape(name: str, skus: int = 2_000, sites: int = 10) -> Shape:
    match name:
        case "pos-scarce":
            return Shape(name, skus, sites, scarce=True)
        case "pos-deep":
            return Shape(name, skus, sites)
        case "hot-pair":
            return Shape(name, 1, 1, hot=True)
        case "wms-bulk":
            return Shape(name, min(skus, 200), sites, bulk=True, min_lines=20, max_lines=60, max_qty=20)
    raise ValueError(f"unknown workload {name!r} (one of {', '.join(WORKLOADS)})")


def sku_id(i: int) -> str:
    return f"SKU-{i:05d}"


def site_id(j: int, tag: str) -> str:
    return f"S{j:03d}.{tag}"  # the tag makes every run's sites fresh (Lotwise keeps old ones)


def dataset(s: Shape, tag: str, seed: int) -> Dataset:
    """Stock for one run. Lot i of a pair expires on a shuffled day, so the lot numbered
    first is not the first to expire."""
    rng = random.Random(f"{seed}:{s.name}:dataset")
    lots = []
    for i in range(s.skus):
        for j in range(s.sites):
            days = rng.sample(range(30, 700), s.lots_per_pair)  # distinct: FEFO order is total
            seeds = tuple(
                LotSeed(f"L{n + 1}", EPOCH_DAY_2027 + d, rng.randint(50, 200) if s.scarce else DEEP_QTY)
                for n, d in enumerate(days)
            )
            lots.append(((sku_id(i), site_id(j, tag)), seeds))
    return Dataset(f"{s.name}.{tag}", tuple(lots))


class Zipf:
    """Ranks 0..n-1 with P(k) ∝ 1/(k+1)^s, by inverse CDF (bisect over cumulative weights)."""

    def __init__(self, n: int, s: float = ZIPF_S) -> None:
        self._cum = list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cum, rng.random() * self._cum[-1])


@dataclass(frozen=True, slots=True)
class Op:
    """One unit of work: a hold of `lines` then commit (or release), or a receipt."""

    lines: tuple[OrderLine, ...]
    commit: bool = True
    receipt: tuple[str, str, LotSeed] | None = None


class OrderStream:
    """A worker's deterministic stream of operations over a dataset's pairs."""

    def __init__(self, s: Shape, tag: str, seed: int, worker: int) -> None:
        self.s = s
        self.tag = tag
        self._rng = random.Random(f"{seed}:{s.name}:{tag}:worker{worker}")
        self._zipf = Zipf(s.skus)
        self._n = itertools.count()
        self._worker = worker

    def next(self) -> Op:
        s, rng = self.s, self._rng
        if s.hot:
            return Op((OrderLine(sku_id(0), site_id(0, self.tag), rng.randint(1, s.max_qty)),), self._commits())
        if s.bulk:
            if next(self._n) % 4 == 3:
                sku, site = sku_id(rng.randrange(s.skus)), site_id(rng.randrange(s.sites), self.tag)
                lot = LotSeed(f"R{self._worker}-{rng.randrange(10**9)}", EPOCH_DAY_2027 + rng.randrange(30, 700), 500)
                return Op((), receipt=(sku, site, lot))
            site = site_id(rng.randrange(s.sites), self.tag)
            count = min(rng.randint(s.min_lines, s.max_lines), s.skus)
            skus = rng.sample(range(s.skus), count)
            return Op(tuple(OrderLine(sku_id(i), site, rng.randint(1, s.max_qty)) for i in skus), True)
        count = min(rng.randint(s.min_lines, s.max_lines), s.skus * s.sites)
        lines: dict[Pair, int] = {}
        while len(lines) < count:  # distinct pairs: a basket lists an item once
            pair = (sku_id(self._zipf.draw(rng)), site_id(rng.randrange(s.sites), self.tag))
            lines.setdefault(pair, rng.randint(1, s.max_qty))
        return Op(tuple(OrderLine(sku, site, q) for (sku, site), q in lines.items()), self._commits())

    def _commits(self) -> bool:
        return self._rng.random() < COMMIT_SHARE


def units_of(lines: Sequence[OrderLine]) -> dict[Pair, int]:
    out: dict[Pair, int] = {}
    for line in lines:
        out[(line.sku, line.site)] = out.get((line.sku, line.site), 0) + line.qty
    return out
