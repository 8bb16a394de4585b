"""A real nats-server for the tests that need one, and small journal entries to write.

Plain module (not a conftest) so both tiers can import the fixture:
`from tests.nats_fixtures import nats_server  # noqa: F401`. The server listens on
127.0.0.1 only, on a port it picks itself, so these tests run with or without the
loopback-only network namespace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from engine.domain.model import External, Lot, Movement, MovementKind, QuantKey
from engine.domain.ports import JournalEntry

GiB = 1024 * 1024 * 1024


def server_config_for_tests(data_dir: Path) -> EmbeddedNatsConfig:
    # Room for a few test streams' reservations (each stream's max_bytes is reserved).
    return EmbeddedNatsConfig(data_dir=data_dir, max_file_store_bytes=1024 * GiB, start_timeout_s=15.0)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    """One embedded nats-server for the whole session. Tests that crash a server start
    their own; tests that share this one keep apart by using shard names of their own."""
    server = EmbeddedNats(server_config_for_tests(tmp_path_factory.mktemp("nats")))
    await server.start()
    yield server
    await server.stop()


def journal_entry(shard: str, batch_seq: int, *, qty: int = 10) -> JournalEntry:
    """A small batch as a shard would journal it: a receipt and a reserve of one lot."""
    lot_id = f"lot-{batch_seq}"
    key = QuantKey(lot_id, "A/01/P1", "available", "own")
    at_ms = 1_767_225_600_000 + batch_seq
    receive = Movement(
        seq=2 * batch_seq - 1,
        kind=MovementKind.RECEIVE,
        sku="sku-1",
        site="site-1",
        lot_id=lot_id,
        qty=qty,
        src=External.SUPPLIER,
        dst=key,
        request_id=f"req-{batch_seq}",
        at_ms=at_ms,
        lot=Lot(lot_id, received_at_ms=at_ms, expires_at_ms=at_ms + 86_400_000),
    )
    reserve = Movement(
        seq=2 * batch_seq,
        kind=MovementKind.RESERVE,
        sku="sku-1",
        site="site-1",
        lot_id=lot_id,
        qty=0,
        src=key,
        dst=key,
        held_key=key,
        held_delta=min(3, qty),
        hold_id=f"hold-{batch_seq}",
        request_id=f"req-{batch_seq}-r",
        at_ms=at_ms,
        expires_at_ms=at_ms + 60_000,
    )
    return JournalEntry(shard=shard, batch_seq=batch_seq, now_ms=at_ms, ops=(), movements=(receive, reserve))
