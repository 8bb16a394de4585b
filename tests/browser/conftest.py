"""Fixtures of the browser tier: a real engine (Ray shards, embedded NATS journal, chDB
history, ingestion with its dead letters, gRPC, the console over HTTP) with a small estate
seeded through the API, and Debian's chromium driven by Playwright (no downloaded browser).

Screenshots go to build/test-artifacts/browser/ (LOTWISE_TEST_ARTIFACTS overrides it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
import orjson
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from engine.api.auth import mint_token
from engine.api.client import LotwiseClient
from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import history_pb2_grpc as hpb_grpc
from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
from engine.api.gen.lotwise.v1 import replenishment_pb2_grpc as rpb_grpc
from engine.bootstrap import RunningEngine, running_engine
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.domain.model import Finance
from engine.runtime.types import HoldLine
from tests.conftest import AUTH_METADATA, TEST_ADMIN_TOKEN, TEST_SECRET_FILE, engine_settings

CHROMIUM = Path("/usr/bin/chromium")
# What the note on headless chromium asks for: no sandbox (root in a container), no GPU, and
# nothing that talks to the network on its own (the tests run in a loopback-only namespace).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(
    os.environ.get("LOTWISE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" / "test-artifacts")
)
DAY_MS = 86_400_000

POLICY = """
[roles]
admin = [
  "read", "read_cost", "reserve", "receive", "move", "adjust", "count", "admin", "approve_transfer",
  "plan", "approve_voucher", "post_voucher", "export_voucher",
]
clerk = ["read", "move", "count"]
viewer = ["read"]
planner = ["read", "plan"]

[[grants]]
group = "admin"
role = "admin"
org = ""

[[grants]]
subject = "clerk-bos"
role = "clerk"
site = "BOS"
bin = "A"

[[grants]]
subject = "clerk-pgs"
role = "clerk"
site = "PGS"
bin = "A"

[[grants]]
subject = "viewer-bos"
role = "viewer"
site = "BOS"

