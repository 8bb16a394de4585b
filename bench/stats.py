"""Pure helpers of the benchmark: percentiles, per-window results, rounds → medians, tables.

Nothing here starts a process or touches the network, so it is unit-tested directly
(tests/unit/test_bench_stats.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

NS_PER_MS = 1_000_000

Kind = Literal["lotwise", "grpc_empty", "ray_empty"]
KINDS: tuple[Kind, ...] = ("lotwise", "grpc_empty", "ray_empty")
CPU_GROUPS: tuple[str, ...] = ("loadgen", "engine", "ray_shards", "nats", "ray_other")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, by linear interpolation
    between the closest ranks (numpy's default method), so p50 of [1, 2] is 1.5."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile must be in 0..100, got {q}")
    position = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(position)
    hi = min(lo + 1, len(sorted_values) - 1)
    fraction = position - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * fraction


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency of the ops of one window, in milliseconds; None when nothing completed."""

    count: int = 0
    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


def summarize_latencies_ns(latencies_ns: Iterable[int]) -> LatencySummary:
    values = sorted(latencies_ns)
    if not values:
        return LatencySummary()
    ms = [v / NS_PER_MS for v in values]
    return LatencySummary(
        count=len(ms),
        mean_ms=math.fsum(ms) / len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=ms[-1],
    )


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One measured window: one kind of call at one concurrency in one round."""

    kind: Kind
    concurrency: int
    round: int
    duration_s: float  # the measured window (ops completing inside it are counted)
    ops: int  # orders (Reserve + Commit) for "lotwise", calls for the ceilings
    lines: int = 0  # order lines (lotwise only)
    errors: dict[str, int] = field(default_factory=dict)  # by gRPC status code / exception name
    latency: LatencySummary = field(default_factory=LatencySummary)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by process group (CPU_GROUPS)
    extra: dict[str, float] = field(default_factory=dict)  # e.g. shard batches and ops in the window

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def cpu_ms_per_op(self, group: str) -> float | None:
        if self.ops <= 0 or group not in self.cpu_s:
            return None
        return self.cpu_s[group] * 1000.0 / self.ops


@dataclass(frozen=True, slots=True)
class Spread:
    """A value over rounds: the median is what tables report, min/max show the noise."""

    median: float | None
    lo: float | None
    hi: float | None
    n: int

    def fmt(self, digits: int = 0, with_range: bool = False) -> str:
        if self.median is None:
            return "–"
        text = f"{self.median:,.{digits}f}"
        if with_range and self.n > 1 and self.lo is not None and self.hi is not None:
            text += f" ({self.lo:,.{digits}f}–{self.hi:,.{digits}f})"
        return text


def spread(values: Iterable[float | None]) -> Spread:
    """Median, min and max of the values that exist (None = the round had nothing)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return Spread(None, None, None, 0)
    return Spread(statistics.median(present), min(present), max(present), len(present))


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """All rounds of one (kind, concurrency): medians over rounds, errors summed."""

    kind: Kind
    concurrency: int
    rounds: int
    ops_per_s: Spread
    lines_per_s: Spread
    p50_ms: Spread
    p90_ms: Spread
    p99_ms: Spread
    errors: dict[str, int]
    ops_total: int
    cpu_ms_per_op: dict[str, Spread]
    mean_batch_ops: Spread  # ops per shard call (lotwise only)
    foreign_cpus: Spread  # CPUs kept busy by processes outside the bench (other users' load)
    reserve_p50_ms: Spread  # lotwise only: the Reserve call alone
    commit_p50_ms: Spread  # lotwise only: the Commit call alone

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def aggregate_rounds(results: Sequence[WindowResult]) -> list[AggregateRow]:
    """Group windows by (kind, concurrency) and take medians over rounds; sorted by kind then concurrency."""
    groups: dict[tuple[Kind, int], list[WindowResult]] = {}
    for r in results:
        groups.setdefault((r.kind, r.concurrency), []).append(r)
    rows: list[AggregateRow] = []
    for (kind, concurrency), rs in sorted(groups.items(), key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1])):
        errors: dict[str, int] = {}
        for r in rs:
            for code, n in r.errors.items():
                errors[code] = errors.get(code, 0) + n
        cpu_groups = sorted({g for r in rs for g in r.cpu_s}, key=_cpu_group_order)
        rows.append(
            AggregateRow(
                kind=kind,
                concurrency=concurrency,
                rounds=len(rs),
                ops_per_s=spread(r.ops_per_s for r in rs),
                lines_per_s=spread(r.lines_per_s for r in rs),
                p50_ms=spread(r.latency.p50_ms for r in rs),
                p90_ms=spread(r.latency.p90_ms for r in rs),
                p99_ms=spread(r.latency.p99_ms for r in rs),
                errors=errors,
                ops_total=sum(r.ops for r in rs),
                cpu_ms_per_op={g: spread(r.cpu_ms_per_op(g) for r in rs) for g in cpu_groups},
                mean_batch_ops=spread(_mean_batch(r) for r in rs),
                foreign_cpus=spread(_foreign_cpus(r) for r in rs),
                reserve_p50_ms=spread(r.extra.get("reserve_p50_ms") for r in rs),
                commit_p50_ms=spread(r.extra.get("commit_p50_ms") for r in rs),
            )
        )
    return rows


