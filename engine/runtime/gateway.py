"""The gateway: stateless coordinator between the API and the shards (DESIGN.md §5–8).

It routes each op to its shard's micro-batcher, makes multi-line holds all-or-nothing
(compensating the lines already held when one fails), fans reads out over shards, and
re-routes when a hot pair has been pinned to a shard of its own.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from engine.domain.catalog import Site, Sku, validate_site, validate_sku
from engine.domain.cell import CellLimits, Dimension, SliceFilter
from engine.domain.commands import (
    MAX_LINES,
    Adjust,
    Adjusted,
    ChangeStatus,
    Commit,
    Consume,
    Consumed,
    Move,
    Moved,
    Receive,
    Received,
    Release,
    Reserve,
    ReserveLine,
    StatusChanged,
    check_finance,
    check_id,
    check_qty,
    validate,
    validate_reserve_line,
)
from engine.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from engine.domain.model import Finance, HoldState, HoldView
from engine.domain.ports import Backend, BackendFactory, Clock, JournalError
from engine.domain.shard import (
    Adopt,
    CellAdopting,
    CellMoved,
    Expect,
    HandOff,
    HoldHeader,
    LookupHold,
    PutSite,
    PutSku,
    ReadCatalog,
    ReadHold,
    ReadSlice,
    RegisterHold,
    ScanCells,
    add_row,
    result_too_large,
    row_of,
)
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.runtime.batcher import BatchLimits, BatchObserver, MicroBatcher, SendBatch
from engine.runtime.host import HostState, ShardHost, rebuild
from engine.runtime.routing import Directory, Pair, pinned_shard_name
from engine.runtime.types import (
    AggregateState,
    Availability,
    CommitLine,
    HoldLine,
    HoldSummary,
    ShardCheck,
    StockQuery,
    StockRow,
    aggregate_state,
)

log = structlog.get_logger("lotwise.gateway")

UNDO_SUFFIX = "#undo"  # request id suffix of a failed multi-line hold's compensating releases (reserved)
MAX_REROUTES = 12  # a pair can move while a request is in flight; bounded retries
HEADER_CACHE_MAX = 100_000  # hold headers remembered by a gateway (≈ 30 MB at most)
REROUTE_BACKOFF_S = 0.002  # doubled per wait for a hand-off to land (≈ 4 s in all)


class ShardFactory(Protocol):
    """Starts (or finds) a shard by name and returns how to send it a batch."""

    async def __call__(self, name: str) -> SendBatch: ...


class DirectoryStore(Protocol):
    """Where gateways share the directory of pins (a Ray actor in a cluster)."""

    async def load(self) -> Directory: ...

    async def save(self, directory: Directory) -> None: ...


class MemoryDirectoryStore:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    async def load(self) -> Directory:
        return replace(self._directory, pins=dict(self._directory.pins))

    async def save(self, directory: Directory) -> None:
        self._directory = replace(directory, pins=dict(directory.pins))


@dataclass(frozen=True, slots=True)
class ShardAdmin:
    """What operators' tools need beyond the batched write path."""

    call: Callable[[str, str], Awaitable[Any]]  # (shard, method name) → that host method's result
    backend: BackendFactory  # the journal and snapshots, read independently of the shards
    limits: CellLimits  # the shards' limits: replay must use the very same


def _raise_if_refused(result: Any) -> Any:
    if isinstance(result, DomainError):
        raise result
    return result


