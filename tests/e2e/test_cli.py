"""The `lotwise` command line, run for real: subprocesses of the installed entry point.

The cheap checks (help, bad configuration, an unreachable target, the demo on in-process
shards) start no Ray. Two tests start Ray in a subprocess — `lotwise demo` and a full
`lotwise up --demo` → client commands → SIGTERM cycle — and are marked `ray`; like every
Ray start they need the loopback-only namespace `make test` provides. The demo flow is
also checked in-process (no subprocess, no Ray), where its summary can be asserted on.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine import bootstrap
from engine.api.client import LotwiseClient
from engine.bootstrap import RunningEngine, running_engine
from engine.demo import ED, FW, GLU, ICU, DemoRun, load_dataset, run_flow
from engine.domain.errors import NotFound
from engine.endpoints import Endpoints, read_endpoints
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = (
    "up",
    "demo",
    "availability",
    "stock",
    "hold",
    "sites",
    "verify",
    "shards",
    "where",
    "import",
    "history",
    "dlq",
)
CLI_TIMEOUT_S = 30  # a command that starts nothing answers in about a second
RAY_TIMEOUT_S = 240
UP_QUIET = ("--log-level", "warning")  # Ray start (~3–10 s) on a 2-core machine, plus the demo's hold TTL wait


def lotwise_cmd() -> list[str]:
    """The installed entry point next to this interpreter (what users run), else the module."""
    script = Path(sys.executable).with_name("lotwise")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOTWISE_") or k == "LOTWISE_IN_NETNS"}
    # Wide, colourless, unbuffered: markers stay on one line and arrive as they are printed.
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    env["LOTWISE_HTTP_PORT"] = "0"  # each `up` puts its HTTP gateway on a free port
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lotwise_cmd(), *args],
        cwd=ROOT,
        env=env or cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Non-zero with the expected code, one `lotwise: error:` line naming things, no traceback."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output
    assert "Traceback" not in output, output
    first = proc.stderr.splitlines()[0] if proc.stderr else ""
    assert first.startswith("lotwise: error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


# ---- help ------------------------------------------------------------------------------


def test_top_level_help_lists_every_command() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for name in SUBCOMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_command_has_help(command: str) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"Usage: lotwise {command}" in proc.stdout
    assert "--help" in proc.stdout


# ---- bad configuration: one clear line, exit 2, nothing started -----------------------


@pytest.mark.parametrize(
    ("args", "env", "needles"),
    [
        pytest.param(("up", "--port", "70000"), {}, ("port (--port)", "65535", "70000"), id="port-out-of-range"),
        pytest.param(("up",), {"LOTWISE_SHARDS": "0"}, ("shards (LOTWISE_SHARDS)", "greater than"), id="zero-shards"),
        pytest.param(
            ("up", "--status-dictionary", "/nonexistent/statuses.json"),
            {},
            ("status_dictionary (--status-dictionary)", "cannot read"),
            id="unreadable-dictionary",
        ),
        pytest.param(("up", "--log-level", "loud"), {}, ("log_level (--log-level)",), id="bad-log-level"),
        pytest.param(("demo",), {"LOTWISE_SHARDS": "0"}, ("shards (LOTWISE_SHARDS)",), id="demo-zero-shards"),
        pytest.param(
            ("up",),
            {"LOTWISE_HISTORY_DSN": "postgres://db/history"},
            ("history_dsn (LOTWISE_HISTORY_DSN)", "chdb:///path"),
            id="bad-history-dsn",
        ),
    ],
)
def test_bad_config_fails_fast_and_clearly(
    args: tuple[str, ...], env: dict[str, str], needles: tuple[str, ...]
) -> None:
    proc = run_cli(*args, env=cli_env(**env))
    assert_clean_failure(proc, 2, "invalid configuration", *needles)
    # Refused before anything started: no start-up banner, nothing on stdout at all.
    assert proc.stdout == ""


def test_malformed_status_dictionary_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "statuses.json"
    bad.write_text('{"version": 1, "statuses": {"available": {"on_hand": true}}}')
    proc = run_cli("up", env=cli_env(LOTWISE_STATUS_DICTIONARY=str(bad)))
    assert_clean_failure(proc, 2, "status_dictionary (LOTWISE_STATUS_DICTIONARY)", "missing flag")


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ("[cabinets.ICU-1]\nsite = 'x'\nreturn_status = 'teleported'\n", ("cabinets.ICU-1.return_status",)),
        ("[consumer]\nmax_deliver = 1\n", ("consumer.max_deliver",)),
        ("[gtins]\n'42' = 'GLU-50'\n", ("gtins", "14 digits")),
        ("[[subjects]]\nsubject = 'lotwise..in'\nsource = 'cabinet'\n", ("subjects.0.subject",)),
    ],
    ids=["unknown-status", "max-deliver", "short-gtin", "bad-subject"],
)
def test_bad_ingest_config_is_named_before_anything_starts(tmp_path: Path, toml: str, needles: tuple[str, ...]) -> None:
    bad = tmp_path / "ingest.toml"
    bad.write_text(toml)
    proc = run_cli("up", env=cli_env(LOTWISE_INGEST_CONFIG=str(bad)))
    assert_clean_failure(proc, 2, "ingest_config (LOTWISE_INGEST_CONFIG)", *needles)
    assert proc.stdout == ""


def test_port_in_use_is_refused_before_starting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("up", "--port", str(port), "--metrics-port", "0")
    assert_clean_failure(proc, 2, "port (--port)", "in use")


# ---- client commands against nothing ---------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("availability", "GLU-50", "FW-BOS", "--by", "lot"),
        ("stock", "--org", "medline"),
        ("hold", "SO-1001"),
    ],
    ids=["availability", "stock", "hold"],
)
def test_client_command_against_a_closed_port_fails_clearly(args: tuple[str, ...]) -> None:
    target = f"127.0.0.1:{free_port()}"
    proc = run_cli(*args, "--target", target, "--timeout", "3")
    assert_clean_failure(proc, 3, f"cannot reach the engine at {target}", "UNAVAILABLE")


def test_bad_cli_usage_is_a_usage_error() -> None:
    proc = run_cli("availability", "GLU-50", "FW-BOS", "--by", "colour")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "colour" in proc.stderr


# ---- the demo, without Ray: quick, and checks the printed story -----------------------


def test_demo_in_process_prints_the_story() -> None:
    proc = run_cli("demo", "--in-process", "--hold-ttl-ms", "300", "--run-id", "e2e1", timeout_s=120)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in out + proc.stderr
    for marker in (
        "availability before the day",
        "availability after the day",
        "FEFO picked GS-24088 first",
        "INSUFFICIENT_STOCK",
        "requested 40, available 30",
        "discrepancy",
        "QueryStock roll-up over org medline/east/boston",
        "SO-1004 expired",
        "replen   CAB-MGH-ED: ",  # in-process: no journal follower sees the scans; the panel says why
        "MOQ 10 × 10",
        "Demo complete (run id e2e1)",
    ):
        assert marker in out, marker


# ---- the demo flow in-process: assert on its summary ----------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def local_engine() -> AsyncIterator[RunningEngine]:
    """The full server stack (gRPC + metrics) over in-process shards: no Ray."""
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=100)
    try:
        async with running_engine(Settings(port=0, metrics_port=0), gateway=gateway) as engine:
            yield engine
    finally:
        await gateway.close()


@pytest_asyncio.fixture(loop_scope="session")
async def local_client(local_engine: RunningEngine) -> AsyncIterator[LotwiseClient]:
    async with LotwiseClient(local_engine.grpc_address, timeout_s=10) as client:
        yield client


async def test_token_file_is_the_token_a_client_command_sends(local_engine: RunningEngine, tmp_path: Path) -> None:
    # A data dir with no engine.json: the token comes from --token-file or from nowhere.
    env = cli_env(LOTWISE_DATA_DIR=str(tmp_path))
    target = local_engine.grpc_address
    assert local_engine.token_file is not None  # auth is on, as by default
    given = ("--target", target, "--token-file", str(local_engine.token_file))
    signed_in = await asyncio.to_thread(run_cli, "sites", *given, env=env)
    assert signed_in.returncode == 0, signed_in.stderr
    anonymous = await asyncio.to_thread(run_cli, "sites", "--target", target, env=env)
    assert_clean_failure(anonymous, 1, "UNAUTHENTICATED")


async def test_demo_flow_summary(local_client: LotwiseClient) -> None:
    run = DemoRun.fresh_engine("t1")
    report = await load_dataset(local_client, run)
    assert report.loaded
    assert report.receipts > 0
    s = await run_flow(local_client, run, short_ttl_ms=300)

    # Inbound: received into qc_hold, QC split, put away.
    assert (s.received_qty, s.qc_passed_qty, s.qc_damaged_qty, s.putaway_qty) == (160, 158, 2, 158)
    # FEFO took the lot that expires first — not the oldest receipt, not the lowest number.
    assert s.fefo_lots[0] == s.earliest_expiry_lot == "GS-24088"
    assert s.oldest_receipt_lot == "GS-23950" != s.fefo_lots[0]
    assert s.shelf_life_lot == "BD-7799"  # min_shelf_life_days skipped the 15-day lot
    # The two-site order: partial commit releases the rest in the same step.
    assert (s.committed_qty, s.released_on_commit_qty, s.order_state) == (216, 14, "committed")
    # Scan-takes and the count.
    assert s.scan_take_qty == 3
    assert (s.overtake_consumed_qty, s.overtake_shortfall_qty) == (4, 2)
    assert s.count_variance == -3
    # The refused order carries the available qty, and its other line was undone.
    assert s.refused_reason == "INSUFFICIENT_STOCK"
    assert (s.refused_requested, s.refused_available) == (40, 30)
    assert s.refusal_changed_nothing
    # Holds that end without a commit.
    assert (s.released_hold_state, s.released_hold_qty) == ("released", 5)
    assert s.expiring_hold_state == "expired"
    assert s.expiring_available_during == s.expiring_available_before - 2
    assert s.expiring_available_after == s.expiring_available_before
    # Slices before and after, and the org roll-up (which excludes DC-EAST, outside Boston).
    assert [t.title for t in s.before] == [t.title for t in s.after]
    by_status = {t.title: t for t in s.after}["strips at the front warehouse, by status"]
    assert {r.group: r.qty for r in by_status.rows}[(("status", "damaged"),)] == 2  # the crushed boxes
    assert {dict(r.row.group)["owner"] for r in s.rollup} == {"own", "consignment:bd"}
    # The ED cabinet's scans took its strips under the reorder point: one suggestion, from the
    # front warehouse, raised to its MOQ and multiple, with the panel's numbers.
    # Here (in-process shards, no journal follower, no history) the engine sees no scans, so
    # the full recompute's suggestion says why not; the Ray demo below raises the order.
    r = s.replenishment
    assert r is not None
    assert (r.site, r.supplier, r.version, r.raised_by) == (run.site(ED), run.site(FW), 1, "recompute")
    assert (r.moq, r.multiple, r.buffer) == (10, 10, 1.15)
    assert (r.state, r.qty) == ("none", 0)
    assert "no demand" in r.reason
    assert all(r.site == "" for r in s.rollup)
    assert sum(r.row.qty for r in s.rollup if r.sku == GLU) == 136
    assert [step.title for step in s.steps][:3] == ["receive", "qc", "putaway"]


async def test_demo_reruns_on_a_shared_engine_do_not_collide(local_client: LotwiseClient) -> None:
    """Two runs against one engine: own sites and ids each, so the same numbers each time."""
    summaries = []
    for run_id in ("rerun-a", "rerun-b"):
        run = DemoRun.shared_engine(run_id)
        assert (await load_dataset(local_client, run)).loaded
        summaries.append(await run_flow(local_client, run, short_ttl_ms=200))
    a, b = summaries
    assert a.sites != b.sites
    assert (a.fefo_lots, a.refused_available, a.committed_qty) == (b.fefo_lots, b.refused_available, b.committed_qty)
    # Loading the same run twice books nothing the second time.
    again = await load_dataset(local_client, DemoRun.shared_engine("rerun-a"))
    assert not again.loaded
    with pytest.raises(NotFound):
        await local_client.get_availability(GLU, ICU + ".nope")


# ---- with Ray (subprocesses; at most two Ray starts) ------------------------------------


@pytest.mark.ray
def test_demo_with_ray_runs_to_completion() -> None:
    proc = run_cli("demo", "--hold-ttl-ms", "500", timeout_s=RAY_TIMEOUT_S)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert "engine up in" in out
    assert "local Ray" in out
    for marker in (
        "FEFO picked GS-24088 first",
        "INSUFFICIENT_STOCK",
        "available 30",
        # the ED cabinet's scans raised its suggestion through the journal follower, with its panel
        "replen   CAB-MGH-ED: order",
        "open, raised by journal",
        "MOQ 10 × 10",
        "Demo complete",
    ):
        assert marker in out, marker
    # The cabinet step: a GS1 scan-take over NATS, visible centrally, out as a business event.
    flat = " ".join(out.split())
    assert "published a GS1 scan-take on NATS: CAB-MGH-ICU available IVC-20G 37 → 36" in flat
    assert "lotwise.events.consume.CAB-MGH-ICU: doc case-4502, extended price USD 3.85" in flat


class LineReader:
    """Collects a subprocess's stdout lines on a thread so the test can wait with a deadline."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
            self.lines.put(line)

    def wait_for(self, needle: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not printed within {timeout_s} s; got:\n{''.join(self.seen)}")

    def rest(self, timeout_s: float = 5.0) -> str:
        self._thread.join(timeout_s)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "".join(self.seen)


@pytest.fixture
def served_engine(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], LineReader, str, Path]]:
    port = free_port()
    data_dir = ("--data-dir", str(tmp_path / "data"))
    stderr_path = tmp_path / "up.stderr"  # a file, not a pipe: a chatty Ray must not block the server
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            # Its own data dir: the journal (embedded nats-server) must start empty, not
            # recover what an earlier run left in .data.
            [*lotwise_cmd(), "up", "--port", str(port), "--metrics-port", "0", "--demo", *UP_QUIET, *data_dir],
            cwd=ROOT,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    reader = LineReader(proc.stdout)
    try:
        yield proc, reader, f"127.0.0.1:{port}", stderr_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.mark.ray
