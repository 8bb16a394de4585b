"""The benchmark's pure helpers: percentiles, rounds → medians, markdown tables (bench/stats.py)."""

from __future__ import annotations

import json
import math

import pytest

from bench.stats import (
    NS_PER_MS,
    Kind,
    LatencySummary,
    WindowResult,
    aggregate_rounds,
    jsonable,
    percentile,
    render_breakdown_table,
    render_ceiling_latency_table,
    render_core_table,
    render_cpu_table,
    render_table,
    spread,
    summarize_latencies_ns,
    window_from_json,
    window_to_json,
)

# ---- percentile ----


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.0], 0) == 7.0
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 100) == 7.0


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 25) == pytest.approx(1.75)  # numpy.percentile([1, 2, 3, 4], 25) == 1.75


def test_percentile_of_1_to_100_matches_numpy_linear() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)


@pytest.mark.parametrize("q", [-0.1, 100.1, math.nan])
def test_percentile_refuses_q_outside_0_to_100(q: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0, 2.0], q)


def test_percentile_of_nothing_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


# ---- latency summaries ----


def test_summarize_latencies_converts_ns_to_ms_and_sorts() -> None:
    summary = summarize_latencies_ns([3 * NS_PER_MS, 1 * NS_PER_MS, 2 * NS_PER_MS])
    assert summary.count == 3
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.mean_ms == pytest.approx(2.0)
    assert summary.max_ms == pytest.approx(3.0)
    assert summary.p99_ms == pytest.approx(2.98)


def test_summarize_no_latencies_reports_none_not_zero() -> None:
    summary = summarize_latencies_ns([])
    assert summary == LatencySummary(count=0)
    assert summary.p50_ms is None


# ---- windows and rounds ----


def window(
    kind: Kind = "lotwise",
    concurrency: int = 16,
    round_: int = 1,
    ops: int = 1000,
    duration_s: float = 10.0,
    p50_ms: float | None = 5.0,
    errors: dict[str, int] | None = None,
    cpu_s: dict[str, float] | None = None,
    extra: dict[str, float] | None = None,
) -> WindowResult:
    return WindowResult(
        kind=kind,
        concurrency=concurrency,
        round=round_,
        duration_s=duration_s,
        ops=ops,
        lines=2 * ops,
        errors=errors or {},
        latency=LatencySummary(count=ops, mean_ms=p50_ms, p50_ms=p50_ms, p90_ms=p50_ms, p99_ms=p50_ms, max_ms=p50_ms),
        cpu_s=cpu_s or {},
        extra=extra or {},
    )


def test_window_rates_and_cpu_per_op() -> None:
    w = window(ops=500, duration_s=10.0, cpu_s={"engine": 2.0})
    assert w.ops_per_s == 50.0
    assert w.lines_per_s == 100.0
    assert w.cpu_ms_per_op("engine") == pytest.approx(4.0)
    assert w.cpu_ms_per_op("ray_shards") is None  # not measured is not zero
    assert window(ops=0).cpu_ms_per_op("engine") is None


def test_spread_is_median_min_max_and_skips_missing_rounds() -> None:
    s = spread([3.0, None, 1.0, 2.0, math.nan])
    assert (s.median, s.lo, s.hi, s.n) == (2.0, 1.0, 3.0, 3)
    assert spread([None]).median is None


def test_spread_formats_median_with_range() -> None:
    assert spread([1000.0, 1200.0, 1100.0]).fmt(0, with_range=True) == "1,100 (1,000–1,200)"
    assert spread([1000.0]).fmt(0, with_range=True) == "1,000"  # one round: no range to show
    assert spread([]).fmt() == "–"


def test_aggregate_takes_medians_over_rounds_and_sums_errors() -> None:
    results = [
        window(round_=1, ops=1000, p50_ms=5.0, errors={"UNAVAILABLE Unavailable": 1}),
        window(round_=2, ops=1200, p50_ms=9.0),
        window(round_=3, ops=1100, p50_ms=6.0, errors={"UNAVAILABLE Unavailable": 2, "WRONG_QTY": 1}),
    ]
    [row] = aggregate_rounds(results)
    assert row.rounds == 3
    assert row.ops_per_s.median == pytest.approx(110.0)
    assert (row.ops_per_s.lo, row.ops_per_s.hi) == (pytest.approx(100.0), pytest.approx(120.0))
    assert row.p50_ms.median == 6.0
    assert row.errors == {"UNAVAILABLE Unavailable": 3, "WRONG_QTY": 1}
    assert row.error_count == 4
    assert row.ops_total == 3300


def test_aggregate_groups_by_kind_then_concurrency_in_a_stable_order() -> None:
    results = [
        window(kind="ray_empty", concurrency=1),
        window(kind="lotwise", concurrency=64),
        window(kind="grpc_empty", concurrency=16),
        window(kind="lotwise", concurrency=1),
    ]
    keys = [(r.kind, r.concurrency) for r in aggregate_rounds(results)]
    assert keys == [("lotwise", 1), ("lotwise", 64), ("grpc_empty", 16), ("ray_empty", 1)]


