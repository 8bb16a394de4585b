"""The suite's pure parts: datasets, order streams, the correctness check, the tables."""

from __future__ import annotations

import collections

import pytest

from bench.suite import WindowOut, aggregate, parse_args, ratio_table, render
from bench.suite_loadgen import SuiteResult
from bench.systems import Audit, CheckResult, PairTotals, check
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