def test_up_serves_client_commands_and_stops_on_sigterm(
    served_engine: tuple[subprocess.Popen[str], LineReader, str, Path],
) -> None:
    proc, reader, target, stderr_path = served_engine

    def run_here(*args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        # The engine's data dir, as a user's shell has it: the CLI finds engine.json there,
        # and in it the admin token `up` wrote (auth is on, as by default).
        return run_cli(*args, env=cli_env(LOTWISE_DATA_DIR=str(stderr_path.parent / "data")), timeout_s=timeout_s)

    reader.wait_for("Serving.", RAY_TIMEOUT_S)
    banner = "".join(reader.seen)
    assert f"gRPC     {target}" in banner or target in banner
    assert "demo dataset: 3 skus, 5 sites" in banner
    assert "NATS JetStream, embedded nats-server" in banner

    lots = run_here("availability", "GLU-50", "FW-BOS", "--by", "lot", "--target", target)
    assert lots.returncode == 0, lots.stderr
    for lot in ("GS-23950", "GS-24031", "GS-24088"):
        assert lot in lots.stdout
    assert "82 available" in lots.stdout  # 40 + 30 + 12 opening boxes

    rollup = run_here("stock", "--org", "medline/east/boston", "--by", "sku", "--by", "owner", "--target", target)
    assert rollup.returncode == 0, rollup.stderr
    assert "consignment:bd" in rollup.stdout
    assert "DC-EAST" not in rollup.stdout

    sites = run_here("sites", "--org", "medline/east/boston/mgh", "--target", target)
    assert sites.returncode == 0, sites.stderr
    assert "CAB-MGH-ICU" in sites.stdout
    assert "CAB-BWH-OR" not in sites.stdout

    # The demo against a shared engine books into its own sites and leaves the seed alone.
    demo = run_here("demo", "--target", target, "--run-id", "e2e2", "--hold-ttl-ms", "300", timeout_s=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "FW-BOS.e2e2" in demo.stdout
    assert "Demo complete (run id e2e2)" in demo.stdout
    assert "82 available" in run_here("availability", "GLU-50", "FW-BOS", "--target", target).stdout

    missing = run_here("hold", "no-such-hold", "--target", target)
    assert_clean_failure(missing, 1, "NOT_FOUND", "no-such-hold")

    unknown = run_here("availability", "NO-SUCH-SKU", "FW-BOS", "--target", target)
    assert_clean_failure(unknown, 1, "not found (NOT_FOUND): sku 'NO-SUCH-SKU'")

    malformed = run_here("availability", "GLU 50", "FW-BOS", "--target", target)
    assert_clean_failure(malformed, 2, "SKU: may contain only", "(got 'GLU 50')")  # caught before any call

    # Everything above, replayed from snapshot + journal, equals the live state.
    verified = run_here("verify", "--target", target, timeout_s=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verify: all 2 shards match their journal" in verified.stdout
    shard_rows = run_here("shards", "--target", target)
    assert shard_rows.returncode == 0, shard_rows.stderr
    assert shard_rows.stdout.count("ready") == 2

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert "stopped cleanly" in reader.rest()
    stderr = stderr_path.read_text()
    assert "Traceback" not in stderr, stderr


# ---- `lotwise up`: exit 1 when it cannot start, 130 after a clean stop on Ctrl-C -------


def test_up_exits_1_when_the_engine_cannot_start(tmp_path: Path) -> None:
    # Well-formed settings, but the data dir is a file: found when the engine writes its keys
    # there (before Ray starts), so it is a failed start (1), not bad usage (2).
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("")
    proc = run_cli("up", "--port", "0", "--metrics-port", "0", "--journal", "memory", "--data-dir", str(not_a_dir))
    assert_clean_failure(proc, 1, "could not start the engine", "Not a directory", str(not_a_dir))
    assert "LOTWISE_LOG_LEVEL=debug" in proc.stderr  # where the traceback is, for whoever digs


def wait_for_engine_json(proc: subprocess.Popen[str], data_dir: Path, stderr_path: Path) -> Endpoints:
    deadline = time.monotonic() + RAY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"lotwise up exited {proc.returncode}:\n{stderr_path.read_text()}")
        found = read_endpoints(data_dir)
        if found is not None:
            return found
        time.sleep(0.2)
    pytest.fail(f"no engine.json in {data_dir} within {RAY_TIMEOUT_S} s:\n{stderr_path.read_text()}")


def health_status(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


@pytest.mark.ray
def test_up_stops_cleanly_on_ctrl_c_and_exits_130(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stderr_path = tmp_path / "up.stderr"  # a file, not a pipe: a chatty Ray must not block the server
    # As small as `up` gets: one shard on one CPU, the memory journal, no history, no ingestion.
    args = ("--port", "0", "--metrics-port", "0", "--journal", "memory", "--shards", "1", "--ray-num-cpus", "1")
    env = cli_env(LOTWISE_HISTORY="false", LOTWISE_INGEST="false")
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [*lotwise_cmd(), "up", *args, *UP_QUIET, "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    reader = LineReader(proc.stdout)
    try:
        endpoints = wait_for_engine_json(proc, data_dir, stderr_path)
        assert health_status(endpoints.grpc) == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, reader.rest() + stderr_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert "Lotwise stopped cleanly" in reader.rest()
    assert not (data_dir / "engine.json").exists(), "a clean stop removes engine.json"
    assert "Traceback" not in stderr_path.read_text()