[[grants]]
subject = "planner-sup1"
role = "planner"
site = "SUP1"
"""

INGEST = """
[cabinets.CAB-BOS-1]
site = "BOS"
bin = "A/09"
"""

SITES = (
    Site("BOS", "acme/east/boston", "store", "Boston store"),
    Site("NYC", "acme/east/nyc", "store", "New York store"),
    Site("LA", "acme/west/la", "front_warehouse", "Los Angeles"),
    # Replenished from a supplier: their stock is used up (qty 0), so the estate's totals
    # above stay as they are, and each gets an open suggestion.
    Site("SUP1", "acme/supply/sup1", "store", "Supply one"),
    Site("SUP2", "acme/supply/sup2", "store", "Supply two"),
)
SUGGESTED = (("SUG", "SUP1"), ("SUG", "SUP2"))
# The stock table's pages: one sku in PAGED_LOTS lots of 1 at a site of its own org, half on
# shelf A (clerk-pgs sees those only), half on B: more rows by lot than one page shows.
PAGED_SITE = Site("PGS", "beta/paging/pgs", "store", "Paging store")
PAGED_LOTS = 320
# Active holds: one at BOS shelf A (a shelf clerk sees it), one at BOS shelf B, one at NYC.
HOLDS = (("CON-H-A", "BOS", "A"), ("CON-H-B", "BOS", "B"), ("CON-H-NYC", "NYC", ""))


@dataclass(frozen=True, slots=True)
class Estate:
    engine: RunningEngine
    url: str  # the console, http://127.0.0.1:port/
    admin_token: str
    clerk_token: str  # clerk-bos: read, move, count on BOS shelves A only
    viewer_token: str  # viewer-bos: read on the whole of BOS
    seeded_at_ms: int  # before the first receipt: the as-of slider shows nothing there
    bad_event_id: str
    paged_clerk_token: str = ""  # clerk-pgs: read, move, count on PGS shelves A only


def artifacts_dir() -> Path:
    path = ARTIFACTS / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _seed(client: LotwiseClient) -> None:
    now = int(time.time() * 1000)
    await client.put_sku(Sku("GLU", "Glucose strips 血糖试纸", "box"))
    await client.put_sku(Sku("GAU", "Gauze", "ea"))
    for site in SITES:
        await client.put_site(site)
    receipts = [
        ("GLU", "BOS", "L-BOS-1", 100, "A/01/P1", "available", now + 10 * DAY_MS),
        ("GLU", "BOS", "L-BOS-2", 40, "A/02/P3", "qc_hold", now + 200 * DAY_MS),
        ("GLU", "BOS", "L-BOS-3", 25, "B/01/P1", "available", now + 400 * DAY_MS),
        ("GAU", "BOS", "G-BOS-1", 300, "A/01/P2", "available", 0),
        ("GLU", "NYC", "L-NYC-1", 70, "A/01/P1", "available", now + 20 * DAY_MS),
        ("GLU", "LA", "L-LA-1", 50, "Z/01", "available", now + 5 * DAY_MS),
    ]
    for sku, site, lot, qty, bin_path, status, expires in receipts:
        await client.receive(
            sku, site, lot, qty, bin=bin_path, status=status, expires_at_ms=expires, doc_ref=f"PO-{lot}"
        )
    await client.consume("GLU", "BOS", 5, lot_id="L-BOS-1", doc_ref="CASE-17")
    await _seed_pages(client)
    for hold_id, at, shelf in HOLDS:
        line = ReserveLine(2, bin_prefix=shelf)
        await client.reserve([HoldLine("GLU", at, line)], 3_600_000, hold_id=hold_id, doc_ref=f"SO-{hold_id}")


async def _seed_pages(client: LotwiseClient) -> None:
    await client.put_sku(Sku("PGX", "Paged swabs", "ea"))
    await client.put_site(PAGED_SITE)
    for n in range(PAGED_LOTS):
        shelf = "A" if n % 2 == 0 else "B"
        await client.receive("PGX", PAGED_SITE.site, f"PL-{n:04d}", 1, bin=f"{shelf}/{n % 7:02d}", doc_ref=f"PO-PL-{n}")


async def _seed_suggestions(client: LotwiseClient) -> None:
    """A supplier per pair, a priced receipt (a voucher for the sandbox) and a scan that
    empties the pair: the replenishment follower raises an open suggestion for each."""
    await client.put_sku(Sku("SUG", "Syringes 注射器", "box"))
    stub = rpb_grpc.ReplenishmentStub(client.channel)
    for sku, site in SUGGESTED:
        supplier = rpb.Supplier(sku=sku, site=site, supplier="medsupply", moq=50, multiple=10, keeper="keeper-li")
        await stub.PutSupplier(rpb.PutSupplierRequest(supplier=supplier), metadata=AUTH_METADATA, timeout=30)
        cost = Finance("CNY", unit_cost="12.50")
        await client.receive(
            sku, site, f"L-{site}", 10, bin="C/01", status="available", doc_ref=f"PO-{site}", finance=cost
        )
        await client.consume(sku, site, 10, doc_ref=f"SCAN-{site}")
    deadline = time.monotonic() + 60
    for sku, site in SUGGESTED:
        while True:
            try:
                found = await stub.ExplainSuggestion(
                    rpb.SuggestionRef(sku=sku, site=site), metadata=AUTH_METADATA, timeout=10
                )
                if found.suggestion.state == "open":
                    break
            except grpc.aio.AioRpcError as err:
                if err.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
            assert time.monotonic() < deadline, f"no open suggestion for {sku}@{site}"
            await asyncio.sleep(0.1)


async def _wait_for_history(engine: RunningEngine, timeout_s: float = 30.0) -> None:
    """History is fed by a journal follower, a moment after each write: wait until it has all."""
    async with grpc.aio.insecure_channel(engine.grpc_address) as channel:
        stub = hpb_grpc.HistoryStub(channel)
        deadline = time.monotonic() + timeout_s
        while True:
            status = await stub.GetSinkStatus(hpb.GetSinkStatusRequest(), metadata=AUTH_METADATA)
            if status.running and status.pending_messages == 0 and status.acked_position >= status.stream_position:
                return
            assert time.monotonic() < deadline, f"history did not catch up: {status}"
            await asyncio.sleep(0.1)


async def _dead_letter(engine: RunningEngine) -> str:
    """A cabinet event for a sku nobody put in the catalog: ingestion dead-letters it."""
    assert engine.nats is not None
    assert engine.ingest is not None
    event_id = "cab-bos-take-1"
    take = {"event_id": event_id, "type": "scan_take", "cabinet_id": "CAB-BOS-1", "sku": "NOPE-404", "qty": 2}
    nc = await nats.connect(engine.nats.url)
    try:
        subject = f"lotwise.{engine.settings.namespace}.in.cabinet.CAB-BOS-1"
        await nc.jetstream().publish(subject, orjson.dumps(take))
        await engine.ingest.consumer.wait_idle(timeout_s=15)
    finally:
        await nc.close()
    return event_id


# Package scope: the engine and the browser stop once tests/browser is done, not at the end of
# the whole suite (they would cost CPU under every later test).
@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def estate(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Estate]:
    folder = tmp_path_factory.mktemp("console")
    (folder / "policy.toml").write_text(POLICY)
    (folder / "ingest.toml").write_text(INGEST)
    settings = engine_settings(auth_policy=folder / "policy.toml", ingest_config=folder / "ingest.toml", console_port=0)
    async with running_engine(settings) as engine:
        assert engine.console_url, "the console is on by default"
        seeded_at = int(time.time() * 1000) - 60_000
        async with LotwiseClient(engine.grpc_address, timeout_s=30) as client:
            await _seed(client)
            await _seed_suggestions(client)
        assert engine.finance is not None, "finance is on by default"
        await engine.finance.follower.wait_caught_up(timeout_s=60)
        bad_event = await _dead_letter(engine)
        await _wait_for_history(engine)
        secret = TEST_SECRET_FILE.read_bytes().strip()
        clerk = mint_token(secret, "clerk-bos", [], ttl_s=3_600)
        viewer = mint_token(secret, "viewer-bos", [], ttl_s=3_600)
        paged_clerk = mint_token(secret, "clerk-pgs", [], ttl_s=3_600)
        yield Estate(
            engine, engine.console_url.rstrip("/"), TEST_ADMIN_TOKEN, clerk, viewer, seeded_at, bad_event, paged_clerk
        )


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (scripts/setup-browser installs Debian's chromium)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # A fresh, throw-away profile per launch (Playwright makes one): no state between runs.
        launched = await playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: ConsoleMessage) -> None:
        # A 4xx answer is logged by chromium as a failed load: that is a refusal a test asked for.
        if msg.type == "error" and "the server responded with a status of 4" not in msg.text:
            errors.append(msg.text)

    opened.on("console", on_console)
    yield opened
    # A page script error (htmx refused by the CSP, a broken swap) fails the test that caused it.
    assert not errors, f"errors in the page: {errors}"


async def sign_in(page: Page, estate: Estate, token: str) -> None:
    await page.goto(f"{estate.url}/login")
    await page.fill("#token", token)
    await page.click("#sign-in")
    await page.wait_for_url(f"{estate.url}/stock")


def have_cjk_font() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    import subprocess

    out = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True, timeout=30, check=False)
    return bool(out.stdout.strip())
