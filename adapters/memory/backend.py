"""In-memory journal backends for shard hosts (tests, `journal=memory` dev engines)."""

from __future__ import annotations

from adapters.memory.journal import InMemoryJournal
from adapters.memory.snapshots import InMemorySnapshotStore
from engine.domain.ports import Backend, BackendFactory


async def in_memory_backend() -> Backend:
    """A journal and snapshot store of its own for each shard that connects."""
    return Backend(InMemoryJournal(), InMemorySnapshotStore(), _no_close)


def shared_in_memory_backend() -> BackendFactory:
    """One in-memory journal and snapshot store for every shard of a process (and for
    whoever verifies them): entries are keyed by shard, as in the real journal."""
    backend = Backend(InMemoryJournal(), InMemorySnapshotStore(), _no_close)

    async def connect() -> Backend:
        return backend

    return connect


async def _no_close() -> None:
    return None
