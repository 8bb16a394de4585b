"""ListTransfers through the listing index: pages read about their own size, whatever the
bucket holds; entries left by a create cut short are skipped; documents from before the
index are indexed at start. Against the in-memory store and the real JetStream bucket."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from adapters.memory.documents import InMemoryDocuments
from adapters.nats.documents import DocumentsConfig, connect_documents
from adapters.nats.server import EmbeddedNats
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.documents import DocumentStore, Stored
from engine.domain.transfer_flow import (
    Step,
    Transfer,
    TransferLine,
    TransferQuery,
    default_flow,
    transfer_to_doc,
    with_step,
)
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.transfers import INDEX_PREFIX, Actor, TransferDesk, document_key

SAM = Actor("sam")


class CountingReads:
    """A document store that counts `get`s (the listing's cost) and passes everything on."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner, self.gets = inner, 0

    async def get(self, key: str) -> Stored | None:
        self.gets += 1
        return await self.inner.get(key)

    async def put(self, key: str, value: dict[str, Any], expected_revision: int) -> int:
        return await self.inner.put(key, value, expected_revision)

    async def keys(self, prefix: str) -> list[str]:
        return await self.inner.keys(prefix)

    async def close(self) -> None:
        await self.inner.close()


@pytest_asyncio.fixture(params=["memory", "jetstream"])
async def store(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[CountingReads]:
    if request.param == "memory":
        inner: DocumentStore = InMemoryDocuments()
    else:
        inner = await connect_documents(DocumentsConfig(nats_server.url, bucket=f"docs-{uuid.uuid4().hex[:8]}"))
    yield CountingReads(inner)
    await inner.close()


async def _desk(gateway: Gateway, store: CountingReads, clock: ManualClock) -> TransferDesk:
    await gateway.put_sku(Sku("GLU"))
    for site in ("DC", "BOS", "NYC"):
        await gateway.put_site(Site(site, "acme"))
    return TransferDesk(gateway, store, default_flow(), clock.now_ms)


async def test_a_page_reads_about_its_size_and_pages_cover_everything_once(
    local_gateway: Gateway, store: CountingReads, manual_clock: ManualClock
) -> None:
    desk = await _desk(local_gateway, store, manual_clock)
    for i in range(60):
        to = "BOS" if i % 3 else "NYC"
        await desk.create(SAM, f"c{i}", f"T{i:02d}", "DC", to, [TransferLine("GLU", 1)])
        if i % 2:
            manual_clock.advance(1)  # pairs share a millisecond: ties are ordered by id

    async def everyone(_: Transfer) -> bool:
        return True

    seen: list[str] = []
    after = None
    for _ in range(20):
        store.gets = 0
        page, more = await desk.page(TransferQuery(site="BOS", page_size=7, after=after), everyone)
        assert store.gets <= 2 * (7 + 16)  # an index entry and its document, at most one chunk past
        seen += [t.transfer_id for t in page]
        if not more:
            break
        after = (page[-1].steps[0].at_ms, page[-1].transfer_id)
    assert seen == [f"T{i:02d}" for i in range(60) if i % 3]

    async def only_even(t: Transfer) -> bool:
        return int(t.transfer_id[1:]) % 2 == 0

    page, more = await desk.page(TransferQuery(page_size=5), only_even)
    assert [t.transfer_id for t in page] == ["T00", "T02", "T04", "T06", "T08"]
    assert more


async def test_a_stray_entry_is_skipped_and_old_documents_are_indexed_at_start(
    local_gateway: Gateway, store: CountingReads, manual_clock: ManualClock
) -> None:
    desk = await _desk(local_gateway, store, manual_clock)
    await desk.create(SAM, "c1", "A1", "DC", "BOS", [TransferLine("GLU", 1)])
    # a document written before the listing index existed: no entries
    old = Transfer("OLD", "DC", "NYC", (TransferLine("GLU", 2),), "sam")
    old = with_step(old, Step("create", "requested", "sam", 5, "c0", "d"))
    await store.put(document_key("OLD"), transfer_to_doc(old), 0)
    # an entry of a create that never stored its document
    await store.put(f"{INDEX_PREFIX}all.0000000000007.deadbeef", {"transfer_id": "GHOST"}, 0)

    async def everyone(_: Transfer) -> bool:
        return True

    page, _ = await desk.page(TransferQuery(), everyone)
    assert [t.transfer_id for t in page] == ["A1"]
    assert await desk.reindex() == 1
    assert await desk.reindex() == 0
    page, _ = await desk.page(TransferQuery(), everyone)
    assert [t.transfer_id for t in page] == ["OLD", "A1"]
    page, _ = await desk.page(TransferQuery(site="NYC"), everyone)
    assert [t.transfer_id for t in page] == ["OLD"]