class Gateway:
    def __init__(
        self,
        directory: Directory,
        senders: dict[str, SendBatch],
        shard_factory: ShardFactory,
        directory_store: DirectoryStore,
        statuses: StatusDictionary = DEFAULT_DICTIONARY,
        batch_limits: BatchLimits = BatchLimits(),
        on_close: Callable[[], Awaitable[None]] | None = None,
        handles: dict[str, Any] | None = None,
        observe: BatchObserver | None = None,
        admin: ShardAdmin | None = None,
    ) -> None:
        self._admin = admin
        self._headers: OrderedDict[str, HoldHeader] = OrderedDict()
        self.directory = directory
        # The shards themselves (ShardHost objects or Ray actor handles), by name: for
        # sweeps, stats and the bench; requests never bypass the batchers through them.
        self.handles: dict[str, Any] = handles if handles is not None else {}
        self.statuses = statuses
        self._factory = shard_factory
        self._store = directory_store
        self._limits = batch_limits
        self._observe = observe
        self._batchers = {name: MicroBatcher(name, send, batch_limits, observe) for name, send in senders.items()}
        self._on_close = on_close

    # ---- construction ----

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
        return cls(
            directory,
            senders,
            factory,
            MemoryDirectoryStore(directory),
            statuses,
            batch_limits,
            close,
            hosts,
            admin=admin,
        )

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        if self._on_close is not None:
            await self._on_close()

    # ---- plumbing ----

    async def _batcher(self, name: str) -> MicroBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            batcher = MicroBatcher(name, await self._factory(name), self._limits, self._observe)
            self._batchers[name] = batcher
        return batcher

    async def _to_shard(self, name: str, op: Any, deadline: float | None, essential: bool = False) -> Any:
        return await (await self._batcher(name)).submit(op, deadline, essential=essential)

    async def _to_pair(self, sku: str, site: str, op: Any, deadline: float | None, essential: bool = False) -> Any:
        """Send an op to its pair's shard; follow a hand-off if the pair moved meanwhile."""
        route = self.directory.shard_for(sku, site)
        backoff_s = REROUTE_BACKOFF_S
        for _ in range(MAX_REROUTES):
            result = await self._to_shard(route, op, deadline, essential)
            if isinstance(result, CellMoved):
                route = result.to_shard  # follow the pair; learn the new directory too
                self.directory = await self._store.load()
            elif isinstance(result, CellAdopting):
                await asyncio.sleep(backoff_s)  # the snapshot is on its way: wait, briefly
                backoff_s *= 2
            else:
                return result
        return result

    async def _broadcast(self, op: Any, deadline: float | None) -> list[Any]:
        return list(await asyncio.gather(*(self._to_shard(name, op, deadline) for name in self.directory.all_shards())))

    # ---- catalog ----

    async def put_sku(self, sku: Sku, deadline: float | None = None) -> None:
        validate_sku(sku)
        for result in await self._broadcast(PutSku(sku), deadline):
            _raise_if_refused(result)

    async def put_site(self, site: Site, deadline: float | None = None) -> None:
        validate_site(site)
        for result in await self._broadcast(PutSite(site), deadline):
            _raise_if_refused(result)

    async def _catalog(self, org_prefix: str = "") -> tuple[list[Site], list[Sku]]:
        return _raise_if_refused(await self._to_shard(self.directory.shard_names[0], ReadCatalog(org_prefix), None))

    async def list_sites(self, org_prefix: str = "") -> list[Site]:
        return (await self._catalog(org_prefix))[0]

    async def list_skus(self) -> list[Sku]:
        return (await self._catalog())[1]

    # ---- single-cell commands ----

    async def execute(
        self, cmd: Receive | Move | ChangeStatus | Consume | Adjust, deadline: float | None = None
    ) -> Received | Moved | StatusChanged | Consumed | Adjusted:
        validate(cmd, self.statuses)  # refuse bad input before it costs a shard call
        return _raise_if_refused(await self._to_pair(cmd.sku, cmd.site, cmd, deadline))

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
        hold_id = hold_id or request_id
        by_pair = self._validate_hold(request_id, hold_id, lines, ttl_ms, finance)
        pairs = tuple(by_pair)
        cmds = [
            Reserve(request_id, sku, site, hold_id, tuple(ls), ttl_ms, doc_ref, finance)
            for (sku, site), ls in by_pair.items()
        ]
        for cmd in cmds:
            validate(cmd, self.statuses)
        header = HoldHeader(hold_id, request_id, pairs, ttl_ms)
        # The header and every line go out at once: one round trip, not two.
        outcomes = await asyncio.gather(
            self._to_shard(self.directory.home_for(hold_id), RegisterHold(header), deadline),
            *(self._to_pair(c.sku, c.site, c, deadline) for c in cmds),
            return_exceptions=True,
        )
        header_result, line_results = outcomes[0], outcomes[1:]
        failures = [r for r in (header_result, *line_results) if isinstance(r, BaseException)]
        if failures:
            # All-or-nothing: abort every line that was held, and every line whose outcome
            # is unknown (its shard failed mid-call; the reserve may be in its journal).
            # A line that was refused outright holds nothing and needs no abort.
            undo = [
                c
                for c, r in zip(cmds, line_results, strict=True)
                if not isinstance(r, BaseException) or isinstance(r, Unavailable | DeadlineExceeded)
            ]
            await self._abort(request_id, hold_id, undo, doc_ref)
            raise _root_cause(failures)
        self._remember(header_result)
        parts: tuple[HoldView, ...] = tuple(r.hold for r in line_results)
        return HoldSummary(hold_id, aggregate_state(parts), parts, min(p.expires_at_ms for p in parts))

    def _validate_hold(
        self, request_id: str, hold_id: str, lines: Sequence[HoldLine], ttl_ms: int, finance: Finance | None
    ) -> dict[Pair, list[ReserveLine]]:
        out: list[FieldViolation] = []
        check_id(request_id, "request_id", out)
        check_id(hold_id, "hold_id", out)
        check_finance(finance, "finance", out)
        if not lines:
            out.append(FieldViolation("lines", "must not be empty"))
        if len(lines) > MAX_LINES:
            out.append(FieldViolation("lines", f"must have at most {MAX_LINES} lines"))
        by_pair: dict[Pair, list[ReserveLine]] = {}
        for i, hl in enumerate(lines[:MAX_LINES]):
            check_id(hl.sku, f"lines[{i}].sku", out)
            check_id(hl.site, f"lines[{i}].site", out)
            validate_reserve_line(hl.line, f"lines[{i}]", out)
            by_pair.setdefault((hl.sku, hl.site), []).append(hl.line)
        if out:
            raise InvalidArgument(out)
        return by_pair

    async def _abort(self, request_id: str, hold_id: str, lines: Sequence[Reserve], doc_ref: str) -> None:
        """Roll back the lines of a failed hold. Best effort by design: a line whose abort
        cannot be delivered now stays held at most until its TTL, and a retry of the same
        reserve aborts it again (its other lines answer HOLD_ABORTED)."""
        undo = request_id[: 128 - len(UNDO_SUFFIX)] + UNDO_SUFFIX
        results = await asyncio.gather(
            *(
                self._to_pair(
                    c.sku, c.site, Release(undo, c.sku, c.site, hold_id, doc_ref, abort=True), None, essential=True
                )
                for c in lines
            ),
            return_exceptions=True,
        )
        for cmd, result in zip(lines, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, NotFound | FailedPrecondition):
                log.warning("abort of a failed hold line not delivered", hold_id=hold_id, sku=cmd.sku, site=cmd.site)

    async def _header(self, hold_id: str, deadline: float | None) -> HoldHeader:
        out: list[FieldViolation] = []
        check_id(hold_id, "hold_id", out)
        if out:
            raise InvalidArgument(out)
        cached = self._headers.get(hold_id)
        if cached is not None:
            self._headers.move_to_end(hold_id)
            return cached
        header = _raise_if_refused(
            await self._to_shard(self.directory.home_for(hold_id), LookupHold(hold_id), deadline)
        )
        self._remember(header)
        return header

    def _remember(self, header: HoldHeader) -> None:
        """Headers never change once registered, so any gateway may cache them (bounded LRU):
        a commit right after its reserve then needs no lookup round trip."""
        self._headers[header.hold_id] = header
        if len(self._headers) > HEADER_CACHE_MAX:
            self._headers.popitem(last=False)

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
        _check_resolve_input(lines, finance)  # shape first: bad input costs no shard call
        header = await self._header(hold_id, deadline)
        qty_by_pair = self._commit_plan(header, lines)
        cmds = [
            Commit(
                request_id,
                sku,
                site,
                hold_id,
                qty_by_pair.get((sku, site)) if lines is not None else None,
                doc_ref,
                finance,
            )
            for sku, site in header.pairs
        ]
        for cmd in cmds:
            validate(cmd, self.statuses)
        await self._check_parts(hold_id, header, {(c.sku, c.site): c.qty for c in cmds}, HoldState.COMMITTED, deadline)
        results = await asyncio.gather(*(self._to_pair(c.sku, c.site, c, deadline) for c in cmds))
        return self._summary(hold_id, [_raise_if_refused(r).hold for r in _first_refusal_last(results)])

    def _commit_plan(self, header: HoldHeader, lines: Sequence[CommitLine] | None) -> dict[Pair, int]:
        if lines is None:
            return {}
        out: list[FieldViolation] = []
        plan: dict[Pair, int] = {}
        for i, line in enumerate(lines):
            pair = (line.sku, line.site)
            if pair not in header.pairs:
                out.append(FieldViolation(f"lines[{i}]", f"{line.sku}@{line.site} is not part of the hold"))
            elif pair in plan:
                out.append(FieldViolation(f"lines[{i}]", f"{line.sku}@{line.site} is listed twice"))
            plan[pair] = line.qty
        if out:
            raise InvalidArgument(out)
        # Pairs not listed commit nothing: their share is released in the same step.
        return {pair: plan.get(pair, 0) for pair in header.pairs}

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
        _check_resolve_input(None, finance)  # bad input costs no shard call
        header = await self._header(hold_id, deadline)
        cmds = [Release(request_id, sku, site, hold_id, doc_ref, finance=finance) for sku, site in header.pairs]
        for cmd in cmds:
            validate(cmd, self.statuses)
        await self._check_parts(hold_id, header, dict.fromkeys(header.pairs), HoldState.RELEASED, deadline)
        results = await asyncio.gather(*(self._to_pair(c.sku, c.site, c, deadline) for c in cmds))
        return self._summary(hold_id, [_raise_if_refused(r).hold for r in _first_refusal_last(results)])

    async def _check_parts(
        self,
        hold_id: str,
        header: HoldHeader,
        qty_by_pair: dict[Pair, int | None],
        done_state: HoldState,
        deadline: float | None,
    ) -> None:
        """Refuse a commit or release before sending any part that a cell would refuse.

        Parts of one hold live in several cells and a commit cannot be undone, so a refusal
        must come before anything is applied (a refused command changes nothing). The reads
        go through the same per-shard queues as the commands that follow. When no part is
        active any more (a retry, or a hold already resolved), the commands go out as they
        are: cells answer retries from their idempotency window, others with the reason.
        """
        if len(header.pairs) == 1:
            return  # one cell: its own command is all-or-nothing already
        views = await asyncio.gather(
            *(self._to_pair(sku, site, ReadHold(sku, site, hold_id), deadline) for sku, site in header.pairs)
        )
        parts = [_raise_if_refused(v) for v in views]
        if not any(p is not None and p.state is HoldState.ACTIVE for p in parts):
            return
        for (sku, site), part in zip(header.pairs, parts, strict=True):
            if part is None:
                raise NotFound("hold", f"{hold_id} at {sku}@{site}")
            if part.state is done_state:
                continue  # an earlier attempt of this very resolution got this far: finish it
            if part.state is not HoldState.ACTIVE:
                reason = "HOLD_EXPIRED" if part.state is HoldState.EXPIRED else "HOLD_NOT_ACTIVE"
                raise FailedPrecondition(
                    reason,
                    f"hold {hold_id!r} is {part.state.value} at {sku}@{site}",
                    {"hold_id": hold_id, "sku": sku, "site": site, "state": part.state.value},
                )
            qty = qty_by_pair.get((sku, site))
            if qty is not None and qty > part.held_qty:
                raise FailedPrecondition(
                    "COMMIT_EXCEEDS_HOLD",
                    f"hold {hold_id!r} holds {part.held_qty} at {sku}@{site}; cannot commit {qty}",
                    {"hold_id": hold_id, "sku": sku, "site": site, "held": str(part.held_qty), "requested": str(qty)},
                )

    async def get_hold(self, hold_id: str) -> HoldSummary:
        header = await self._header(hold_id, None)
        views = await asyncio.gather(
            *(self._to_pair(sku, site, ReadHold(sku, site, hold_id), None) for sku, site in header.pairs)
        )
        parts = [_raise_if_refused(v) for v in views]
        found = [p for p in parts if p is not None]
        if not found:
            raise NotFound("hold", hold_id)
        return self._summary(hold_id, found)

    @staticmethod
    def _summary(hold_id: str, parts: Sequence[HoldView]) -> HoldSummary:
        views = tuple(parts)
        state = aggregate_state(views) if views else AggregateState.RELEASED
        return HoldSummary(hold_id, state, views, min((p.expires_at_ms for p in views), default=0))

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
        out: list[FieldViolation] = []
        check_id(sku, "sku", out)
        check_id(site, "site", out)
        if not 0 <= bin_depth <= 8:
            out.append(FieldViolation("bin_depth", "must be in 0..8"))
        if out:
            raise InvalidArgument(out)
        read = ReadSlice(sku, site, tuple(group_by), filt, bin_depth)
        as_of_ms, rows = _raise_if_refused(await self._to_pair(sku, site, read, deadline))
        return Availability(sku, site, sum(r.available for r in rows), tuple(rows), as_of_ms)

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]:
        if not 1 <= q.limit <= 100_000:
            raise InvalidArgument([FieldViolation("limit", "must be in 1..100000")])
        if not 0 <= q.bin_depth <= 8:
            raise InvalidArgument([FieldViolation("bin_depth", "must be in 0..8")])
        scan = ScanCells(
            frozenset(q.skus),
            frozenset(q.sites),
            q.org_prefix,
            q.group_by,
            q.filter,
            q.bin_depth,
            q.limit,
            q.by_sku,
            q.by_site,
        )
        merged: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[int]] = {}
        for result in await self._broadcast(scan, deadline):
            for sku, site, row in _raise_if_refused(result):
                total = merged.get((sku, site, row.group))
                if total is None:
                    if len(merged) >= q.limit:
                        raise result_too_large(q.limit)
                    total = merged[(sku, site, row.group)] = [0, 0, 0, 0, 0]
                add_row(total, row)
        return [StockRow(sku, site, row_of(group, total)) for (sku, site, group), total in sorted(merged.items())]

    # ---- hot pairs ----

    async def pin(self, sku: str, site: str) -> str:
        """Give a hot pair a shard of its own: snapshot hand-off from its current shard."""
        target = pinned_shard_name(sku, site)
        current = self.directory.shard_for(sku, site)
        if current == target:
            return target
        # Expect first, so ops that follow the hand-off to the target wait for the cell
        # instead of finding an empty one there.
        _raise_if_refused(await self._to_shard(target, Expect(sku, site), None))
        blob, skus, sites = _raise_if_refused(await self._to_shard(current, HandOff(sku, site, target), None))
        _raise_if_refused(await self._to_shard(target, Adopt(sku, site, blob, skus, sites), None))
        directory = await self._store.load()
        directory.pins[(sku, site)] = target
        directory.version += 1
        await self._store.save(directory)
        self.directory = directory
        return target

    # ---- operations ----

    def _require_admin(self) -> ShardAdmin:
        if self._admin is None:
            raise Unavailable("this gateway has no admin access to its shards")
        return self._admin

    async def shard_stats(self) -> list[dict[str, Any]]:
        admin = self._require_admin()
        return list(await asyncio.gather(*(admin.call(name, "stats") for name in self.directory.all_shards())))

    async def snapshot(self) -> dict[str, int]:
        admin = self._require_admin()
        names = self.directory.all_shards()
        return dict(zip(names, await asyncio.gather(*(admin.call(n, "snapshot_now") for n in names)), strict=True))

    async def verify(self) -> list[ShardCheck]:
        """Rebuild every shard from snapshot + journal here, and compare with the live one."""
        admin = self._require_admin()
        backend = await admin.backend()
        try:
            return [await self._verify_shard(admin, backend, name) for name in self.directory.all_shards()]
        finally:
            await backend.close()

    async def _verify_shard(self, admin: ShardAdmin, backend: Backend, name: str) -> ShardCheck:
        batch_seq, live_hash = await admin.call(name, "state_hash")
        replayed = 0

        def count(_: int) -> None:
            nonlocal replayed
            replayed += 1

        try:
            core, rebuilt_seq, _ = await rebuild(
                name, self.statuses, admin.limits, backend.journal, backend.snapshots, batch_seq, count
            )
        except JournalError as exc:
            return ShardCheck(name, batch_seq, live_hash, "", replayed, f"{type(exc).__name__}: {exc}")
        if rebuilt_seq != batch_seq:
            error = f"the journal ends at batch {rebuilt_seq}; the live shard is at batch {batch_seq}"
            return ShardCheck(name, batch_seq, live_hash, "", replayed, error)
        return ShardCheck(name, batch_seq, live_hash, core.state_hash(), replayed)

    def queue_depths(self) -> dict[str, int]:
        return {name: b.pending for name, b in self._batchers.items()}


