"""The transfer desk: a transfer's steps carried out on stock and recorded in its
document (engine.domain.transfer_flow; DESIGN.md §1, §4, §5).

Where the state lives. Stock stays in the cells, moved by ordinary journaled commands
whose doc_ref is the transfer id: a hold at the source on approval, then the sending leg
(`@transit`) and the arriving legs (`in_transit_in`) on shipping, then status changes on
receipt. The transfer itself — its lines, state, steps with their actors and times, the
lots on their way — is one document in the durable, revisioned document store (a
JetStream key-value bucket beside the journal; engine.domain.documents). That is the
simplest durable home: a transfer spans two sites, usually on two shards, so neither
shard's journal alone can order its steps, and the store's revision check gives one
writer per step without a coordinator.

Exactly once. Each step runs its stock commands first, under request ids derived from the
transfer and the step's request id, and writes the document last, naming the revision it
read. A retry after a crash re-sends the same commands — the cells answer them from their
idempotency windows — and then writes the step; a retry after the write finds the step
in the document and answers it. A write that lost a race reads again and re-runs
(bounded). A failure between the commands and the write is finished by that retry; the
hold's TTL bounds what an abandoned approval keeps held.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import (
    Adjust,
    ChangeStatus,
    Consume,
    Consumed,
    ReserveLine,
    Strategy,
    check_id,
)
from engine.domain.commands import Release as ReleaseCmd
from engine.domain.documents import DocumentStore, RevisionMismatch
from engine.domain.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InsufficientStock,
    InvalidArgument,
    NotFound,
    RequestConflict,
    Unavailable,
)
from engine.domain.events import TransferEventSink
from engine.domain.holds import HOLD_EXPIRED, HOLD_NOT_ACTIVE
from engine.domain.ingestion import strategy_for
from engine.domain.model import External
from engine.domain.statuses import Role, StatusDictionary
from engine.domain.transfer_flow import (
    APPROVED,
    CANCELLED,
    MAX_PAGE_SIZE,
    RECEIVED,
    REQUESTED,
    SHIPPED,
    Pick,
    ReceiptLine,
    Step,
    Take,
    Transfer,
    TransferFlow,
    TransferLine,
    TransferLot,
    TransferQuery,
    after_receipt,
    all_arrived,
    cancellable,
    created_at_ms,
    decide,
    digest_of,
    escalation_step,
    in_query,
    list_order,
    needs_escalation,
    org_distance,
    plan_receipt,
    repeated_step,
    require_state,
    step_event,
    step_index,
    transfer_from_doc,
    transfer_to_doc,
    validate_create,
    validate_receipt,
    with_step,
)
from engine.domain.transfers import transit_receipts, unknown_lot
from engine.runtime.gateway.router import Router, raise_if_refused
from engine.runtime.types import HoldLine, HoldSummary

log = structlog.get_logger("lotwise.transfers")

MAX_WRITE_TRIES = 4  # a step that lost this many races in a row answers UNAVAILABLE (retry)
ANONYMOUS = "anonymous"  # the actor when authentication is off
DOCUMENT_PREFIX = "transfer."  # the keys of transfer documents in the store
INDEX_PREFIX = "transfer-at."  # transfer-at.<site key>.<created ms>.<digest>: the listing index
ALL_SITES = "all"  # the index of every transfer, for a listing without a site
LIST_READS = 16  # documents a listing reads at once
# What `arriving` looks back over: a transfer still shipped after this long is overdue stock
# health's business, and its units (still `in_transit_in` in the cells) count as arriving now.
ARRIVING_WINDOW_MS = 90 * 86_400_000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who takes a step: the token's subject and groups (the flow's roles)."""

    subject: str
    roles: tuple[str, ...] = ()
    # Authentication is off: nobody is known, so the flow's roles and the self-approval rule
    # cannot be checked; every step is allowed, as every other call is then (a warning at start).
    unchecked: bool = False


