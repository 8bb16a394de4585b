"""The Gateway: one object the API, the CLI and ingestion talk to (DESIGN.md §5–8).

It keeps no logic of its own: each call goes to the part that owns it — the catalog,
single-cell commands and reads through the router, multi-line holds to the hold
coordinator, operators' calls to the operations desk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.domain.catalog import Site, Sku
from engine.domain.cell import CellLimits, Dimension, SliceFilter
from engine.domain.commands import (
    CellMutation,
    CellMutationReply,
    Receive,
    SaleLine,
    Sell,
    check_caller_id,
    validate,
)
from engine.domain.errors import DomainError, FailedPrecondition, FieldViolation, InvalidArgument
from engine.domain.freshness import is_freshness_expired
from engine.domain.hold_listing import ScanHolds
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import Finance
from engine.domain.ports import BackendFactory, Clock
from engine.domain.receipts import ReceiptColumns
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.runtime.batcher import BatchLimits, BatchObserver, SendBatch
from engine.runtime.gateway.bulk import BulkReceiver, BulkResult
from engine.runtime.gateway.catalog import CatalogService
from engine.runtime.gateway.freshness import FreshnessDesk
from engine.runtime.gateway.holds import HoldCoordinator
from engine.runtime.gateway.operations import Operations, ShardAdmin
from engine.runtime.gateway.reads import StockReader
from engine.runtime.gateway.router import (
    DirectoryStore,
    MemoryDirectoryStore,
    Router,
    ShardFactory,
    raise_if_refused,
)
from engine.runtime.gateway.sales import SaleDesk
from engine.runtime.host import HostState, ShardHost
from engine.runtime.routing import Directory
from engine.runtime.types import Availability, HoldLine, HoldSummary, ShardCheck

SingleCellCommand = CellMutation
SingleCellReply = CellMutationReply


@dataclass(frozen=True, slots=True)
class ShardPorts:
    """How a gateway reaches its shards (a Ray cluster, or hosts in this process)."""

    directory: Directory  # the routing as it stood when the gateway started
    senders: Mapping[str, SendBatch]  # how to send a batch to each shard already running
    factory: ShardFactory  # starts (or finds) any other shard, e.g. a pinned pair's
    store: DirectoryStore  # where gateways share the directory of pins
    # The shards themselves (ShardHost objects or Ray actor handles), by name: for sweeps,
    # stats and the bench; requests never bypass the batchers through them.
    handles: dict[str, Any] = field(default_factory=dict)
    admin: ShardAdmin | None = None  # operators' access; None: verify, stats, snapshot refuse
    on_close: Callable[[], Awaitable[None]] | None = None  # stops what the gateway owns


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    statuses: StatusDictionary = DEFAULT_DICTIONARY
    batch_limits: BatchLimits = BatchLimits()
    observe: BatchObserver | None = None  # told (ops, seconds, ok) of every shard call


class Gateway:
    def __init__(self, ports: ShardPorts, config: GatewayConfig = GatewayConfig()) -> None:
        self.statuses = config.statuses
        self.handles = ports.handles
        self._admin = ports.admin
        self._on_close = ports.on_close
        self._router = Router(
            ports.directory, ports.senders, ports.factory, ports.store, config.batch_limits, config.observe
        )
        self._catalog = CatalogService(self._router)
        self._holds = HoldCoordinator(self._router, config.statuses)
        self._sales = SaleDesk(self._router, self._holds, config.statuses)
        self._reads = StockReader(self._router)
        self._freshness = FreshnessDesk(self._router, self._reads)
        self._operations = Operations(self._router, ports.admin, config.statuses)
        self._bulk = BulkReceiver(self._router, ports.senders, ports.factory, config.statuses)

    @property
    def router(self) -> Router:
        """For desks that send their own commands in order (engine.runtime.gateway.transfers)."""
        return self._router

    @property
    def directory(self) -> Directory:
        """The routing as this gateway knows it (it learns of pins as it meets them)."""
        return self._router.directory

    @classmethod
    def local(
        cls,
        shards: int = 2,
        clock: Clock | None = None,
        statuses: StatusDictionary = DEFAULT_DICTIONARY,
        batch_limits: BatchLimits = BatchLimits(),
        sweep_interval_ms: int = 1_000,
        *,
        backend: BackendFactory,
    ) -> Gateway:
        """Shards in this process (no Ray): unit tests, embedding, the API's own tests.

        `backend` is the journal every shard writes (engine.bootstrap.local_gateway gives
        one in-memory journal for all shards, so `verify` can read it)."""
        hosts: dict[str, ShardHost] = {}

        def make(name: str) -> SendBatch:
            host = ShardHost(name, statuses, clock=clock, backend=backend, sweep_interval_ms=sweep_interval_ms)
            hosts[name] = host

            async def send(ops: list[Any]) -> list[Any]:
                if host.state is HostState.NEW:
                    await host.start()  # in-process: the first call waits for recovery
                return await host.apply(ops)

            return send

        names = tuple(f"shard-{i}" for i in range(shards))
        senders: dict[str, SendBatch] = {name: make(name) for name in names}

        async def factory(name: str) -> SendBatch:
            return senders.get(name) or senders.setdefault(name, make(name))

        async def close() -> None:
            for host in hosts.values():
                await host.stop()

        async def call(name: str, method: str) -> Any:
            return await getattr(hosts[name], method)()

        directory = Directory(names)
        admin = ShardAdmin(call, backend, CellLimits())
        ports = ShardPorts(directory, senders, factory, MemoryDirectoryStore(directory), hosts, admin, close)
        return cls(ports, GatewayConfig(statuses, batch_limits))

    async def close(self) -> None:
        await self._router.close()
        if self._on_close is not None:
            await self._on_close()

    # ---- catalog ----

    async def put_sku(self, sku: Sku, deadline: float | None = None) -> None:
        await self._catalog.put_sku(sku, deadline)

    async def put_site(self, site: Site, deadline: float | None = None) -> None:
        await self._catalog.put_site(site, deadline)

    async def list_sites(self, org_prefix: str = "") -> list[Site]:
        return (await self._catalog.read(org_prefix))[0]

    async def list_skus(self) -> list[Sku]:
        return (await self._catalog.read())[1]

    # ---- single-cell commands ----

    async def execute(self, cmd: SingleCellCommand, deadline: float | None = None) -> SingleCellReply:
        validate(cmd, self.statuses)  # refuse bad input before it costs a shard call
        _check_caller_ids(cmd.request_id)
        try:  # no cost on the order path unless it raises (3.11's zero-cost exceptions)
            reply: SingleCellReply = raise_if_refused(await self._router.to_pair(cmd.sku, cmd.site, cmd, deadline))
        except FailedPrecondition as refusal:
            if not is_freshness_expired(refusal):
                raise
            raise await self._freshness.with_substitutes(refusal, deadline) from None
        return reply

    async def receive_bulk(self, cmds: Sequence[Receive]) -> list[BulkResult]:
        """Many receipts (a bulk load), one shard call per shard: each its own answer or refusal."""
        return await self._bulk.receive(cmds)

    async def receive_columns(self, receipts: ReceiptColumns) -> list[DomainError | None]:
        """`receive_bulk` of receipts given as columns (a bulk load's chunk): each row's
        refusal, or None when it was received."""
        return await self._bulk.receive_columns(receipts)

    # ---- holds ----

    async def reserve(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[HoldLine],
        ttl_ms: int,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        """Hold stock over the lines, all or nothing; each pair's Reserve carries `finance`."""
        _check_caller_ids(request_id, hold_id)
        try:
            return await self._holds.reserve(request_id, hold_id, lines, ttl_ms, doc_ref, deadline, finance)
        except FailedPrecondition as refusal:
            if not is_freshness_expired(refusal):
                raise
            raise await self._freshness.with_substitutes(refusal, deadline) from None

    async def commit(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[CommitLine] | None = None,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        """Commit the hold at every pair; each pair's Commit carries `finance`."""
        _check_caller_ids(request_id, hold_id)
        return await self._holds.commit(request_id, hold_id, lines, doc_ref, deadline, finance)

    async def release(
        self,
        request_id: str,
        hold_id: str,
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        """Release the hold at every pair; each pair's Release carries `finance`."""
        _check_caller_ids(request_id, hold_id)
        return await self._holds.release(request_id, hold_id, doc_ref, deadline, finance)

    async def get_hold(self, hold_id: str) -> HoldSummary:
        return await self._holds.get_hold(hold_id)

    async def list_holds(self, q: ScanHolds, deadline: float | None = None) -> tuple[list[HoldSummary], str]:
        """A page of holds by pair, site, state and expiry (ListHolds), and the next cursor."""
        return await self._holds.list_holds(q, deadline)

    def cached_hold_pairs(self, hold_id: str) -> tuple[tuple[str, str], ...] | None:
        """The pairs of a hold whose header this gateway has cached; None when it has not."""
        return self._holds.cached_pairs(hold_id)

    # ---- one-call sale ----

    async def sell(
        self,
        request_id: str,
        lines: Sequence[HoldLine],
        doc_ref: str = "",
        deadline: float | None = None,
        *,
        finance: Finance | None = None,
    ) -> HoldSummary:
        """Reserve and commit every line in one call, all or nothing (DESIGN.md §7); the
        summary (state COMMITTED) is named by `request_id`."""
        sale = Sell(request_id, tuple(SaleLine(hl.sku, hl.site, hl.line) for hl in lines), doc_ref, finance)
        try:
            return await self._sales.sell(sale, deadline)
        except FailedPrecondition as refusal:
            if not is_freshness_expired(refusal):
                raise
            raise await self._freshness.with_substitutes(refusal, deadline) from None

    # ---- reads ----

    async def get_availability(
        self,
        sku: str,
        site: str,
        group_by: Sequence[Dimension] = (),
        filt: SliceFilter = SliceFilter(),
        bin_depth: int = 0,
        deadline: float | None = None,
    ) -> Availability:
        return await self._reads.get_availability(sku, site, group_by, filt, bin_depth, deadline)

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]:
        return await self._reads.query_stock(q, deadline)

    # ---- hot pairs and operations ----

    async def pin(self, sku: str, site: str) -> str:
        """Give a hot pair a shard of its own: snapshot hand-off from its current shard."""
        return await self._router.pin(sku, site)

    async def shard_stats(self) -> list[dict[str, Any]]:
        return await self._operations.shard_stats()

    async def snapshot(self) -> dict[str, int]:
        return await self._operations.snapshot()

    async def verify(self) -> list[ShardCheck]:
        """Rebuild every shard from snapshot + journal here, and compare with the live one."""
        return await self._operations.verify()

    def queue_depths(self) -> dict[str, int]:
        return self._router.queue_depths()


def _check_caller_ids(request_id: str, hold_id: str = "") -> None:
    """A caller's command or hold may not take the ids the engine derives for a sale's
    parts (a hold id "" becomes the request id, so both are checked)."""
    out: list[FieldViolation] = []
    check_caller_id(request_id, "request_id", out)
    check_caller_id(hold_id, "hold_id", out)
    if out:
        raise InvalidArgument(out)
