"""The cell: the single writer of one (sku, site) pair (DESIGN.md §6).

A cell processes one command at a time. Every handler first checks everything, then
emits movements; the ledger applies them. So a refused command changes nothing, and the
movements are the complete record (replaying them gives the live state).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from engine.domain.commands import (
    Adjust,
    Adjusted,
    ChangeStatus,
    Command,
    Commit,
    Committed,
    Consume,
    Consumed,
    Move,
    Moved,
    Receive,
    Received,
    Release,
    Released,
    Reply,
    Reserve,
    Reserved,
    ReserveLine,
    StatusChanged,
    Strategy,
    owner_matches,
    payload_difference,
    same_payload,
    validate,
)
from engine.domain.errors import (
    DomainError,
    FailedPrecondition,
    InsufficientStock,
    InvariantViolation,
    NotFound,
    RequestConflict,
)
from engine.domain.holds import hold_aborted, hold_not_found, require_active, require_within_hold
from engine.domain.ledger import Ledger
from engine.domain.model import (
    NO_EXPIRY_MS,
    Allocation,
    Bucket,
    External,
    HoldPart,
    HoldState,
    HoldView,
    Lot,
    Movement,
    MovementKind,
    QuantKey,
    shelf_life_left_days,
)
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary

_FAR_FUTURE_MS = 2**62


@dataclass(frozen=True, slots=True)
class CellLimits:
    """Bounds of a cell's memory: the idempotency window and resolved-hold retention."""

    dedupe_window_ms: int = 15 * 60_000
    dedupe_max_entries: int = 50_000
    resolved_hold_retention_ms: int = 60 * 60_000
    resolved_hold_max: int = 50_000


class Dimension(StrEnum):
    """What a slice can be grouped by: the four dimensions of DESIGN.md §2."""

    BIN = "bin"  # location (cut at `bin_depth` levels when > 0)
    STATUS = "status"
    OWNER = "owner"
    LOT = "lot"  # time: the lot carries its dates
    EXPIRY_DAY = "expiry_day"
    RECEIVED_DAY = "received_day"


@dataclass(frozen=True, slots=True)
class SliceFilter:
    statuses: frozenset[str] = frozenset()
    owner: str = ""
    bin_prefix: str = ""
    lot_id: str = ""
    sellable_only: bool = False
    min_shelf_life_days: float | None = None
    max_shelf_life_days: float | None = None


@dataclass(frozen=True, slots=True)
class SliceRow:
    group: tuple[tuple[str, str], ...]  # (dimension, value) in group-by order
    qty: int
    held: int
    available: int  # sellable, unexpired, not held
    on_hand: int
    earliest_expiry_ms: int


def bin_matches(bin_: str, prefix: str) -> bool:
    """`A/03` covers `A/03` and `A/03/P12`, not `A/030`."""
    return not prefix or bin_ == prefix or bin_.startswith(prefix + "/")


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat() if ms else ""


