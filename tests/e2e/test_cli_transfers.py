"""`lotwise transfers …` against a real gRPC engine with authentication on: each person runs
the CLI with their own token, so the flow's roles, the self-approval rule and the grants
decide as they would for anyone. Exit codes as everywhere: 0 ok, 1 refused, 2 bad usage."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from adapters.auth.files import WatchedFile, load_policy, load_secret, write_private
from adapters.memory.documents import InMemoryDocuments
from engine import bootstrap
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier, mint_token
from engine.api.server import ApiMetrics, start_server
from engine.cli import app
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.transfer_flow import default_flow
from engine.runtime.gateway.orgtree import OrgDesk
from engine.runtime.gateway.transfers import TransferDesk
from tests.integration.test_transfers import POLICY, SECRET

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    folder = tmp_path_factory.mktemp("auth")
    secret_file, policy_file = folder / "signing.key", folder / "policy.toml"
    write_private(secret_file, SECRET)
    policy_file.write_text(POLICY)
    verifier = TokenVerifier([WatchedFile(secret_file, load_secret, check_interval_s=0.0)], TokenSettings())
    authorizer = Authorizer(
        WatchedFile(policy_file, load_policy, check_interval_s=0.0).current, AuthMetrics(CollectorRegistry())
    )
    gateway = bootstrap.local_gateway(shards=2, sweep_interval_ms=0)
    documents = InMemoryDocuments()
    await gateway.put_sku(Sku("GLU"))
    for site in (Site("DC", "acme/east"), Site("BOS", "acme/east")):
        await gateway.put_site(site)
    await gateway.execute(Receive("r1", "GLU", "DC", "L1", 300, status="available"))
    server, port = await start_server(
        gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=gateway,
        auth=ServerAuth(verifier, authorizer),
        org=OrgDesk(documents, gateway),
        transfers=TransferDesk(gateway, documents, default_flow()),
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.5)
        await gateway.close()


async def lotwise(who: tuple[str, list[str]], *args: str) -> Result:
    env = {"NO_COLOR": "1", "COLUMNS": "100", "TERM": "dumb", "LOTWISE_TOKEN": mint_token(SECRET, who[0], who[1])}
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


SAM = ("sam", ["store"])
MAYA = ("maya", ["site_manager"])


async def test_a_transfer_from_request_to_receipt_on_the_command_line(target: str) -> None:
    t = ("--target", target)
    create = ("transfers", "create", "CLI-1", "--from", "DC", "--to", "BOS", "--line", "sku=GLU,qty=120", *t)
    first = await lotwise(SAM, *create)
    assert first.exit_code == 0, first.output
    assert "transfer CLI-1 requested: now requested" in first.output
    again = await lotwise(SAM, *create)  # the same create again: harmless, same answer
    assert again.exit_code == 0, again.output

    own = await lotwise(SAM, "transfers", "approve", "CLI-1", *t)  # no approval grant
    assert own.exit_code == 1
    assert "no grant for approve_transfer on site:DC" in own.output
    ok = await lotwise(MAYA, "transfers", "approve", "CLI-1", "--note", "fine", *t)
    assert ok.exit_code == 0, ok.output
    assert "now approved" in ok.output

    shipped = await lotwise(SAM, "transfers", "ship", "CLI-1", "--eta", "2030-01-02T08:00Z", *t)
    assert shipped.exit_code == 0, shipped.output
    got = await lotwise(SAM, "transfers", "receive", "CLI-1", "--line", "sku=GLU,qty=100,damaged=5", "--final", *t)
    assert got.exit_code == 0, got.output
    assert "received: now received" in got.output

    shown = await lotwise(SAM, "transfers", "show", "CLI-1", "--format", "json", *t)
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert [s["action"] for s in doc["steps"]] == ["create", "approve", "ship", "receive"]
    assert doc["lots"] == [{"sku": "GLU", "lot_id": "L1", "shipped": 120, "received": 100, "damaged": 5, "short": 15}]
    assert [x["state"] for x in doc["state_times"]] == ["requested", "approved", "shipped", "received"]
    table = await lotwise(SAM, "transfers", "show", "CLI-1", *t)
    assert "time in each state" in table.output
    assert "DC → BOS, received" in table.output

    listed = await lotwise(SAM, "transfers", "list", "--site", "BOS", "--format", "csv", *t)
    assert listed.exit_code == 0, listed.output
    rows = list(csv.DictReader(io.StringIO(listed.output)))
    assert [(r["transfer_id"], r["state"], r["total_qty"]) for r in rows] == [("CLI-1", "received", "120")]


async def test_refusals_exit_1_with_the_engines_words(target: str) -> None:
    t = ("--target", target)
    missing = await lotwise(SAM, "transfers", "show", "NOPE", *t)
    assert missing.exit_code == 1
    assert "transfer 'NOPE'" in missing.output
    create = ("transfers", "create", "CLI-2", "--from", "DC", "--to", "BOS", "--line", "sku=GLU,qty=5", *t)
    assert (await lotwise(SAM, *create)).exit_code == 0
    shipped_early = await lotwise(SAM, "transfers", "ship", "CLI-2", *t)  # not approved yet
    assert shipped_early.exit_code == 1
    assert (await lotwise(SAM, "transfers", "cancel", "CLI-2", *t)).exit_code == 0


async def test_times_sums_up_the_time_in_each_state(target: str) -> None:
    t = ("--target", target)
    create = ("transfers", "create", "CLI-3", "--from", "DC", "--to", "BOS", "--line", "sku=GLU,qty=1", *t)
    assert (await lotwise(SAM, *create)).exit_code == 0
    assert (await lotwise(MAYA, "transfers", "approve", "CLI-3", *t)).exit_code == 0
    assert (await lotwise(SAM, "transfers", "ship", "CLI-3", *t)).exit_code == 0
    result = await lotwise(SAM, "transfers", "times", "--format", "json", *t)
    assert result.exit_code == 0, result.output
    stats = {r["state"]: r for r in json.loads(result.output)}
    assert stats["request_to_dispatch"]["count"] >= 1
    assert stats["requested"]["count"] >= 2
    assert stats["shipped"]["p90_ms"] >= stats["shipped"]["p50_ms"] >= 0
    table = await lotwise(SAM, "transfers", "times", "--site", "BOS", *t)
    assert table.exit_code == 0, table.output
    assert "request_to_dispatch" in table.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("create", "T", "--from", "DC", "--to", "BOS", "--line", "sku=GLU"), "sku= and qty= are required"),
        (("create", "T", "--from", "DC", "--to", "BOS", "--line", "sku=GLU,qty=x"), "qty must be a whole number"),
        (("create", "T", "--from", "DC", "--to", "BOS", "--line", "sku=GLU,qty=1,colour=red"), "write sku=…"),
        (("create", "T", "--from", "DC", "--to", "BOS", "--line", "sku=GLU,qty=1,value=1e3"), "value must be"),
        (("create", "T 1", "--from", "DC", "--to", "BOS", "--line", "sku=GLU,qty=1"), "TRANSFER_ID"),
        (("receive", "T"), "name what arrived, or give --final"),
        (("receive", "T", "--line", "sku=GLU,qty=0"), "at least one unit"),
        (("ship", "T", "--eta", "soon"), "cannot read 'soon' as a time"),
        (("list", "--limit", "0"), "--limit"),
    ],
)
async def test_bad_usage_exits_2_before_any_call(args: tuple[str, ...], words: str) -> None:
    result = await lotwise(SAM, "transfers", *args, "--target", "127.0.0.1:1")  # nothing listens there
    assert result.exit_code == 2, result.output
    assert words in result.output


@pytest.mark.parametrize(
    "command", ["create", "approve", "reject", "cancel", "ship", "receive", "show", "list", "times"]
)
async def test_every_transfers_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, ["transfers", command, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "Usage" in result.output


async def test_the_module_names_every_command_in_its_docstring() -> None:
    import engine.cli.transfers as module

    text = module.__doc__ or ""
    for command in ("create", "approve", "ship", "receive", "show", "list"):
        assert f"lotwise transfers {command}" in text