class StockGateway(Protocol):
    """What the desk needs of the gateway (engine.runtime.gateway.Gateway has all of it)."""

    @property
    def statuses(self) -> StatusDictionary: ...

    @property
    def router(self) -> Router: ...

    async def list_sites(self, org_prefix: str = "") -> list[Site]: ...

    async def list_skus(self) -> list[Sku]: ...

    async def execute(self, cmd: Any, deadline: float | None = None) -> Any: ...

    async def reserve(
        self, request_id: str, hold_id: str, lines: Sequence[HoldLine], ttl_ms: int, doc_ref: str = ""
    ) -> HoldSummary: ...

    async def release(self, request_id: str, hold_id: str, doc_ref: str = "") -> HoldSummary: ...

    async def get_availability(
        self, sku: str, site: str, group_by: Sequence[Dimension] = (), filt: SliceFilter = SliceFilter()
    ) -> Any: ...


def base_id(transfer_id: str) -> str:
    """A short id the transfer's own commands and hold derive from (a transfer id may be
    128 characters; derived ids must fit the same bound)."""
    return "xfer:" + hashlib.blake2b(transfer_id.encode(), digest_size=10).hexdigest()


def document_key(transfer_id: str) -> str:
    return DOCUMENT_PREFIX + hashlib.blake2b(transfer_id.encode(), digest_size=16).hexdigest()


def site_key(site: str) -> str:
    """A site as an index key segment: ids may hold characters NATS keys may not."""
    return hashlib.blake2b(site.encode(), digest_size=8).hexdigest()


def index_keys(transfer_id: str, from_site: str, to_site: str, created_ms: int) -> list[str]:
    """The index entries of a transfer: by either site and among all, by creation time (the
    zero-padded time sorts as a number, so a key listing is in creation order)."""
    tail = f"{created_ms:013d}.{document_key(transfer_id).removeprefix(DOCUMENT_PREFIX)}"
    return [f"{INDEX_PREFIX}{k}.{tail}" for k in (site_key(from_site), site_key(to_site), ALL_SITES)]


def index_time_ms(key: str) -> int:
    return int(key.split(".")[2])


def step_id(transfer_id: str, request_id: str) -> str:
    """The prefix of one step's commands: the same for a retry of that step only."""
    return f"{base_id(transfer_id)}:{hashlib.blake2b(request_id.encode(), digest_size=6).hexdigest()}"


def _in_time(created_ms: int, query: TransferQuery) -> bool:
    return (
        (not query.created_after_ms or created_ms >= query.created_after_ms)
        and (not query.created_before_ms or created_ms < query.created_before_ms)
        and (query.after is None or created_ms >= query.after[0])
    )


def _past_ties(found: list[Transfer], query: TransferQuery, keys: Sequence[str], next_index: int) -> bool:
    """Enough for a page and one more, and the next unread entry is later than the last of
    the page's candidates (transfers created in the same millisecond sort by id, so a page
    may end only between two times)."""
    if next_index >= len(keys):
        return True
    cut = sorted(found, key=list_order)[query.page_size]
    return index_time_ms(keys[next_index]) > created_at_ms(cut)


def wall_ms() -> int:
    return int(time.time() * 1000)


def check_step_ids(request_id: str, transfer_id: str) -> None:
    out: list[FieldViolation] = []
    check_id(request_id, "request_id", out)
    check_id(transfer_id, "transfer_id", out)
    if out:
        raise InvalidArgument(out)


Run = Callable[[Transfer, Step], Awaitable[Transfer]]