def _root_cause(failures: Sequence[BaseException]) -> BaseException:
    """Of a failed hold's refusals, the one that says why: a definite refusal (e.g.
    INSUFFICIENT_STOCK) before HOLD_ABORTED (an earlier attempt was rolled back), before
    the retryable UNAVAILABLE."""

    def rank(exc: BaseException) -> int:
        if isinstance(exc, Unavailable | DeadlineExceeded):
            return 2
        if isinstance(exc, FailedPrecondition) and exc.reason == "HOLD_ABORTED":
            return 1
        return 0

    return min(failures, key=rank)


def _check_resolve_input(lines: Sequence[CommitLine] | None, finance: Finance | None) -> None:
    """What a commit (or release: no lines) can get wrong before its hold is looked up."""
    out: list[FieldViolation] = []
    check_finance(finance, "finance", out)
    if lines is not None and len(lines) > MAX_LINES:
        out.append(FieldViolation("lines", f"must have at most {MAX_LINES} lines"))
    for i, line in enumerate((lines or ())[:MAX_LINES]):
        check_id(line.sku, f"lines[{i}].sku", out)
        check_id(line.site, f"lines[{i}].site", out)
        check_qty(line.qty, f"lines[{i}].qty", out, allow_zero=True)
    if out:
        raise InvalidArgument(out)


def _first_refusal_last(results: Sequence[Any]) -> list[Any]:
    """Raise the first refusal only after looking at all parts (every part was sent)."""
    refusals = [r for r in results if isinstance(r, DomainError)]
    if refusals:
        raise refusals[0]
    return list(results)