def _cpu_group_order(group: str) -> tuple[int, str]:
    return (CPU_GROUPS.index(group) if group in CPU_GROUPS else len(CPU_GROUPS), group)


def _foreign_cpus(r: WindowResult) -> float | None:
    foreign = r.extra.get("foreign_cpu_s")
    return foreign / r.duration_s if foreign is not None and r.duration_s > 0 else None


def _mean_batch(r: WindowResult) -> float | None:
    if r.kind != "lotwise":
        return None  # the ceilings send no batches (a stray sweep would read as one)
    batches = r.extra.get("shard_batches", 0.0)
    return r.extra.get("shard_ops", 0.0) / batches if batches > 0 else None


# ---- markdown ----


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right_align_from: int = 1) -> str:
    """A GitHub markdown table; columns from `right_align_from` on are right-aligned (numbers)."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError("every row needs one cell per header")

    def escape(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    aligns = [":---" if i < right_align_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(escape(h) for h in headers) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _by(rows: Sequence[AggregateRow], kind: Kind) -> dict[int, AggregateRow]:
    return {r.concurrency: r for r in rows if r.kind == kind}


def _errors_cell(row: AggregateRow | None) -> str:
    if row is None:
        return "–"
    if not row.errors:
        return "0"
    detail = ", ".join(f"{code} {n}" for code, n in sorted(row.errors.items()))
    return f"{row.error_count} ({detail})"


def _share(numerator: Spread, ceiling: Spread) -> str:
    if numerator.median is None or ceiling.median is None or ceiling.median <= 0:
        return "–"
    return f"{100.0 * numerator.median / ceiling.median:.0f}%"


def render_core_table(rows: Sequence[AggregateRow]) -> str:
    """The headline table: one line per concurrency, Lotwise next to its two ceilings."""
    lotwise, grpc_empty, ray_empty = (_by(rows, k) for k in KINDS)
    headers = [
        "concurrency",
        "orders/s",
        "lines/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "empty gRPC calls/s",
        "empty Ray calls/s",
        "2 × orders/s ÷ empty gRPC",
    ]
    out: list[list[str]] = []
    for c in sorted(set(lotwise) | set(grpc_empty) | set(ray_empty)):
        lw, ge, re_ = lotwise.get(c), grpc_empty.get(c), ray_empty.get(c)
        # Each order is two gRPC calls (Reserve, Commit), so compare 2 × orders/s with the ceiling.
        calls = (
            Spread(2 * lw.ops_per_s.median, None, None, 1)
            if lw is not None and lw.ops_per_s.median is not None
            else Spread(None, None, None, 0)
        )
        out.append(
            [
                str(c),
                lw.ops_per_s.fmt(0, with_range=True) if lw else "–",
                lw.lines_per_s.fmt(0) if lw else "–",
                lw.p50_ms.fmt(1) if lw else "–",
                lw.p90_ms.fmt(1) if lw else "–",
                lw.p99_ms.fmt(1) if lw else "–",
                _errors_cell(lw),
                ge.ops_per_s.fmt(0, with_range=True) if ge else "–",
                re_.ops_per_s.fmt(0, with_range=True) if re_ else "–",
                _share(calls, ge.ops_per_s) if ge else "–",
            ]
        )
    return render_table(headers, out)


def render_breakdown_table(rows: Sequence[AggregateRow]) -> str:
    """An order's latency split into its two calls, next to one empty gRPC and one empty Ray call."""
    lotwise, grpc_empty, ray_empty = (_by(rows, k) for k in KINDS)
    headers = [
        "concurrency",
        "order p50 ms",
        "Reserve p50 ms",
        "Commit p50 ms",
        "empty gRPC p50 ms",
        "empty Ray p50 ms",
    ]
    none = Spread(None, None, None, 0)
    out = [
        [
            str(c),
            lw.p50_ms.fmt(1),
            lw.reserve_p50_ms.fmt(1),
            lw.commit_p50_ms.fmt(1),
            (grpc_empty[c].p50_ms if c in grpc_empty else none).fmt(2),
            (ray_empty[c].p50_ms if c in ray_empty else none).fmt(2),
        ]
        for c, lw in sorted(lotwise.items())
    ]
    return render_table(headers, out)


