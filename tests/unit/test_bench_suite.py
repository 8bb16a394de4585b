"""The suite's pure parts: datasets, order streams, the correctness check, the tables."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

import pytest

from bench.suite import WindowOut, aggregate, parse_args, ratio_table, render
from bench.suite_loadgen import SuiteResult
from bench.systems import Audit, CheckResult, Dataset, LotSeed, OrderLine, Pair, PairTotals, check
from bench.workloads import OrderStream, Zipf, dataset, shape


def test_lot_numbers_are_not_in_expiry_order_somewhere() -> None:
    data = dataset(shape("pos-scarce", 50, 2), "t", 1)
    unsorted = 0
    for _, lots in data.lots:
        assert len(lots) == 3
        assert len({lot.expires_day for lot in lots}) == 3  # FEFO order is total
        assert all(50 <= lot.qty <= 200 for lot in lots)
        unsorted += [lot.expires_day for lot in lots] != sorted(lot.expires_day for lot in lots)
    assert unsorted > len(data.lots) // 2  # FEFO must really sort


def test_datasets_and_streams_are_seeded() -> None:
    s = shape("pos-deep", 100, 3)
    assert dataset(s, "a", 7) == dataset(s, "a", 7)
    a, b = OrderStream(s, "a", 7, 0), OrderStream(s, "a", 7, 0)
    assert [a.next() for _ in range(50)] == [b.next() for _ in range(50)]
    other = OrderStream(s, "a", 7, 1)
    assert [other.next() for _ in range(50)] != [OrderStream(s, "a", 7, 0).next() for _ in range(50)]


def test_pos_orders_have_1_to_3_distinct_lines_of_1_to_5_units_and_70_percent_commit() -> None:
    stream = OrderStream(shape("pos-deep", 2000, 10), "t", 3, 0)
    ops = [stream.next() for _ in range(5000)]
    for op in ops:
        assert 1 <= len(op.lines) <= 3
        assert len({(line.sku, line.site) for line in op.lines}) == len(op.lines)
        assert all(1 <= line.qty <= 5 for line in op.lines)
    commits = sum(op.commit for op in ops) / len(ops)
    assert 0.66 < commits < 0.74


def test_zipf_skews_towards_the_first_ranks() -> None:
    import random

    rng, z = random.Random(1), Zipf(2000)
    counts = collections.Counter(z.draw(rng) for _ in range(20_000))
    assert counts[0] > counts[10] > counts[500]
    assert counts[0] / 20_000 > 0.1  # s = 1.1 over 2,000 ranks: the top sku takes ~13 %


def test_hot_pair_and_wms_shapes() -> None:
    hot = OrderStream(shape("hot-pair"), "t", 1, 0)
    assert {(line.sku, line.site) for _ in range(100) for line in hot.next().lines} == {("SKU-00000", "S000.t")}
    wms = OrderStream(shape("wms-bulk", 200, 4), "t", 1, 0)
    ops = [wms.next() for _ in range(40)]
    assert sum(op.receipt is not None for op in ops) == 10
    assert all(20 <= len(op.lines) <= 60 for op in ops if op.receipt is None)


def test_check_finds_oversell_lost_units_and_open_holds() -> None:
    data = dataset(shape("pos-scarce", 2, 1), "t", 1)
    pair_a, pair_b = data.pairs
    units = data.units()
    good = Audit({pair_a: PairTotals(units[pair_a] - 5, 0, 5), pair_b: PairTotals(units[pair_b] + 10, 0)}, 0, 0)
    assert check(data, {pair_b: 10}, {pair_a: 5}, good).ok
    lost = check(data, {}, {pair_a: 4}, good)
    assert not lost.ok
    assert any("not conserved" in p for p in lost.problems)
    over = Audit({pair_a: PairTotals(3, 4), pair_b: PairTotals(units[pair_b], 0)}, 1, 0)
    problems = check(data, {}, {pair_a: units[pair_a] - 3}, over).problems
    assert any("oversold" in p for p in problems)
    assert any("holds left open" in p for p in problems)


def _window(system: str, c: int, orders: int, ok: bool = True) -> WindowOut:
    r = SuiteResult(orders=orders, lines=2 * orders, window_s=1.0, latencies_ns=[1_000_000] * max(orders, 1))
    return WindowOut(system, "pos-deep", c, 1, r, 0.5, CheckResult([] if ok else ["oversold"]), 0.1)


def test_ratios_only_where_both_runs_passed() -> None:
    rows = aggregate([_window("lotwise", 1, 300), _window("postgres", 1, 100), _window("redis", 1, 600, ok=False)])
    table = ratio_table(rows)
    assert "3.00×" in table
    assert "Lotwise ÷ redis" in table
    text = render(rows, {"date": "d", "command": "c", "rounds": 1, "duration_s": 1, "warmup_s": 0})
    assert "✗ oversold" in text


def test_arguments_are_bounded() -> None:
    assert parse_args(["--concurrency", "64,1,16"]).concurrency == [1, 16, 64]
    for bad in (["--systems", "mysql"], ["--concurrency", "0"], ["--rounds", "0"], ["--workloads", "x"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_profile_frames_and_components() -> None:
    from bench.suite import top_frames, top_parts

    raw = "\n".join(
        [
            "main (x.py:1);Gateway.reserve (engine/runtime/gateway.py:300) 30",
            "main (x.py:1);EpollSelector.select (selectors.py:468) 50",
            "main (x.py:1);ActorHandle._actor_method_call (ray/actor.py:2578) 20",
            "garbage",
        ]
    )
    frames = top_frames(raw)
    assert frames[0] == ("EpollSelector.select (selectors.py:468)", 0.5)
    assert dict(top_parts(frames)) == {"idle (waiting)": 0.5, "lotwise engine": 0.3, "ray": 0.2}


def test_workers_split_over_load_generators_and_results_merge() -> None:
    from bench.suite import _split
    from bench.suite_loadgen import SuiteJob, SystemSpec, merge

    job = SuiteJob(SystemSpec("redis", "u"), shape("hot-pair"), "t", 1, 5, 1.0, 0.0)
    parts = _split(job, 2)
    assert [(p.concurrency, p.first_worker) for p in parts] == [(3, 0), (2, 3)]
    assert len(_split(job, 8)) == 5  # never a process without a worker
    a = SuiteResult(orders=3, window_s=1.0, committed={("s", "x"): 2}, errors={"E": 1}, latencies_ns=[1])
    b = SuiteResult(orders=4, window_s=1.0, committed={("s", "x"): 5}, errors={"E": 2}, latencies_ns=[2])
    m = merge([a, b])
    assert (m.orders, m.committed, m.errors, sorted(m.latencies_ns)) == (7, {("s", "x"): 7}, {"E": 3}, [1, 2])


def test_wrong_refusals_are_flagged_only_when_provable() -> None:
    from bench.systems import wrong_refusals

    audit = Audit({("s", "a"): PairTotals(10, 0), ("s", "b"): PairTotals(2, 0)}, 0, 0)
    refused_a = ((("s", "a"), 5),)  # 10 left at the end: at c=1 there were ≥ 10 when refused
    refused_ab = ((("s", "a"), 5), (("s", "b"), 3))  # b had at most... 2 left: maybe right
    assert wrong_refusals([refused_a, refused_ab], audit, concurrency=1, max_line_qty=5) == 1
    # At c=2 another order may have held up to 5 at `a`: 10 − 5 ≥ 5 still proves it wrong.
    assert wrong_refusals([refused_a], audit, concurrency=2, max_line_qty=5) == 1
    assert wrong_refusals([refused_a], audit, concurrency=3, max_line_qty=5) == 0


def test_the_lean_driver_is_only_offered_where_it_exists() -> None:
    assert parse_args(["--systems", "redis", "--workloads", "pos-deep", "--batch", "16"]).batch == 16
    for bad in (["--batch", "16"], ["--systems", "redis", "--workloads", "wms-bulk", "--batch", "4"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


class _Shop:
    """A one-pair in-memory shop for the order-placing logic (units only, no lots)."""

    def __init__(self, units: int) -> None:
        self.free, self.holds, self.shipped = units, dict[str, int](), 0

    async def reserve(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        want = sum(line.qty for line in lines)
        if want > self.free:
            return False
        self.free -= want
        self.holds[hold_id] = want
        return True

    async def commit(self, hold_id: str) -> None:
        self.shipped += self.holds.pop(hold_id)

    async def release(self, hold_id: str) -> None:
        self.free += self.holds.pop(hold_id)

    async def sell(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        held = await self.reserve(hold_id, lines)
        if held:
            await self.commit(hold_id)
        return held


def test_a_sale_window_tallies_sold_units_only_and_leaves_no_hold() -> None:
    from bench.suite_loadgen import place
    from bench.workloads import Op

    pair = ("s", "x")
    line = (OrderLine("s", "x", 3),)
    shop, committed = _Shop(7), dict[Pair, int]()
    placed = [asyncio.run(place(shop, "sale", f"h{i}", Op(line, commit=False), committed)) for i in range(3)]  # type: ignore[arg-type]
    assert [held for held, _ in placed] == [True, True, False]  # a sale sells, whatever `commit` says
    assert all(took >= 0 for _, took in placed)
    assert committed == {pair: 6}
    assert shop.shipped == 6
    assert not shop.holds
    audit = Audit({pair: PairTotals(7 - shop.shipped, 0, shop.shipped)}, len(shop.holds), 0)
    data = Dataset("one", ((pair, (LotSeed("L1", 1, 7),)),))
    assert check(data, {}, committed, audit).ok
    # A sale the system applied but the client never counted breaks conservation.
    assert not check(data, {}, {pair: 3}, audit).ok


def test_two_phase_orders_commit_or_release_as_the_stream_says() -> None:
    from bench.suite_loadgen import place
    from bench.workloads import Op

    line = (OrderLine("s", "x", 2),)
    shop, committed = _Shop(10), dict[Pair, int]()
    for i, commit in enumerate((True, False, True)):
        asyncio.run(place(shop, "two-phase", f"h{i}", Op(line, commit=commit), committed))  # type: ignore[arg-type]
    assert committed == {("s", "x"): 4}
    assert shop.shipped == 4
    assert shop.free == 6
    assert not shop.holds


def _row(system: str, workload: str, c: int, orders: float, ok: bool = True, **ms: float) -> dict[str, object]:
    from bench.stats import spread

    row: dict[str, object] = {"workload": workload, "system": system, "concurrency": c, "ok": ok}
    row["orders_per_s"] = spread([orders])
    for metric in ("p50_ms", "hold_p99_ms", "server_cpu_ms_per_order"):
        row[metric] = spread([ms.get(metric, 1.0)])
    return row


def test_targets_pair_each_mode_with_its_peer_and_skip_failed_windows() -> None:
    from bench.suite import targets_table

    rows = [
        _row("lotwise", "pos-deep", 64, 1_200),
        _row("postgres", "pos-deep", 64, 1_000),
        _row("lotwise-sale", "pos-deep", 64, 2_500),
        _row("postgres-sale", "pos-deep", 64, 1_000, ok=False),
        _row("lotwise-batched", "pos-deep", 64, 3_000, server_cpu_ms_per_order=0.4),
        _row("redis-aof-always-lean", "pos-deep", 64, 12_000, server_cpu_ms_per_order=0.05),
        _row("lotwise", "pos-deep", 1, 100, p50_ms=9.5),
        _row("postgres", "pos-deep", 1, 400, p50_ms=2.0),
    ]
    lines = {line.split("|")[1].strip(): line for line in targets_table(rows).splitlines()[2:]}
    assert "1.20×" in lines["pos-deep @64, unary two-phase, ÷ PostgreSQL"]
    assert "≥ 1× (met)" in lines["pos-deep @64, unary two-phase, ÷ PostgreSQL"]
    sale = lines["pos-deep @64, one-call sale, ÷ PostgreSQL sale"]
    assert "✗" in sale
    assert "(–)" in sale
    assert "0.25×" in lines["pos-deep @64, auto-batched, ÷ durable Redis-Lua lean driver"]
    assert "(not met)" in lines["pos-deep @64, auto-batched, ÷ durable Redis-Lua lean driver"]
    assert "0.40 ms" in lines["server CPU per order, batched @64 (peer: Redis lean)"]
    assert "(met)" in lines["server CPU per order, batched @64 (peer: Redis lean)"]
    assert "(not met)" in lines["order p50 at 1 client, unary (peer: PostgreSQL)"]
    assert not any("hot-pair" in key for key in lines)  # not measured: not shown


def test_every_system_is_a_variant_of_a_started_server_and_lean_skips_receipts() -> None:
    from bench.suite import SYSTEMS, VARIANTS, runs
    from bench.suite_loadgen import MODES

    assert {v.server for v in VARIANTS.values()} == {"lotwise", "postgres", "redis", "redis-aof-always"}
    assert all(v.mode in MODES for v in VARIANTS.values())
    assert not VARIANTS["lotwise-nofollowers"].followers
    assert VARIANTS["lotwise"].followers
    assert not runs("redis-aof-always-lean", "wms-bulk")
    assert runs("lotwise-sale", "wms-bulk")
    assert parse_args(["--lean-batch", "8"]).lean_batch == 8
    assert parse_args([]).systems == list(SYSTEMS)


def test_the_engine_switches_followers_seldom() -> None:
    from itertools import pairwise

    from bench.suite import SYSTEMS, VARIANTS, run_order

    seq = [n for k in range(4) for n in run_order(SYSTEMS, 1, k) if VARIANTS[n].server == "lotwise"]
    settings = [VARIANTS[n].followers for n in seq]
    assert sum(a != b for a, b in pairwise(settings)) == 4  # once per workload (twice without reversing)
    assert run_order(SYSTEMS, 2, 0)[0] == SYSTEMS[1]  # the first system rotates per round


async def test_an_order_the_engine_sheds_at_its_first_call_is_counted_shed_not_unknown() -> None:
    """Issue 19: a bench reports shed calls apart from errors. A reserve or sale refused for
    load (RESOURCE_EXHAUSTED after the client's retries) applied nothing: the Lotwise system
    raises `Shed`, which the load generator counts as such (not as an unknown outcome that
    fails the window); the counts merge across load generators."""
    from bench.peers.lotwise import LotwiseSystem
    from bench.suite_loadgen import merge
    from bench.systems import Shed
    from engine.domain.errors import Overloaded

    async def refuse(*_: object, **__: object) -> None:
        raise Overloaded("wait before the door", 150)

    system = LotwiseSystem("127.0.0.1:1")
    try:
        system._client.sell = refuse  # type: ignore[method-assign]
        system._client.reserve = refuse  # type: ignore[method-assign]
        line = OrderLine("sku-1", "site-1", 2)
        with pytest.raises(Shed):
            await system.sell("h1", [line])
        with pytest.raises(Shed):
            await system.reserve("h2", [line])
    finally:
        await system.close()
    m = merge([SuiteResult(shed=2, window_s=1.0), SuiteResult(shed=3, window_s=1.0)])
    assert (m.shed, m.unknown_outcomes) == (5, 0)
