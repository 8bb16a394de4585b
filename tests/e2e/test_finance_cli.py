"""`lotwise finance …` against a real gRPC server serving lotwise.v1.Accounting over the
finance store in chDB, fed by the finance follower's sink with the furniture maker's
journal (receipt, sale on 2/10 n/30, a return). Every command's 0; 1 for a refusal, 2 for
bad usage, 3 for an engine that cannot be reached; json and csv outputs carry the data."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import Result
from typer.testing import CliRunner

from adapters.clickhouse.finance import FinanceStoreConfig, open_finance_store
from adapters.memory.finance import InMemoryFinanceDocuments
from engine.api.server import start_server
from engine.bootstrap.local import local_gateway
from engine.cli import app
from engine.domain.model import External
from engine.finance.exports import default_profiles
from engine.finance.follower import FinanceFeed
from engine.finance.mapping import default_rules
from engine.finance.service import FinanceDesk
from tests.finance_fixtures import SETUP, Journal, fin
from tests.history_fixtures import chdb_dsn_for_session  # noqa: F401 - the session's chDB path

pytestmark = pytest.mark.asyncio(loop_scope="session")
ENV = {"NO_COLOR": "1", "COLUMNS": "120", "TERM": "dumb"}
INVOICE_DAY_MS = 1_795_132_800_000  # 2026-11-20


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target(chdb_dsn_for_session: str) -> AsyncIterator[str]:  # noqa: F811
    store = await open_finance_store(FinanceStoreConfig(chdb_dsn_for_session, f"f_{uuid.uuid4().hex[:12]}"))
    feed = FinanceFeed(store, SETUP, default_rules(), InMemoryFinanceDocuments())
    j = Journal(at_ms=INVOICE_DAY_MS)
    j.receive("TABLE-1", "SH01", "L1", 10, fin("800"), doc="PO-1")
    j.issue("TABLE-1", "SH01", "L1", 10, fin(price="1000", rate="0.13", terms="2/10 n/30"), doc="SO-1")
    j.receive("TABLE-1", "SH01", "L1", 1, None, doc="RMA-1?orig=SO-1", source=External.CUSTOMER)
    await feed.apply(tuple(j.entries))
    gateway = local_gateway(shards=1, sweep_interval_ms=0)
    server, port = await start_server(gateway, "127.0.0.1", 0, finance=FinanceDesk(store, feed, default_profiles()))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.5)
        await gateway.close()
        await store.close()


async def lotwise(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=ENV)


async def ok(*args: str) -> str:
    result = await lotwise(*args)
    assert result.exit_code == 0, result.output
    return result.output


async def vouchers(target: str) -> list[dict[str, str]]:
    return json.loads(await ok("finance", "vouchers", "--format", "json", "--target", target))  # type: ignore[no-any-return]


async def test_review_post_trace_and_export(target: str, tmp_path: Path) -> None:
    found = {v["kind"]: v for v in await vouchers(target)}
    assert set(found) == {"receipt", "sale", "return"}
    sale = found["sale"]["voucher_id"]
    shown = json.loads(await ok("finance", "show", sale, "--format", "json", "--target", target))
    assert {ln["role"] for ln in shown["lines"]} == {"cogs", "inventory", "ar", "revenue", "output_tax"}
    assert "annotated" in await ok("finance", "annotate", sale, "checked", "--target", target)
    assert "approved" in await ok("finance", "approve", sale, "--target", target)
    assert "posted" in await ok("finance", "post", sale, "--target", target)
    trace = json.loads(await ok("finance", "trace", "SO-1", "--format", "json", "--target", target))
    assert {v["kind"] for v in trace["vouchers"]} == {"sale", "return"}
    explained = list(
        csv.DictReader(io.StringIO(await ok("finance", "explain", sale, "--format", "csv", "--target", target)))
    )
    assert {r["rule"].split(" ", 1)[1] for r in explained} >= {"cost of goods sold", "revenue", "output tax"}
    value = json.loads(await ok("finance", "valuation", "--format", "json", "--target", target))
    assert [(r["lot"], r["qty"], r["value"]) for r in value] == [("L1", 1, "800.00")]
    terms = json.loads(await ok("finance", "terms", "--format", "json", "--target", target))
    plan = next(p for p in terms["plans"] if p["doc"] == "SO-1")
    assert (plan["discount_by"], plan["due"], plan["net_if_discounted"]) == ("2026-11-30", "2026-12-20", "11074.00")
    out = tmp_path / "batch.csv"
    assert "1 vouchers" in await ok("finance", "export", "B1", "--profile", "csv", "-o", str(out), "--target", target)
    assert sale in out.read_text()
    await ok("finance", "export", "B1", "--profile", "csv", "-o", str(tmp_path / "again.csv"), "--target", target)
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes()


async def test_invoice_and_a_baseline_arriving_later(target: str) -> None:
    out = await ok(
        "finance", "invoice", "INV-9", "--company", "acme", "--receipt", "PO-1", "--net", "8000", "--tax", "1040",
        "--terms", "60 days after acceptance", "--target", target,
    )  # fmt: skip
    assert "supplier_invoice" in out
    terms = json.loads(await ok("finance", "terms", "--format", "json", "--target", target))
    plan = next(p for p in terms["plans"] if p["doc"] == "INV-9")
    assert plan["baseline"] == "waiting: acceptance"
    await ok("finance", "baseline", "INV-9", "acceptance", "--at", "2026-12-31", "--target", target)
    terms = json.loads(await ok("finance", "terms", "--format", "json", "--target", target))
    plan = next(p for p in terms["plans"] if p["doc"] == "INV-9")
    assert (plan["baseline"], plan["due"]) == ("2026-12-31", "2027-03-01")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("finance", "approve", "sale:nope"), "not found"),
        (("finance", "reject", "sale:nope", "why"), "not found"),
        (("finance", "export", "B9", "--profile", "sap"), "profile"),
        (("finance", "baseline", "X", "lunch", "--at", "2026-01-01"), "baseline"),
        (("finance", "invoice", "I-1", "--company", "nobody", "--net", "1"), "company"),
    ],
)
async def test_refusals_exit_1_and_say_why(target: str, args: tuple[str, ...], needle: str) -> None:
    result = await lotwise(*args, "--target", target)
    assert result.exit_code == 1, result.output
    assert needle in result.output.lower()


@pytest.mark.parametrize(
    "args",
    [
        ("finance", "vouchers", "--limit", "0"),
        ("finance", "valuation", "--as-of", "yesterday"),
        ("finance", "baseline", "X", "acceptance"),
        ("finance", "approve"),
    ],
)
async def test_bad_usage_exits_2(target: str, args: tuple[str, ...]) -> None:
    result = await lotwise(*args, "--target", target)
    assert result.exit_code == 2, result.output


async def test_unreachable_exits_3() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    result = await lotwise("finance", "vouchers", "--target", closed, "--timeout", "2")
    assert result.exit_code == 3, result.output


@pytest.mark.parametrize(
    "command",
    [
        "vouchers",
        "show",
        "annotate",
        "approve",
        "reject",
        "post",
        "trace",
        "explain",
        "valuation",
        "terms",
        "invoice",
        "baseline",
        "export",
    ],
)
async def test_every_command_has_help(command: str) -> None:
    result = await lotwise("finance", command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output