def render_ceiling_latency_table(rows: Sequence[AggregateRow]) -> str:
    """Latency of one empty call at each concurrency (the floor under one order's two RPCs)."""
    headers = ["kind", "concurrency", "calls/s", "p50 ms", "p99 ms", "errors"]
    out = [
        [
            r.kind,
            str(r.concurrency),
            r.ops_per_s.fmt(0),
            r.p50_ms.fmt(2),
            r.p99_ms.fmt(2),
            _errors_cell(r),
        ]
        for r in rows
        if r.kind != "lotwise"
    ]
    return render_table(headers, out, right_align_from=1)


def render_cpu_table(rows: Sequence[AggregateRow]) -> str:
    """CPU milliseconds per order (or per empty call) by process group, medians over rounds."""
    headers = [
        "kind",
        "concurrency",
        *(f"{g} CPU ms/op" for g in CPU_GROUPS),
        "total CPU ms/op",
        "ops per shard call",
        "CPUs busy outside the bench",
    ]
    out: list[list[str]] = []
    for r in rows:
        cells = [r.cpu_ms_per_op.get(g, Spread(None, None, None, 0)) for g in CPU_GROUPS]
        medians = [s.median for s in cells if s.median is not None]
        total = f"{math.fsum(medians):.2f}" if medians else "–"
        out.append(
            [
                r.kind,
                str(r.concurrency),
                *(s.fmt(2) for s in cells),
                total,
                r.mean_batch_ops.fmt(1),
                r.foreign_cpus.fmt(2),
            ],
        )
    return render_table(headers, out, right_align_from=1)


# ---- JSON ----


def jsonable(value: Any) -> Any:
    """Dataclasses, tuples and NaN → plain JSON values (NaN becomes null, which JSON has)."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def window_from_json(data: Mapping[str, Any]) -> WindowResult:
    """The inverse of window_to_json (derived rates are recomputed, not read)."""
    kind = data["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    latency = data.get("latency") or {}
    return WindowResult(
        kind=kind,
        concurrency=int(data["concurrency"]),
        round=int(data["round"]),
        duration_s=float(data["duration_s"]),
        ops=int(data["ops"]),
        lines=int(data.get("lines", 0)),
        errors={str(k): int(v) for k, v in (data.get("errors") or {}).items()},
        latency=LatencySummary(**{k: latency[k] for k in LatencySummary.__dataclass_fields__ if k in latency}),
        cpu_s={str(k): float(v) for k, v in (data.get("cpu_s") or {}).items()},
        extra={str(k): float(v) for k, v in (data.get("extra") or {}).items() if v is not None},
    )


def window_to_json(r: WindowResult) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(r)
    data["ops_per_s"] = r.ops_per_s
    data["lines_per_s"] = r.lines_per_s
    return data
