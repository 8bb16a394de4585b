"""One contract for every FinanceDocuments log: in memory and on NATS JetStream (a real
nats-server on a free port), and the committed samples (formats 1 and 2) read back."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.memory.finance import InMemoryFinanceDocuments
from adapters.nats.finance_documents import NatsFinanceDocuments
from adapters.nats.journal import NatsLink, engine_journal_config
from adapters.nats.server import EmbeddedNats
from engine.finance.documents import (
    DocumentRecord,
    LandedCost,
    PaymentBaseline,
    SupplierInvoice,
    record_from_doc,
    record_to_doc,
)
from engine.finance.ports import FinanceDocuments
from tests.nats_fixtures import nats_server  # noqa: F401 - the session's nats-server

SAMPLE = Path(__file__).parents[1] / "data" / "finance" / "documents_v1.jsonl"
SAMPLE_V2 = Path(__file__).parents[1] / "data" / "finance" / "documents_v2.jsonl"
INVOICE = SupplierInvoice("INV-7", "acme", ("PO-1", "PO-2"), D("8000.00"), D("1040.00"), "2/10 n/30", "carol", 1)
FREIGHT = LandedCost("FRT-1", "acme", "CHAIR-1", "L1", D("20.00"), "carol", 2)
ACCEPTED = PaymentBaseline("INV-7", "acceptance", 1_798_675_200_000, "carol")


@pytest_asyncio.fixture(params=["memory", "nats"], loop_scope="session")
async def log(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[FinanceDocuments]:  # noqa: F811
    if request.param == "memory":
        yield InMemoryFinanceDocuments()
        return
    namespace = f"fd{uuid.uuid4().hex[:8]}"
    journal = engine_journal_config(namespace, nats_server.url, client_name="lotwise-findocs")
    link = NatsLink(journal)
    await link.connect()
    yield NatsFinanceDocuments(link, namespace, journal, max_bytes=64 * 1024 * 1024)
    await link.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_records_come_back_in_order_once_per_id(log: FinanceDocuments) -> None:
    assert await log.read(0, 10) == []
    first, second = DocumentRecord(INVOICE, 5), DocumentRecord(FREIGHT, 9)
    await log.append(first)
    await log.append(second)
    await log.append(DocumentRecord(INVOICE, 12))  # the same id again: not a second record
    assert await log.read(0, 10) == [first, second]
    assert await log.read(1, 10) == [second]
    assert await log.read(0, 1) == [first]
    assert await log.read(2, 10) == []


def _sample(path: Path) -> list[DocumentRecord]:
    return [record_from_doc(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_a_record_round_trips_and_the_committed_samples_still_read() -> None:
    for record in (DocumentRecord(INVOICE, 5), DocumentRecord(FREIGHT, 9), DocumentRecord(ACCEPTED, 12)):
        assert record_from_doc(json.loads(json.dumps(record_to_doc(record)))) == record
    assert _sample(SAMPLE) == [DocumentRecord(INVOICE, 5), DocumentRecord(FREIGHT, 9)]
    assert _sample(SAMPLE_V2) == [DocumentRecord(INVOICE, 5), DocumentRecord(FREIGHT, 9), DocumentRecord(ACCEPTED, 12)]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_payment_baseline_is_a_record_once_per_event(log: FinanceDocuments) -> None:
    corrected = PaymentBaseline("INV-7", "acceptance", ACCEPTED.at_ms + 86_400_000, "carol")
    for record in (DocumentRecord(ACCEPTED, 3), DocumentRecord(ACCEPTED, 4), DocumentRecord(corrected, 4)):
        await log.append(record)
    assert await log.read(0, 10) == [DocumentRecord(ACCEPTED, 3), DocumentRecord(corrected, 4)]


@pytest.mark.parametrize(
    "doc",
    [
        {"format": 3, "kind": "landed_cost"},
        {"format": 1, "kind": "rebate"},
        {"format": 1, "kind": "landed_cost"},
        {
            "format": 1,
            "kind": "payment_baseline",
            "company": "",
            "doc_key": "INV-7",
            "baseline": "acceptance",
            "at_ms": 1,
            "preparer": "carol",
            "after_position": 0,
        },  # baselines arrived with format 2
    ],
)
def test_an_unreadable_record_is_a_clear_error(doc: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="finance document"):
        record_from_doc(doc)