def test_aggregate_cpu_per_op_batch_size_and_foreign_load() -> None:
    results = [
        window(
            round_=r,
            ops=1000,
            cpu_s={"engine": 3.0, "loadgen": 1.0},
            extra={"shard_batches": 500.0, "shard_ops": 3000.0, "foreign_cpu_s": 5.0},
        )
        for r in (1, 2)
    ]
    [row] = aggregate_rounds(results)
    assert list(row.cpu_ms_per_op) == ["loadgen", "engine"]  # the CPU_GROUPS order
    assert row.cpu_ms_per_op["engine"].median == pytest.approx(3.0)
    assert row.mean_batch_ops.median == pytest.approx(6.0)
    assert row.foreign_cpus.median == pytest.approx(0.5)  # 5 CPU-seconds over a 10 s window


# ---- markdown ----


def test_render_table_aligns_numbers_right_and_escapes_pipes() -> None:
    text = render_table(["name", "n"], [["a|b", "1"], ["c", "22"]])
    assert text.splitlines() == [
        "| name | n |",
        "| :--- | ---: |",
        "| a\\|b | 1 |",
        "| c | 22 |",
    ]


def test_render_table_refuses_ragged_rows() -> None:
    with pytest.raises(ValueError, match="one cell per header"):
        render_table(["a", "b"], [["1"]])


def sample_rows() -> list[WindowResult]:
    out: list[WindowResult] = []
    for r, (orders, health, ping) in enumerate([(100, 1000, 2000), (120, 1100, 2100), (110, 900, 1900)], 1):
        out.append(window("lotwise", 16, r, ops=orders * 10, p50_ms=40.0 + r))
        out.append(window("grpc_empty", 16, r, ops=health * 10, p50_ms=1.0))
        out.append(window("ray_empty", 16, r, ops=ping * 10, p50_ms=0.5))
    out.append(window("lotwise", 64, 1, ops=1500, errors={"RESOURCE_EXHAUSTED Overloaded": 2}))
    return out


def test_core_table_puts_orders_next_to_both_ceilings() -> None:
    text = render_core_table(aggregate_rounds(sample_rows()))
    lines = text.splitlines()
    assert lines[0].startswith("| concurrency | orders/s | lines/s | p50 ms |")
    row16 = next(line for line in lines if line.startswith("| 16 |"))
    cells = [c.strip() for c in row16.strip("|").split("|")]
    assert cells[1] == "110 (100–120)"  # orders/s: median (min–max)
    assert cells[2] == "220"  # lines/s
    assert cells[3] == "42.0"  # p50 ms, median over rounds
    assert cells[6] == "0"  # errors
    assert cells[7] == "1,000 (900–1,100)"  # empty gRPC calls/s
    assert cells[8] == "2,000 (1,900–2,100)"  # empty Ray calls/s
    assert cells[9] == "22%"  # 2 calls per order: 2 × 110 / 1000
    row64 = next(line for line in lines if line.startswith("| 64 |"))
    assert "2 (RESOURCE_EXHAUSTED Overloaded 2)" in row64
    assert row64.rstrip().endswith("| – | – | – |")  # no ceilings measured at 64


def test_ceiling_and_cpu_tables_render_every_row() -> None:
    rows = aggregate_rounds(sample_rows())
    ceiling = render_ceiling_latency_table(rows)
    assert "| grpc_empty | 16 | 1,000 | 1.00 |" in ceiling
    assert "lotwise" not in ceiling
    cpu = render_cpu_table(rows)
    assert len(cpu.splitlines()) == 2 + len(rows)


def test_breakdown_table_splits_an_order_into_its_two_calls() -> None:
    rows = [
        window("lotwise", 1, 1, p50_ms=10.0, extra={"reserve_p50_ms": 4.0, "commit_p50_ms": 6.0}),
        window("grpc_empty", 1, 1, p50_ms=0.5),
    ]
    text = render_breakdown_table(aggregate_rounds(rows))
    assert text.splitlines()[2] == "| 1 | 10.0 | 4.0 | 6.0 | 0.50 | – |"


# ---- JSON ----


def test_window_json_is_plain_and_carries_rates() -> None:
    w = window(ops=100, duration_s=4.0, extra={"x": math.nan})
    data = window_to_json(w)
    assert data["ops_per_s"] == 25.0
    assert data["latency"]["p50_ms"] == 5.0
    assert data["extra"]["x"] is None  # NaN is not JSON
    json.dumps(data, allow_nan=False)


def test_jsonable_handles_nested_dataclasses_and_tuples() -> None:
    rows = aggregate_rounds([window()])
    data = jsonable(rows)
    assert data[0]["ops_per_s"]["median"] == 100.0
    json.dumps(data, allow_nan=False)


def test_window_json_round_trips() -> None:
    w = window(errors={"WRONG_QTY": 1}, cpu_s={"engine": 1.5}, extra={"shard_ops": 10.0})
    again = window_from_json(json.loads(json.dumps(window_to_json(w))))
    assert again == w


def test_window_from_json_refuses_an_unknown_kind() -> None:
    data = window_to_json(window())
    data["kind"] = "nope"
    with pytest.raises(ValueError, match="unknown kind"):
        window_from_json(data)
