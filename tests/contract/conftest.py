"""Every journal and snapshot store backend, for the contract suite to run against.

`backend` is parametrized: the in-memory implementations from engine.domain.ports, and
the JetStream ones on a real nats-server (the session's `nats_server`). A new backend is
a new parameter here; the suite itself does not change.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from adapters.memory.journal import InMemoryJournal
from adapters.memory.snapshots import InMemorySnapshotStore
from adapters.nats.journal import JournalConfig, connect_journal
from adapters.nats.server import EmbeddedNats
from engine.domain.ports import Journal, SnapshotStore
from tests.nats_fixtures import nats_server  # noqa: F401 - the session's nats-server


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    journal: Journal
    snapshots: SnapshotStore


async def _in_memory(_: EmbeddedNats) -> tuple[Backend, Callable[[], Awaitable[None]]]:
    async def close() -> None:
        return None

    return Backend("memory", InMemoryJournal(), InMemorySnapshotStore()), close


async def _jetstream(server: EmbeddedNats) -> tuple[Backend, Callable[[], Awaitable[None]]]:
    # Small read batches, so that reads in the suite span several pulls.
    config = JournalConfig(url=server.url, read_batch=16, ack_timeout_s=5.0)
    journal, snapshots, close = await connect_journal(config)
    return Backend("jetstream", journal, snapshots), close


BACKENDS = {"memory": _in_memory, "jetstream": _jetstream}


@pytest_asyncio.fixture(params=sorted(BACKENDS), loop_scope="session")
async def backend(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[Backend]:  # noqa: F811
    made, close = await BACKENDS[request.param](nats_server)
    yield made
    await close()


@pytest.fixture
def shard() -> str:
    """A shard name of this test's own: backends are shared, shards keep tests apart."""
    return f"s{uuid.uuid4().hex[:10]}"