class Cell:
    """All quants, lots and holds of one (sku, site), and the idempotency window."""

    __slots__ = (
        "_next_expiry_ms",
        "_seen",
        "ledger",
        "limits",
        "opened_shelf_life_ms",
        "outbox",
        "site",
        "sku",
        "statuses",
    )

    def __init__(
        self,
        sku: str,
        site: str,
        statuses: StatusDictionary = DEFAULT_DICTIONARY,
        opened_shelf_life_ms: int = 0,
        limits: CellLimits = CellLimits(),
    ) -> None:
        self.sku, self.site = sku, site
        self.statuses = statuses
        self.opened_shelf_life_ms = opened_shelf_life_ms
        self.limits = limits
        self.ledger = Ledger()
        self.outbox: list[Movement] = []  # movements not yet handed to the journal
        self._seen: OrderedDict[str, tuple[int, Command, Reply | DomainError]] = OrderedDict()
        self._next_expiry_ms = _FAR_FUTURE_MS  # a lower bound on the earliest active expiry

    # ---- commands ----

    def handle(self, cmd: Command, now_ms: int) -> Reply:
        """Apply one command; raise a DomainError (and change nothing) when refused.

        A repeated request id with the same payload returns the first answer (a refusal
        too); with another payload it is refused with RequestConflict.
        """
        validate(cmd, self.statuses)
        return self.handle_checked(cmd, now_ms)

    def handle_checked(self, cmd: Command, now_ms: int) -> Reply:
        """`handle` for a command its sender already validated (a bulk load's receipts)."""
        if cmd.sku != self.sku or cmd.site != self.site:
            raise InvariantViolation(f"{cmd.sku}@{cmd.site} routed to cell {self.sku}@{self.site}")
        self._forget_old(now_ms)
        seen = self._seen.get(cmd.request_id)
        if seen is not None:
            _, first, answer = seen
            if not same_payload(first, cmd):
                raise RequestConflict(cmd.request_id, differs=payload_difference(first, cmd))
            if isinstance(answer, DomainError):
                # Drop the traceback of the previous raise: re-raising the cached object
                # would chain every retry's frames onto it (unbounded memory).
                raise answer.with_traceback(None)
            return answer
        self.expire_due(now_ms)
        try:
            reply = self._dispatch(cmd, now_ms)
        except DomainError as refusal:
            self._seen[cmd.request_id] = (now_ms, cmd, refusal)
            raise
        self._seen[cmd.request_id] = (now_ms, cmd, reply)
        return reply

    def _dispatch(self, cmd: Command, now_ms: int) -> Reply:
        match cmd:
            case Receive():
                return self._receive(cmd, now_ms)
            case Move():
                return self._move(cmd, now_ms)
            case ChangeStatus():
                return self._change_status(cmd, now_ms)
            case Reserve():
                return self._reserve(cmd, now_ms)
            case Commit():
                return self._commit(cmd, now_ms)
            case Release():
                return self._release(cmd, now_ms)
            case Consume():
                return self._consume(cmd, now_ms)
            case Adjust():
                return self._adjust(cmd, now_ms)
        raise InvariantViolation(f"unknown command {type(cmd).__name__}")

    def _receive(self, cmd: Receive, now_ms: int) -> Received:
        lot = self.ledger.lots.get(cmd.lot_id)
        new_lot = None
        if lot is None:
            new_lot = Lot(cmd.lot_id, cmd.received_at_ms or now_ms, cmd.expires_at_ms, cmd.opened_at_ms)
        elif cmd.expires_at_ms and cmd.expires_at_ms != lot.expires_at_ms:
            raise FailedPrecondition(
                "LOT_DATES_CONFLICT",
                f"lot {cmd.lot_id!r} expires at {lot.expires_at_ms}, not {cmd.expires_at_ms}",
                {"lot_id": cmd.lot_id, "expires_at_ms": str(lot.expires_at_ms)},
            )
        key = QuantKey(cmd.lot_id, cmd.bin, cmd.status, cmd.owner)
        self._emit(MovementKind.RECEIVE, cmd, now_ms, key.lot_id, cmd.qty, cmd.source, key, lot=new_lot)
        return Received(cmd.lot_id, cmd.qty)

    def _move(self, cmd: Move, now_ms: int) -> Moved:
        src = QuantKey(cmd.lot_id, cmd.from_bin, cmd.status, cmd.owner)
        dst = QuantKey(cmd.lot_id, cmd.to_bin, cmd.status, cmd.owner)
        self._require_free(src, cmd.qty)
        self._emit(MovementKind.MOVE, cmd, now_ms, cmd.lot_id, cmd.qty, src, dst)
        return Moved(cmd.qty)

    def _change_status(self, cmd: ChangeStatus, now_ms: int) -> StatusChanged:
        if not self.statuses.can_transition(cmd.from_status, cmd.to_status):
            raise FailedPrecondition(
                "TRANSITION_NOT_ALLOWED",
                f"status {cmd.from_status!r} cannot become {cmd.to_status!r}",
                {"from_status": cmd.from_status, "to_status": cmd.to_status},
            )
        src = QuantKey(cmd.lot_id, cmd.bin, cmd.from_status, cmd.owner)
        dst = QuantKey(cmd.lot_id, cmd.bin, cmd.to_status, cmd.owner)
        self._require_free(src, cmd.qty)
        self._emit(MovementKind.CHANGE_STATUS, cmd, now_ms, cmd.lot_id, cmd.qty, src, dst)
        return StatusChanged(cmd.qty)

    def _reserve(self, cmd: Reserve, now_ms: int) -> Reserved:
        existing = self.ledger.hold(cmd.hold_id)
        if existing is not None:
            # A retry with the first request id is answered from _seen while the window
            # remembers it; after that, "the same request id" is the true explanation.
            same = existing.request_id == cmd.request_id
            raise RequestConflict(cmd.hold_id, "hold id", "idempotency_window" if same else "request_id")
        taken: dict[QuantKey, int] = {}  # what earlier lines of this command already took
        plan: list[tuple[QuantKey, int]] = []
        for line in cmd.lines:
            picks, free = self._allocate(line, now_ms, taken)
            if picks is None:
                raise InsufficientStock(self.sku, self.site, line.qty, free)
            for key, qty in picks:
                taken[key] = taken.get(key, 0) + qty
                plan.append((key, qty))
        expires_at_ms = now_ms + cmd.ttl_ms
        for key, qty in plan:
            self._emit(
                MovementKind.RESERVE,
                cmd,
                now_ms,
                key.lot_id,
                0,
                key,
                key,
                held_key=key,
                held_delta=qty,
                hold_id=cmd.hold_id,
                expires_at_ms=expires_at_ms,
            )
        self._next_expiry_ms = min(self._next_expiry_ms, expires_at_ms)
        return Reserved(self._view(self.ledger.active[cmd.hold_id], now_ms))

    def _commit(self, cmd: Commit, now_ms: int) -> Committed:
        part = self._active_hold(cmd.hold_id, now_ms)
        held = part.held_qty
        qty = held if cmd.qty is None else cmd.qty
        require_within_hold(cmd.hold_id, held, qty)
        to_commit = qty
        # Commit in allocation (removal) order; the remainder is released in the same step.
        for key, alloc in list(part.allocations.items()):
            take = min(alloc, to_commit)
            to_commit -= take
            if take:
                self._emit(
                    MovementKind.COMMIT,
                    cmd,
                    now_ms,
                    key.lot_id,
                    take,
                    key,
                    External.CUSTOMER,
                    held_key=key,
                    held_delta=-take,
                    hold_id=cmd.hold_id,
                )
            if alloc - take:
                self._release_leg(cmd, now_ms, key, alloc - take, cmd.hold_id)
        return Committed(self._view(part, now_ms), qty, held - qty)

    def _release(self, cmd: Release, now_ms: int) -> Released:
        part = self._active_hold(cmd.hold_id, now_ms)
        held = part.held_qty
        for key, alloc in list(part.allocations.items()):
            self._release_leg(cmd, now_ms, key, alloc, cmd.hold_id)
        if cmd.abort:
            self._void_answer(part.request_id, cmd.hold_id)
        return Released(self._view(part, now_ms), held)

    def _void_answer(self, request_id: str, hold_id: str) -> None:
        """Replace a remembered success by HOLD_ABORTED (see Release.abort)."""
        seen = self._seen.get(request_id)
        if seen is not None and not isinstance(seen[2], DomainError):
            self._seen[request_id] = (seen[0], seen[1], hold_aborted(hold_id))

    def _consume(self, cmd: Consume, now_ms: int) -> Consumed:
        # A physical fact: take what the books have (unheld, on hand), never refuse.
        line = ReserveLine(
            qty=cmd.qty,
            strategy=cmd.strategy,
            lot_id=cmd.lot_id,
            owner=cmd.owner,
            bin_prefix=cmd.bin_prefix,
        )
        picks = self._candidates(line, now_ms, {}, for_consume=True, status=cmd.status)
        allocations: list[Allocation] = []
        left = cmd.qty
        for key, free in picks:
            take = min(free, left)
            left -= take
            self._emit(MovementKind.CONSUME, cmd, now_ms, key.lot_id, take, key, cmd.destination)
            allocations.append(self._allocation(key, take))
            if not left:
                break
        if left:
            # The books showed less than was physically taken: record it, flag it.
            self._emit(
                MovementKind.DISCREPANCY,
                cmd,
                now_ms,
                cmd.lot_id,
                left,
                External.COUNT_VARIANCE,
                cmd.destination,
            )
        return Consumed(cmd.qty - left, left, tuple(allocations))

    def _adjust(self, cmd: Adjust, now_ms: int) -> Adjusted:
        if cmd.lot_id not in self.ledger.lots:
            raise NotFound("lot", f"{self.sku}@{self.site}/{cmd.lot_id}")
        key = QuantKey(cmd.lot_id, cmd.bin, cmd.status, cmd.owner)
        quant = self.ledger.quants.get(key)
        previous = quant.qty if quant else 0
        held = quant.held if quant else 0
        variance = cmd.counted_qty - previous
        if cmd.counted_qty < held:
            # Fewer units exist than are held: shorten the newest holds on this quant first.
            excess = held - cmd.counted_qty
            # Not `reverse=True`: that keeps ties in creation order, and holds of one
            # micro-batch share created_at_ms; reversing the stable sort puts the newest first.
            parts = reversed(
                sorted(
                    (p for p in self.ledger.active.values() if key in p.allocations),
                    key=lambda p: p.created_at_ms,
                )
            )
            for part in parts:
                cut = min(part.allocations[key], excess)
                excess -= cut
                self._emit(
                    MovementKind.ADJUST,
                    cmd,
                    now_ms,
                    key.lot_id,
                    0,
                    key,
                    key,
                    held_key=key,
                    held_delta=-cut,
                    hold_id=part.hold_id,
                )
                if not excess:
                    break
        if variance:
            src: Bucket = External.COUNT_VARIANCE if variance > 0 else key
            dst: Bucket = key if variance > 0 else External.COUNT_VARIANCE
            self._emit(MovementKind.ADJUST, cmd, now_ms, key.lot_id, abs(variance), src, dst)
        return Adjusted(previous, cmd.counted_qty, variance)

    # ---- background ----

    def expire_due(self, now_ms: int) -> list[Movement]:
        """Turn holds past their TTL into release movements (the sweeper calls this too)."""
        if now_ms < self._next_expiry_ms:
            return []
        movements: list[Movement] = []
        next_expiry = _FAR_FUTURE_MS
        for part in list(self.ledger.active.values()):
            if part.expires_at_ms <= now_ms:
                for key, alloc in list(part.allocations.items()):
                    movements.append(
                        self._emit(
                            MovementKind.EXPIRE,
                            None,
                            now_ms,
                            key.lot_id,
                            0,
                            key,
                            key,
                            held_key=key,
                            held_delta=-alloc,
                            hold_id=part.hold_id,
                        )
                    )
            else:
                next_expiry = min(next_expiry, part.expires_at_ms)
        self._next_expiry_ms = next_expiry
        return movements

    @property
    def next_expiry_ms(self) -> int:
        """A lower bound on the earliest expiry of this cell's active holds."""
        return self._next_expiry_ms

    def drain(self) -> list[Movement]:
        """Hand the movements produced since the last drain to the journal."""
        out, self.outbox = self.outbox, []
        return out

    def _forget_old(self, now_ms: int) -> None:
        seen, limits = self._seen, self.limits
        horizon = now_ms - limits.dedupe_window_ms
        while seen and (len(seen) > limits.dedupe_max_entries or next(iter(seen.values()))[0] < horizon):
            seen.popitem(last=False)
        if self.ledger.resolved:
            self.ledger.prune_resolved(now_ms - limits.resolved_hold_retention_ms, limits.resolved_hold_max)

    # ---- queries (never mutate: expired holds stop counting on read) ----

    def expired_held(self, now_ms: int) -> dict[QuantKey, int]:
        """Held qty of holds past their TTL that the sweeper has not released yet."""
        if now_ms < self._next_expiry_ms:
            return {}
        out: dict[QuantKey, int] = {}
        for part in self.ledger.active.values():
            if part.expires_at_ms <= now_ms:
                for key, alloc in part.allocations.items():
                    out[key] = out.get(key, 0) + alloc
        return out

    def available(self, now_ms: int) -> int:
        """Available-to-promise: Σ(qty − held) over sellable, unexpired quants."""
        return sum(row.available for row in self.slice(now_ms, ()))

    def slice(
        self,
        now_ms: int,
        group_by: Iterable[Dimension],
        filt: SliceFilter = SliceFilter(),
        bin_depth: int = 0,
    ) -> list[SliceRow]:
        group_by = tuple(group_by)
        expired = self.expired_held(now_ms)
        acc: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for key, quant in self.ledger.quants.items():
            lot = self.ledger.lots[key.lot_id]
            expiry = lot.effective_expiry_ms(self.opened_shelf_life_ms)
            if not self._passes(key, expiry, filt, now_ms):
                continue
            status = self.statuses.statuses[key.status]
            held = quant.held - expired.get(key, 0)
            fresh = expiry == NO_EXPIRY_MS or expiry > now_ms
            available = quant.qty - held if status.sellable and fresh else 0
            group = tuple((d.value, self._dim_value(d, key, lot, expiry, bin_depth)) for d in group_by)
            row = acc.setdefault(group, [0, 0, 0, 0, _FAR_FUTURE_MS])
            row[0] += quant.qty
            row[1] += held
            row[2] += max(available, 0)
            row[3] += quant.qty if status.on_hand else 0
            if expiry:
                row[4] = min(row[4], expiry)
        return [
            SliceRow(group, r[0], r[1], r[2], r[3], 0 if r[4] == _FAR_FUTURE_MS else r[4])
            for group, r in sorted(acc.items())
        ]

    def hold_ids(self) -> list[str]:
        """Every hold with a part here, active or resolved (still retained)."""
        return [*self.ledger.active, *self.ledger.resolved]

    def hold_view(self, hold_id: str, now_ms: int) -> HoldView | None:
        part = self.ledger.hold(hold_id)
        return None if part is None else self._view(part, now_ms)

    # ---- helpers ----

    def _passes(self, key: QuantKey, expiry: int, filt: SliceFilter, now_ms: int) -> bool:
        if filt.statuses and key.status not in filt.statuses:
            return False
        if filt.sellable_only and not self.statuses.statuses[key.status].sellable:
            return False
        if filt.lot_id and key.lot_id != filt.lot_id:
            return False
        if not owner_matches(key.owner, filt.owner) or not bin_matches(key.bin, filt.bin_prefix):
            return False
        if filt.min_shelf_life_days is not None or filt.max_shelf_life_days is not None:
            days = shelf_life_left_days(expiry, now_ms)
            if filt.min_shelf_life_days is not None and days < filt.min_shelf_life_days:
                return False
            if filt.max_shelf_life_days is not None and days > filt.max_shelf_life_days:
                return False
        return True

    @staticmethod
    def _dim_value(d: Dimension, key: QuantKey, lot: Lot, expiry: int, bin_depth: int) -> str:
        match d:
            case Dimension.BIN:
                return "/".join(key.bin.split("/")[:bin_depth]) if bin_depth > 0 else key.bin
            case Dimension.STATUS:
                return key.status
            case Dimension.OWNER:
                return key.owner
            case Dimension.LOT:
                return key.lot_id
            case Dimension.EXPIRY_DAY:
                return _day(expiry)
            case Dimension.RECEIVED_DAY:
                return _day(lot.received_at_ms)
        raise InvariantViolation(f"unknown dimension {d}")

    def _candidates(
        self,
        line: ReserveLine,
        now_ms: int,
        taken: dict[QuantKey, int],
        *,
        for_consume: bool = False,
        status: str = "",
    ) -> list[tuple[QuantKey, int]]:
        """Quants the line may take from, with their free qty, in removal order: sellable
        ones, or with `status` (a consume that names one) only those in exactly that status."""
        out: list[tuple[tuple[int, int, str, str], QuantKey, int]] = []
        for key, quant in self.ledger.quants.items():
            if status:
                if key.status != status:
                    continue
            elif not self.statuses.statuses[key.status].sellable:
                continue
            if line.lot_id and key.lot_id != line.lot_id:
                continue
            if not owner_matches(key.owner, line.owner) or not bin_matches(key.bin, line.bin_prefix):
                continue
            lot = self.ledger.lots[key.lot_id]
            expiry = lot.effective_expiry_ms(self.opened_shelf_life_ms)
            if not for_consume:
                # A physical take is never refused; a promise never includes expired stock.
                if expiry != NO_EXPIRY_MS and expiry <= now_ms:
                    continue
                if line.min_shelf_life_days and shelf_life_left_days(expiry, now_ms) < line.min_shelf_life_days:
                    continue
            free = quant.qty - quant.held - taken.get(key, 0)
            if free <= 0:
                continue
            out.append((_removal_order(line.strategy, lot, expiry, key), key, free))
        out.sort(key=lambda t: t[0])
        return [(key, free) for _, key, free in out]

    def _allocate(
        self, line: ReserveLine, now_ms: int, taken: dict[QuantKey, int]
    ) -> tuple[list[tuple[QuantKey, int]] | None, int]:
        """All-or-nothing: the picks for `line.qty`, or None and the free qty there was."""
        picks: list[tuple[QuantKey, int]] = []
        left = line.qty
        free_total = 0
        for key, free in self._candidates(line, now_ms, taken):
            free_total += free
            if left:
                take = min(free, left)
                picks.append((key, take))
                left -= take
        return (None, free_total) if left else (picks, free_total)

    def _require_free(self, key: QuantKey, qty: int) -> None:
        quant = self.ledger.quants.get(key)
        if quant is None and key.lot_id not in self.ledger.lots:
            raise NotFound("lot", f"{self.sku}@{self.site}/{key.lot_id}")
        held = quant.held if quant else 0
        if self.statuses.statuses[key.status].allow_negative and not held:
            return  # may go below zero, but never below what holds have promised
        free = quant.qty - held if quant else 0
        if free < qty:
            raise InsufficientStock(self.sku, self.site, qty, max(free, 0))

    def _active_hold(self, hold_id: str, now_ms: int) -> HoldPart:
        part = self.ledger.hold(hold_id)
        if part is None:
            raise hold_not_found(hold_id)
        require_active(hold_id, part.state)
        return part

    def _release_leg(self, cmd: Command, now_ms: int, key: QuantKey, qty: int, hold_id: str) -> Movement:
        return self._emit(
            MovementKind.RELEASE,
            cmd,
            now_ms,
            key.lot_id,
            0,
            key,
            key,
            held_key=key,
            held_delta=-qty,
            hold_id=hold_id,
        )

    def _emit(
        self,
        kind: MovementKind,
        cmd: Command | None,
        now_ms: int,
        lot_id: str,
        qty: int,
        src: Bucket,
        dst: Bucket,
        *,
        held_key: QuantKey | None = None,
        held_delta: int = 0,
        hold_id: str = "",
        lot: Lot | None = None,
        expires_at_ms: int = 0,
    ) -> Movement:
        m = Movement(
            seq=self.ledger.seq + 1,
            kind=kind,
            sku=self.sku,
            site=self.site,
            lot_id=lot_id,
            qty=qty,
            src=src,
            dst=dst,
            held_key=held_key,
            held_delta=held_delta,
            hold_id=hold_id,
            request_id=cmd.request_id if cmd else "",
            doc_ref=cmd.doc_ref if cmd else "",
            at_ms=now_ms,
            lot=lot,
            expires_at_ms=expires_at_ms,
        )
        self.ledger.apply(m)
        self.outbox.append(m)
        return m

    def _allocation(self, key: QuantKey, qty: int) -> Allocation:
        lot = self.ledger.lots[key.lot_id]
        expiry = lot.effective_expiry_ms(self.opened_shelf_life_ms)
        return Allocation(key.lot_id, key.bin, key.status, key.owner, qty, expiry)

    def _view(self, part: HoldPart, now_ms: int) -> HoldView:
        state, held = part.state, part.held_qty
        if state is HoldState.ACTIVE and part.expires_at_ms <= now_ms:
            state, held = HoldState.EXPIRED, 0  # expired holds stop counting at once
        allocations = tuple(self._allocation(k, q) for k, q in part.allocations.items())
        return HoldView(
            hold_id=part.hold_id,
            sku=self.sku,
            site=self.site,
            state=state,
            allocations=allocations,
            held_qty=held,
            committed_qty=part.committed_qty,
            released_qty=part.released_qty,
            created_at_ms=part.created_at_ms,
            expires_at_ms=part.expires_at_ms,
        )


def _removal_order(strategy: Strategy, lot: Lot, expiry: int, key: QuantKey) -> tuple[int, int, str, str]:
    """Sort key of a quant under a removal strategy; ties broken by lot then bin."""
    match strategy:
        case Strategy.FIFO:
            return (lot.received_at_ms, 0, key.lot_id, key.bin)
        case Strategy.LIFO:
            return (-lot.received_at_ms, 0, key.lot_id, key.bin)
        case _:  # FEFO, and LOT (one lot: FEFO order is as good as any)
            return (expiry or _FAR_FUTURE_MS, lot.received_at_ms, key.lot_id, key.bin)
