"""Every `lotwise` client command × every exit code it can return, against ONE real engine.

The rig (module-scoped, no Ray): shards in this process (Gateway.local) journaling to a
real nats-server, the history sink feeding chDB, and one gRPC server serving Inventory,
Admin (with a dead-letter desk over the in-memory store) and History on 127.0.0.1. Each
command runs through typer's CliRunner in a worker thread (the CLI runs its own loop) at
COLUMNS=80, the narrowest terminal a newcomer is likely to have.

Exit codes (engine/cli/common.py ExitCode): 0 ok, 1 refused by the engine, 2 bad usage
(checked before any call: tests/unit/test_cli_usage.py has the rest), 3 unreachable;
130 (Ctrl-C during a call) is in tests/unit/test_cli_usage.py.

`verify` exits 1 when a shard's live state differs from its journal: the test changes a
cell of the in-process shards behind the engine's back, as tests/integration/test_admin_api.py
does, then puts it back. `lotwise up` runs as a subprocess in tests/e2e/test_cli.py: exit 1
when the engine cannot start (a data dir that is a file), 2 on bad settings or a taken
port, 130 after a clean stop on SIGINT; more of its 2s are in tests/unit/test_cli_usage.py.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from adapters.clickhouse.store import HistoryStoreConfig
from adapters.memory.deadletters import InMemoryDeadLetters
from adapters.nats.server import EmbeddedNats
from engine.api.server import start_server
from engine.bootstrap.history import HistoryConfig, journal_config_for, start_history
from engine.cli import app
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive, ReserveLine
from engine.domain.deadletter_desk import DeadLetterDesk
from engine.domain.model import MS_PER_DAY, QuantKey
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine
from tests.e2e.test_cli_dlq import letter
from tests.history_fixtures import chdb_dsn_for_session  # noqa: F401 - the session's chDB path
from tests.integration.test_history import FAST_SINK, nats_backend
from tests.nats_fixtures import nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENV = {"NO_COLOR": "1", "COLUMNS": "80", "TERM": "dumb"}
HOLD = "SO-7"  # an active hold
LONG_LOT = "LOT-2026-0001-0007"  # longer than a narrow table's lot column


class Published:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.messages.append(subject)


async def _seed(gateway: Gateway) -> None:
    for sku in ("sku-a", "sku-b"):
        await gateway.put_sku(Sku(sku))
    for site in ("north", "south"):
        await gateway.put_site(Site(site, "acme"))
    later = time.time_ns() // 1_000_000 + 10 * MS_PER_DAY
    for cmd in (
        Receive("r1", "sku-a", "north", LONG_LOT, 40, bin="A/01/P-0003", status="available", expires_at_ms=later),
        Receive("r2", "sku-b", "south", "L2", 20, status="available", expires_at_ms=later, doc_ref="PO-2026-000042"),
    ):
        await gateway.execute(cmd)
    await gateway.reserve("res-7", HOLD, [HoldLine("sku-a", "north", ReserveLine(5))], ttl_ms=600_000, doc_ref=HOLD)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig(nats_server: EmbeddedNats, chdb_dsn_for_session: str) -> AsyncIterator[tuple[str, Gateway]]:  # noqa: F811
    journal_config = journal_config_for(f"x{uuid.uuid4().hex[:8]}", nats_server.url)
    gateway = Gateway.local(shards=2, sweep_interval_ms=0, backend=nats_backend(journal_config))
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = HistoryConfig(HistoryStoreConfig(dsn=chdb_dsn_for_session, database=database), FAST_SINK)
    runtime = server = None
    store = InMemoryDeadLetters()
    try:
        await _seed(gateway)
        await store.put(letter(1))
        await store.put(letter(2))  # replayed by a test; 1 stays for the others
        runtime = await start_history(config, journal_config, CollectorRegistry())
        assert runtime.sink is not None
        await runtime.sink.wait_caught_up(timeout_s=20)
        server, port = await start_server(
            gateway,
            "127.0.0.1",
            0,
            admin=gateway,
            history=runtime.service,
            dead_letters=DeadLetterDesk(store, Published().publish),
        )
        yield f"127.0.0.1:{port}", gateway
    finally:
        if server is not None:
            await server.stop(0.5)
        if runtime is not None:
            await runtime.store.command("DROP DATABASE IF EXISTS {db}")
            await runtime.stop()
        await gateway.close()


@pytest.fixture(scope="module")
def target(rig: tuple[str, Gateway]) -> str:
    return rig[0]


async def lotwise(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=ENV)


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# ---- every command: 0 and 1 against the engine, 3 against a closed port --------------

OK = [
    ("availability", "sku-a", "north", "--by", "lot"),
    ("stock",),
    ("stock", "--site", "north", "--by", "lot"),
    ("hold", HOLD),
    ("sites",),
    ("verify",),
    ("shards",),
    ("history", "balance", "--by", "site"),
    ("history", "movements", "--sku", "sku-a"),
    ("history", "consumption", "sku-a", "north"),
    ("history", "turnover", "sku-a", "north"),
    ("history", "expiry"),
    ("history", "trace", LONG_LOT),
    ("history", "status"),
    ("dlq", "list"),
    ("dlq", "show", "1"),
]

REFUSED = [
    (("availability", "no-such-sku", "north"), "not found (NOT_FOUND): sku 'no-such-sku'"),
    (("availability", "sku-a", "NOPE-SITE"), "`lotwise sites` lists the sites"),
    (("stock", "--site", "NOPE-SITE"), "not found (NOT_FOUND): site 'NOPE-SITE'"),
    (("hold", "no-such-hold"), "not found (NOT_FOUND): hold 'no-such-hold'"),
    (("sites", "--org", "nowhere"), "org node 'nowhere'"),
    (("stock", "--org", "nowhere"), "org node 'nowhere'"),
    (("history", "balance", "--site", "NOPE-SITE"), "site 'NOPE-SITE'"),
    (("history", "movements", "--site", "NOPE-SITE"), "site 'NOPE-SITE'"),
    (("history", "movements", "--cursor", "not-a-cursor"), "cursor"),
    (("history", "consumption", "sku-a", "NOPE-SITE"), "site 'NOPE-SITE'"),
    (("history", "turnover", "sku-a", "NOPE-SITE"), "site 'NOPE-SITE'"),
    (("history", "expiry", "--site", "NOPE-SITE"), "site 'NOPE-SITE'"),
    (("dlq", "show", "999"), "NOT_FOUND"),
    (("dlq", "replay", "999"), "1 of 1 letters failed"),
]

# Commands that only print help without a call are left out (dlq replay needs a seq).
ALL_CLIENT_COMMANDS = [*OK, ("dlq", "replay", "1"), ("demo", "--run-id", "x"), ("import", "tests/e2e/sites.csv")]


@pytest.mark.parametrize("args", OK, ids=" ".join)
async def test_each_read_command_answers_0(target: str, args: tuple[str, ...]) -> None:
    result = await lotwise(*args, "--target", target)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output  # at 80 columns nothing is cut


@pytest.mark.parametrize(("args", "needle"), REFUSED, ids=lambda a: " ".join(a) if isinstance(a, tuple) else "")
async def test_each_refusal_exits_1_and_says_what(target: str, args: tuple[str, ...], needle: str) -> None:
    result = await lotwise(*args, "--target", target)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("lotwise: error: ")]
    assert len(errors) == 1, result.output
    assert needle in result.output


@pytest.mark.parametrize("args", ALL_CLIENT_COMMANDS, ids=" ".join)
async def test_each_client_command_exits_3_unreachable_saying_where_it_looked(args: tuple[str, ...]) -> None:
    address = closed_port()
    result = await lotwise(*args, "--target", address, "--timeout", "2")
    assert result.exit_code == 3, result.output
    [first] = [line for line in result.output.splitlines() if line.startswith("lotwise: error: ")]
    assert first.startswith(f"lotwise: error: cannot reach the engine at {address} (from --target")
    assert "network namespace" in first  # the likely cause, on the same line


async def test_import_exits_0_then_1_for_refused_rows(target: str, tmp_path: Path) -> None:
    good = tmp_path / "sites.csv"
    good.write_text("site,org_path,kind,name\neast,acme,warehouse,East\n")
    result = await lotwise("import", str(good), "--quiet", "--target", target)
    assert result.exit_code == 0, result.output
    bad = tmp_path / "lots.csv"
    bad.write_text("sku,site,lot_id,qty\nno-such-sku,north,L9,5\n")
    result = await lotwise("import", str(bad), "--quiet", "--target", target)
    assert result.exit_code == 1, result.output
    assert "no-such-sku" in result.output


async def test_demo_against_the_engine_exits_0(target: str) -> None:
    result = await lotwise("demo", "--target", target, "--run-id", "xc1", "--hold-ttl-ms", "200")
    assert result.exit_code == 0, result.output
    assert "Demo complete (run id xc1)" in result.output


async def test_dlq_replay_exits_0(target: str) -> None:
    result = await lotwise("dlq", "replay", "2", "--target", target)
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1" in result.output


async def test_verify_in_json_says_every_shard_matches(target: str) -> None:
    result = await lotwise("verify", "--format", "json", "--target", target)
    assert result.exit_code == 0, result.output
    assert {c["ok"] for c in json.loads(result.stdout)} == {True}


async def test_verify_exits_1_when_a_shard_differs_from_its_journal(rig: tuple[str, Gateway]) -> None:
    target, gateway = rig
    shard = gateway.directory.shard_for("sku-b", "south")
    quant = gateway.handles[shard].core.cells[("sku-b", "south")].ledger.quants[QuantKey("L2", "", "available", "own")]
    quant.qty += 1  # a write that skipped the journal: what verify is there to catch
    try:
        result = await lotwise("verify", "--target", target)
    finally:
        quant.qty -= 1  # the engine is shared: put it back
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("lotwise: error: ")]
    assert error == "lotwise: error: verify: 1 of 2 shards differ from their journal"
    assert (await lotwise("verify", "--target", target)).exit_code == 0  # put back: it matches again


# ---- --format json|csv: plain, parseable, the same numbers ----------------------------


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("stock",), "available"),
        (("availability", "sku-a", "north", "--by", "lot"), "lot"),
        (("sites",), "site"),
        (("shards",), "shard"),
        (("history", "movements", "--sku", "sku-a"), "kind"),
        (("history", "balance", "--by", "site"), "qty"),
        (("history", "consumption", "sku-a", "north"), "consumed"),
        (("history", "turnover", "sku-a", "north"), "avg_on_hand"),
        (("history", "status"), "pending_messages"),
        (("dlq", "list"), "reason"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else a,
)
async def test_json_and_csv_carry_the_same_rows(target: str, args: tuple[str, ...], key: str) -> None:
    as_json = await lotwise(*args, "--format", "json", "--target", target)
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.stdout)
    assert records
    assert all(key in r for r in records)
    as_csv = await lotwise(*args, "--format", "csv", "--target", target)
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r[key] for r in rows] == ["" if r[key] is None else str(r[key]) for r in records]
    assert "\x1b[" not in as_json.stdout + as_csv.stdout


async def test_stock_json_has_the_quantities(target: str) -> None:
    result = await lotwise("stock", "--sku", "sku-a", "--format", "json", "--target", target)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["sku"], row["site"], row["qty"], row["held"], row["available"]) == ("sku-a", "north", 40, 5, 35)


async def test_dlq_show_json_carries_the_original_bytes(target: str) -> None:
    result = await lotwise("dlq", "show", "1", "--format", "json", "--target", target)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert base64.b64decode(shown["payload_base64"]) == letter(1).payload
    assert shown["headers"] == [{"name": "X-Cabinet", "value": "C-9"}]


async def test_hold_and_trace_json_are_one_object_each(target: str) -> None:
    hold = json.loads((await lotwise("hold", HOLD, "--format", "json", "--target", target)).stdout)
    assert (hold["hold_id"], hold["state"]) == (HOLD, "active")
    assert [a["lot"] for a in hold["allocations"]] == [LONG_LOT]
    trace = json.loads((await lotwise("history", "trace", LONG_LOT, "--format", "json", "--target", target)).stdout)
    assert [s["site"] for s in trace["sites"]] == ["north"]


# ---- readable at 80 columns: ids and quantities whole ----------------------------------


async def test_wide_tables_switch_to_records_at_80_columns(target: str) -> None:
    moves = await lotwise("history", "movements", "--sku", "sku-a", "--target", target)
    assert moves.exit_code == 0, moves.output
    assert "…" not in moves.output
    for field, value in (("lot", LONG_LOT), ("qty", "40"), ("hold", HOLD), ("from", "A/01/P-0003 available own")):
        assert re.search(rf"^{field}:\s+{value}\s*$", moves.output, re.MULTILINE), (field, moves.output)
    trace = await lotwise("history", "trace", LONG_LOT, "--target", target)
    assert "…" not in trace.output
    assert re.search(r"^balance:\s+40\s*$", trace.output, re.MULTILINE), trace.output
    stock = await lotwise("stock", "--by", "sku", "--by", "site", "--by", "lot", "--by", "bin", "--target", target)
    assert "…" not in stock.output
    assert LONG_LOT in stock.output
    assert "A/01/P-0003" in stock.output
