"""An engine in this process, without Ray: unit tests, the API's tests, `lotwise demo --in-process`."""

from __future__ import annotations

from adapters.memory.backend import shared_in_memory_backend
from engine.domain.ports import BackendFactory, Clock
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.runtime.batcher import BatchLimits
from engine.runtime.gateway import Gateway
from engine.settings import Settings


def local_gateway(
    shards: int = 2,
    clock: Clock | None = None,
    statuses: StatusDictionary = DEFAULT_DICTIONARY,
    batch_limits: BatchLimits = BatchLimits(),
    sweep_interval_ms: int = 1_000,
    backend: BackendFactory | None = None,
) -> Gateway:
    """`Gateway.local` over one in-memory journal for all shards (so `verify` can read it),
    unless `backend` names another."""
    return Gateway.local(
        shards,
        clock,
        statuses,
        batch_limits,
        sweep_interval_ms,
        backend=backend or shared_in_memory_backend(),
    )


def in_process_gateway(settings: Settings) -> Gateway:
    """The shards `settings` asks for, in this process over an in-memory journal."""
    from engine.bootstrap.config import statuses_of

    return local_gateway(
        shards=settings.shards, statuses=statuses_of(settings), sweep_interval_ms=settings.sweep_interval_ms
    )