class TransferDesk:
    def __init__(
        self,
        gateway: StockGateway,
        documents: DocumentStore,
        flow: TransferFlow,
        clock: Callable[[], int] = wall_ms,
        events: TransferEventSink | None = None,
    ) -> None:
        self.gateway = gateway
        self._events = events
        self._documents = documents
        self.flow = flow
        self._clock = clock
        self._arriving = gateway.statuses.role(Role.ARRIVING)
        self._ready = gateway.statuses.role(Role.READY)
        self._damaged = gateway.statuses.role(Role.REJECTED)

    # ---- reads ----

    async def get(self, transfer_id: str) -> Transfer:
        check_step_ids("get", transfer_id)
        return (await self._load(transfer_id))[0]

    async def _load(self, transfer_id: str) -> tuple[Transfer, int]:
        stored = await self._documents.get(document_key(transfer_id))
        if stored is None:
            raise NotFound("transfer", transfer_id)
        transfer = transfer_from_doc(stored.value)
        if transfer.transfer_id != transfer_id:  # two ids with one digest: never in practice
            raise NotFound("transfer", transfer_id)
        return transfer, stored.revision

    def now_ms(self) -> int:
        return self._clock()

    async def every(self, query: TransferQuery) -> list[Transfer]:
        """Every transfer in the query, oldest request first, without paging or visibility
        (the deadline check and the outbox relay). Reads every transfer document, LIST_READS
        at a time: fine for the thousands a desk keeps live; listings use `page`."""
        keys = await self._documents.keys(DOCUMENT_PREFIX)
        gate = asyncio.Semaphore(LIST_READS)

        async def read(key: str) -> Transfer | None:
            async with gate:
                stored = await self._documents.get(key)
            return None if stored is None else transfer_from_doc(stored.value)

        found = await asyncio.gather(*(read(key) for key in keys))
        return sorted((t for t in found if t is not None and in_query(t, query)), key=list_order)

    # ---- create ----

    async def create(
        self,
        actor: Actor,
        request_id: str,
        transfer_id: str,
        from_site: str,
        to_site: str,
        lines: Sequence[TransferLine],
        note: str = "",
    ) -> Transfer:
        check_step_ids(request_id, transfer_id)
        validate_create(transfer_id, from_site, to_site, lines, note, self.flow.by_value)
        distance = await self._check_known(from_site, to_site, lines)
        payload = {"from": from_site, "to": to_site, "lines": [(x.sku, x.qty, x.lot_id) for x in lines]}
        if any(x.unit_value for x in lines):  # kept out when absent: older retries keep their digest
            payload["values"] = [x.unit_value for x in lines]
        digest = digest_of({"action": "create", **payload})
        step = Step("create", REQUESTED, actor.subject, self._clock(), request_id, digest, note)
        first = Transfer(
            transfer_id,
            from_site,
            to_site,
            tuple(lines),
            actor.subject,
            hold_id=base_id(transfer_id),
            org_distance=distance,
        )
        first = with_step(first, step)
        await self._index(first)  # before the document: a listing never misses a transfer
        try:
            await self._documents.put(document_key(transfer_id), transfer_to_doc(first), 0)
        except RevisionMismatch:
            existing, _ = await self._load(transfer_id)
            if existing.steps[0].request_id != request_id or existing.steps[0].digest != digest:
                raise RequestConflict(transfer_id, "transfer id") from None
            await self._tell(existing, 0)  # a retry of this create: its event may be what was lost
            return existing
        await self._tell(first, 0)
        return first

    async def _index(self, transfer: Transfer) -> None:
        """Write the transfer's index entries (existing ones stay). An entry whose transfer
        was never stored, or was stored by an earlier try at another time, is skipped by
        listings (they check the document against the key)."""
        keys = index_keys(transfer.transfer_id, transfer.from_site, transfer.to_site, created_at_ms(transfer))
        for key in keys:
            with contextlib.suppress(RevisionMismatch):
                await self._documents.put(key, {"transfer_id": transfer.transfer_id}, 0)

    async def reindex(self) -> int:
        """Index every stored transfer that is not (documents written before the index, or a
        create that died between document and index): run at start-up. The number indexed."""
        indexed = {k.rsplit(".", 1)[1] for k in await self._documents.keys(f"{INDEX_PREFIX}{ALL_SITES}.")}
        missing = [
            k for k in await self._documents.keys(DOCUMENT_PREFIX) if k.removeprefix(DOCUMENT_PREFIX) not in indexed
        ]
        for key in missing:
            stored = await self._documents.get(key)
            if stored is not None:
                await self._index(transfer_from_doc(stored.value))
        return len(missing)

    async def page(
        self, query: TransferQuery, visible: Callable[[Transfer], Awaitable[bool]]
    ) -> tuple[list[Transfer], bool]:
        """One page of the query (oldest request first) of the transfers `visible` lets the
        caller see, and whether more follow. Walks the index of the query's site (or of all
        transfers) from the page cursor and reads documents LIST_READS at a time until the
        page is full: a page costs about its own size in reads, not the whole bucket."""
        keys = await self._documents.keys(f"{INDEX_PREFIX}{site_key(query.site) if query.site else ALL_SITES}.")
        keys = [k for k in keys if _in_time(index_time_ms(k), query)]
        found: list[Transfer] = []
        for start in range(0, len(keys), LIST_READS):
            chunk = keys[start : start + LIST_READS]
            read = await asyncio.gather(*(self._indexed(k) for k in chunk))
            for transfer in sorted((t for t in read if t is not None), key=list_order):
                if in_query(transfer, query) and await visible(transfer):
                    found.append(transfer)
            if len(found) > query.page_size and _past_ties(found, query, keys, start + LIST_READS):
                break
        found.sort(key=list_order)
        return found[: query.page_size], len(found) > query.page_size

    async def _indexed(self, key: str) -> Transfer | None:
        """The transfer an index entry names, if it is the one stored at the entry's time."""
        stored = await self._documents.get(key)
        if stored is None:
            return None
        transfer_id = stored.value.get("transfer_id", "")
        doc = await self._documents.get(document_key(transfer_id))
        if doc is None:
            return None
        transfer = transfer_from_doc(doc.value)
        ok = transfer.transfer_id == transfer_id and created_at_ms(transfer) == index_time_ms(key)
        return transfer if ok else None

    async def _check_known(self, from_site: str, to_site: str, lines: Sequence[TransferLine]) -> int:
        """NotFound for an unknown site or sku; else the org distance between the sites."""
        orgs = {s.site: s.org_path for s in await self.gateway.list_sites()}
        for site in (from_site, to_site):
            if site not in orgs:
                raise NotFound("site", site)
        skus = {s.sku for s in await self.gateway.list_skus()}
        for line in lines:
            if line.sku not in skus:
                raise NotFound("sku", line.sku)
        return org_distance(orgs[from_site], orgs[to_site])

    # ---- the steps ----

    async def _step(
        self, actor: Actor, request_id: str, transfer_id: str, payload: dict[str, Any], run: Run
    ) -> Transfer:
        """Load, answer a retry from the document, else run the step and write it."""
        check_step_ids(request_id, transfer_id)
        digest = digest_of(payload)
        for _ in range(MAX_WRITE_TRIES):
            transfer, revision = await self._load(transfer_id)
            if repeated_step(transfer, request_id, digest):
                await self._tell(transfer, step_index(transfer, request_id))
                return transfer
            step = Step(
                payload["action"],
                transfer.state,
                actor.subject,
                self._clock(),
                request_id,
                digest,
                str(payload.get("note", "")),
            )
            changed = await run(transfer, step)
            try:
                await self._documents.put(document_key(transfer_id), transfer_to_doc(changed), revision)
            except RevisionMismatch:
                continue  # another step was written meanwhile: judge this one again against it
            await self._tell(changed, len(changed.steps) - 1)
            return changed
        raise Unavailable(f"transfer {transfer_id} is being changed by others: retry")

    async def approve(self, actor: Actor, request_id: str, transfer_id: str, note: str = "") -> Transfer:
        async def run(transfer: Transfer, step: Step) -> Transfer:
            rule = decide(self.flow, transfer, "approve", actor.subject, actor.roles, step.at_ms, actor.unchecked)
            picks = await self._hold(transfer) if rule.next_state == APPROVED else ()
            return with_step(transfer, replace(step, state=rule.next_state), picks=picks)

        return await self._step(actor, request_id, transfer_id, {"action": "approve", "note": note}, run)

    async def reject(self, actor: Actor, request_id: str, transfer_id: str, note: str = "") -> Transfer:
        async def run(transfer: Transfer, step: Step) -> Transfer:
            rule = decide(self.flow, transfer, "reject", actor.subject, actor.roles, step.at_ms, actor.unchecked)
            return with_step(transfer, replace(step, state=rule.next_state))

        return await self._step(actor, request_id, transfer_id, {"action": "reject", "note": note}, run)

    async def cancel(self, actor: Actor, request_id: str, transfer_id: str, note: str = "") -> Transfer:
        async def run(transfer: Transfer, step: Step) -> Transfer:
            cancellable(transfer)
            if transfer.state == APPROVED:
                await self._let_go(transfer.hold_id, f"{base_id(transfer.transfer_id)}:cancel", transfer.transfer_id)
            return with_step(transfer, replace(step, state=CANCELLED))

        return await self._step(actor, request_id, transfer_id, {"action": "cancel", "note": note}, run)

    async def ship(self, actor: Actor, request_id: str, transfer_id: str, eta_ms: int = 0) -> Transfer:
        if eta_ms < 0:
            raise InvalidArgument([FieldViolation("eta_ms", "must be ≥ 0 (0: not given)")])

        async def run(transfer: Transfer, step: Step) -> Transfer:
            require_state(transfer, "shipped", APPROVED)
            lots = await self._ship(transfer)
            return with_step(transfer, replace(step, state=SHIPPED), lots=lots, eta_ms=eta_ms)

        return await self._step(actor, request_id, transfer_id, {"action": "ship", "eta_ms": eta_ms}, run)

    async def arriving(self, sku: str, site: str) -> list[tuple[int, int]]:
        """(units, ETA ms) of `sku` shipped to `site` and not taken in yet, one row per
        shipped transfer created in the last ARRIVING_WINDOW_MS (at most MAX_PAGE_SIZE of
        them, through the site's listing index); ETA 0 = the ship step gave none.
        Replenishment counts units whose ETA falls inside its horizon (issue 14)."""
        query = TransferQuery(
            site=site,
            state=SHIPPED,
            created_after_ms=max(0, self.now_ms() - ARRIVING_WINDOW_MS),
            page_size=MAX_PAGE_SIZE,
        )
        found, _ = await self.page(query, _everyone)
        return [row for t in found if t.to_site == site and (row := _arriving_of(t, sku))[0] > 0]

    async def receive(
        self, actor: Actor, request_id: str, transfer_id: str, lines: Sequence[ReceiptLine], final: bool = False
    ) -> Transfer:
        validate_receipt(lines, final)
        payload = {
            "action": "receive",
            "lines": [(x.sku, x.lot_id, x.qty, x.damaged_qty) for x in lines],
            "final": final,
        }

        async def run(transfer: Transfer, step: Step) -> Transfer:
            require_state(transfer, "received", SHIPPED)
            takes = plan_receipt(transfer, lines, final)
            await self._take_in(transfer, step_id(transfer.transfer_id, request_id), takes)
            lots = after_receipt(transfer, takes)
            state = RECEIVED if all_arrived(lots) else SHIPPED
            return with_step(transfer, replace(step, state=state), lots=lots)

        return await self._step(actor, request_id, transfer_id, payload, run)

    # ---- deadlines ----

    async def escalate_overdue(self) -> int:
        """Record an escalation step on every transfer whose state's deadline has passed
        (once per state entered) and publish it; the number escalated. Safe to run again
        and from several gateways: the step's request id is derived from the state entered,
        and the document's revision check makes one writer win."""
        if not self.flow.deadlines:
            return 0
        now = self._clock()
        waiting = {d.state for d in self.flow.deadlines}
        escalated = 0
        for transfer in await self.every(TransferQuery(page_size=MAX_PAGE_SIZE)):
            if transfer.state in waiting and needs_escalation(self.flow, transfer, now) is not None:
                escalated += await self._escalate(transfer.transfer_id)
        return escalated

    async def _escalate(self, transfer_id: str) -> int:
        for _ in range(MAX_WRITE_TRIES):
            transfer, revision = await self._load(transfer_id)
            now = self._clock()
            deadline = needs_escalation(self.flow, transfer, now)
            if deadline is None:
                return 0  # acted on, or escalated by another gateway, meanwhile
            changed = with_step(transfer, escalation_step(transfer, deadline, now))
            try:
                await self._documents.put(document_key(transfer_id), transfer_to_doc(changed), revision)
            except RevisionMismatch:
                continue
            await self._tell(changed, len(changed.steps) - 1)
            log.info("transfer escalated", transfer_id=transfer_id, state=transfer.state, to=deadline.escalate_to)
            return 1
        return 0

    # ---- the outbox ----

    async def relay_untold(self) -> int:
        """Publish the events of every step not yet marked told, in step order, then mark the
        transfer (the document is the outbox, this the relay). A step whose caller saw
        UNAVAILABLE for its publish and never retried is told here; a step already told by
        its call is sent again and dropped by the stream (same event id, inside its 10-minute
        duplicate window). The number of events published."""
        if self._events is None:
            return 0
        published = 0
        for transfer in await self.every(TransferQuery(page_size=MAX_PAGE_SIZE)):
            if transfer.told < len(transfer.steps):
                published += await self._relay(self._events, transfer.transfer_id)
        return published

    async def _relay(self, events: TransferEventSink, transfer_id: str) -> int:
        transfer, revision = await self._load(transfer_id)
        untold = range(transfer.told, len(transfer.steps))
        for index in untold:  # in order; a failure leaves the mark where it was: the next round resends
            await events.publish(step_event(transfer, index))
        told = replace(transfer, told=len(transfer.steps))
        with contextlib.suppress(RevisionMismatch):  # a step came meanwhile: the next round tells it
            await self._documents.put(document_key(transfer_id), transfer_to_doc(told), revision)
        return len(untold)

    async def _tell(self, transfer: Transfer, index: int) -> None:
        """Publish the step's business event, after the step is recorded: a crash in between
        is healed by the caller's retry, which answers from the document and publishes the
        same event again (the stream keeps one by its id)."""
        if self._events is None:
            return
        try:
            await self._events.publish(step_event(transfer, index))
        except DomainError:
            raise
        except Exception as exc:  # the bus is down: the step stands, a retry publishes it
            raise Unavailable(
                f"transfer {transfer.transfer_id}: step recorded, its event not yet published: retry"
            ) from exc

    # ---- stock ----

    async def _hold(self, transfer: Transfer) -> tuple[Pick, ...]:
        """Hold every line at the source, all or nothing (the hold coordinator); the quants
        it took (a retry's reserve answers the same ones from the cells' windows)."""
        lines = [
            HoldLine(line.sku, transfer.from_site, ReserveLine(line.qty, strategy_for(line.lot_id), line.lot_id))
            for line in transfer.lines
        ]
        summary = await self.gateway.reserve(
            f"{transfer.hold_id}:hold", transfer.hold_id, lines, self.flow.hold_ttl_ms, transfer.transfer_id
        )
        return tuple(
            Pick(part.sku, a.lot_id, a.bin, a.owner, a.qty, a.expires_at_ms)
            for part in summary.parts
            for a in part.allocations
        )

    async def _let_go(self, hold_id: str, request_id: str, doc_ref: str) -> None:
        try:
            await self.gateway.release(request_id, hold_id, doc_ref)
        except FailedPrecondition as refusal:
            if refusal.reason not in (HOLD_EXPIRED, HOLD_NOT_ACTIVE):
                raise  # an expired or ended hold holds nothing: there is nothing to let go

    async def _ship(self, transfer: Transfer) -> tuple[TransferLot, ...]:
        """Per pair: release the hold and issue exactly the held quants to transit, back to
        back on the pair's shard, then book what left as arriving at the destination."""
        base = base_id(transfer.transfer_id)
        skus = list(dict.fromkeys(pick.sku for pick in transfer.picks))  # one pair per sku, in pick order
        lots: list[TransferLot] = []
        for i, sku in enumerate(skus):
            picks = [pick for pick in transfer.picks if pick.sku == sku]
            consumed = await self._issue(transfer, sku, picks, f"{base}:ship:{i}")
            for leg in transit_receipts(
                f"{base}:ship", i, sku, transfer.to_site, unknown_lot(base), consumed, self._arriving
            ):
                await self.gateway.execute(replace(leg, doc_ref=transfer.transfer_id))
                lots.append(TransferLot(sku, leg.lot_id, leg.qty, leg.expires_at_ms, owner=leg.owner))
        return tuple(lots)

    async def _issue(self, transfer: Transfer, sku: str, picks: Sequence[Pick], prefix: str) -> Consumed:
        site, doc_ref = transfer.from_site, transfer.transfer_id
        release = ReleaseCmd(f"{prefix}:release", sku, site, transfer.hold_id, doc_ref)
        consumes = [_consume(pick, site, f"{prefix}:{j}", doc_ref) for j, pick in enumerate(picks)]
        router = self.gateway.router
        sends = [router.to_pair(sku, site, op, None, essential=True) for op in (release, *consumes)]
        if router.directory.shard_for(sku, site) in router.queue_depths():
            results = await asyncio.gather(*sends)  # queued in this order before any is awaited
        else:
            results = [await send for send in sends]  # the queue starts with this call: keep the order
        _check_release(results[0])
        answers = [raise_if_refused(r) for r in results[1:]]
        allocations = tuple(a for c in answers for a in c.allocations)
        return Consumed(sum(c.consumed_qty for c in answers), sum(c.shortfall_qty for c in answers), allocations)

    async def _take_in(self, transfer: Transfer, prefix: str, takes: Sequence[Take]) -> None:
        for k, take in enumerate(takes):
            owner = transfer.lots[take.index].owner
            rid = f"{prefix}:{k}"
            if take.kind == "short":
                await self._book_short(transfer, take, owner, rid)
                continue
            to_status = self._ready if take.kind == "received" else self._damaged
            cmd = ChangeStatus(
                rid,
                take.sku,
                transfer.to_site,
                take.lot_id,
                take.qty,
                self._arriving,
                to_status,
                owner=owner,
                doc_ref=transfer.transfer_id,
            )
            await self.gateway.execute(cmd)

    async def _book_short(self, transfer: Transfer, take: Take, owner: str, rid: str) -> None:
        """Units that never arrived leave the arriving quant as a count variance (a
        discrepancy the receiving site's books show), recorded on the transfer as short.
        A relative adjustment applied inside the cell: nothing booked on the arriving quant
        meanwhile is undone, and a retry (same request id) is answered, not applied again."""
        count = Adjust(
            rid,
            take.sku,
            transfer.to_site,
            take.lot_id,
            0,
            "",
            self._arriving,
            owner,
            "transfer_shortage",
            transfer.transfer_id,
            delta_qty=-take.qty,
        )
        try:
            await self.gateway.execute(count)
        except InsufficientStock as refusal:
            # Fewer units are arriving than the shortage names (booked elsewhere already):
            # what is left of them is short.
            free = refusal.available
            if free:
                # A RequestConflict: this very rest was booked before a crash (then less was free).
                with contextlib.suppress(RequestConflict):
                    await self.gateway.execute(replace(count, request_id=f"{rid}:rest", delta_qty=-free))


async def _everyone(_transfer: Transfer) -> bool:
    return True


def _arriving_of(transfer: Transfer, sku: str) -> tuple[int, int]:
    return sum(lot.in_transit for lot in transfer.lots if lot.sku == sku), transfer.eta_ms


def _consume(pick: Pick, site: str, request_id: str, doc_ref: str) -> Consume:
    return Consume(
        request_id=request_id,
        sku=pick.sku,
        site=site,
        qty=pick.qty,
        lot_id=pick.lot_id,
        bin_prefix=pick.bin,
        owner=pick.owner,
        strategy=Strategy.LOT,
        doc_ref=doc_ref,
        destination=External.TRANSIT,
    )


def _check_release(result: Any) -> None:
    if isinstance(result, FailedPrecondition) and result.reason in (HOLD_EXPIRED, HOLD_NOT_ACTIVE):
        return  # the hold ran out before shipping: the goods still left; shortfalls are recorded
    if isinstance(result, DomainError):
        raise result
