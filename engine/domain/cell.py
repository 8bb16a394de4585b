"""The cell: the single writer of one (sku, site) pair (DESIGN.md §6).

A cell processes one command at a time. Every handler first checks everything, then
emits movements; the ledger applies them. So a refused command changes nothing, and the
movements are the complete record (replaying them gives the live state).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, cast

from engine.domain.commands import (
    DEVICE_OPS_MISSING,
    NO_PREV_SEQ,
    Adjust,
    Adjusted,
    ChangeStatus,
    Command,
    Commit,
    Committed,
    Consume,
    Consumed,
    Count,
    Counted,
    CountLine,
    DeviceOp,
    DeviceOpDone,
    ExpireLots,
    FreezeStock,
    HoldCut,
    LotCount,
    LotOpened,
    LotsExpired,
    Move,
    Moved,
    OpenLot,
    Receive,
    Received,
    Release,
    Released,
    Reply,
    Reserve,
    Reserved,
    ReserveLine,
    ScrapOverAge,
    Scrapped,
    StatusChanged,
    StockFrozen,
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
from engine.domain.freshness import freshness_expired
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
    Provenance,
    QuantKey,
    opened_over_age,
    shelf_life_left_days,
)
from engine.domain.statuses import DEFAULT_DICTIONARY, Role, StatusDictionary

_FAR_FUTURE_MS = 2**62


@dataclass(frozen=True, slots=True)
class CellLimits:
    """Bounds of a cell's memory: the idempotency window and resolved-hold retention."""

    dedupe_window_ms: int = 15 * 60_000
    dedupe_max_entries: int = 50_000
    resolved_hold_retention_ms: int = 60 * 60_000
    resolved_hold_max: int = 50_000
    out_of_stock_retention_ms: int = 7 * 86_400_000  # lots that ran out answer at qty 0 this long
    out_of_stock_max: int = 10_000  # out-of-stock lots remembered per cell at most


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
    out_of_stock_only: bool = False  # only the zero rows of what ran out (issue 15 item 7)

    @property
    def narrows_quants(self) -> bool:
        """A filter on quants' own dimensions: what ran out has none, so it shows no zero row."""
        return bool(
            self.statuses
            or self.owner
            or self.bin_prefix
            or self.sellable_only
            or self.min_shelf_life_days is not None
            or self.max_shelf_life_days is not None
        )


@dataclass(frozen=True, slots=True)
class SliceRow:
    group: tuple[tuple[str, str], ...]  # (dimension, value) in group-by order
    qty: int
    held: int
    available: int  # sellable, unexpired, not held
    on_hand: int
    earliest_expiry_ms: int
    out_of_stock_since_ms: int = 0  # a zero row: when the lot (or the pair) ran out


_WHY = {"LOT_NOT_EXPIRED": "has not reached its expiry", "LOT_NOT_OVER_AGE": "is not past its opened shelf life"}
_LOT_DIMS = frozenset({Dimension.LOT, Dimension.EXPIRY_DAY, Dimension.RECEIVED_DAY})  # a lot's own


def bin_matches(bin_: str, prefix: str) -> bool:
    """`A/03` covers `A/03` and `A/03/P12`, not `A/030`."""
    return not prefix or bin_ == prefix or bin_.startswith(prefix + "/")


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat() if ms else ""


class WindowSource(Protocol):
    """Remembered commands kept in their encoded (columnar) form, as a recovered snapshot
    holds them: row `row` becomes its command and answer only when asked (a retry under its
    request id, an export). Most remembered commands are never asked for again."""

    def entry(self, row: int) -> tuple[Command, Reply | DomainError]: ...


# An idempotency window entry: (at_ms, command, answer), or (at_ms, source, row) while the
# entry is still encoded (Cell.recalled builds it).
Recalled = tuple[int, Command, Reply | DomainError]
WindowEntry = Recalled | tuple[int, WindowSource, int]


class Cell:
    """All quants, lots and holds of one (sku, site), and the idempotency window."""

    __slots__ = (
        "_business_at_ms",
        "_next_expiry_ms",
        "_seen",
        "devices",
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
        self._seen: OrderedDict[str, WindowEntry] = OrderedDict()
        self._next_expiry_ms = _FAR_FUTURE_MS  # a lower bound on the earliest active expiry
        # The last seq of each device applied here: offline ops apply exactly once, forever.
        self.devices: dict[str, int] = {}
        self._business_at_ms = 0  # while a device op applies: when it happened

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
        seen = self._recall(cmd.request_id)
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
            if not _depends_on_later_ops(refusal):
                self._seen[cmd.request_id] = (now_ms, cmd, refusal)
            raise
        self._seen[cmd.request_id] = (now_ms, cmd, reply)
        return reply

    def receive_checked(self, cmd: Receive, now_ms: int) -> None:
        """`handle_checked` of a receipt its sender validated (a bulk load's), received
        without the general command path: no dispatch, no answer built (the sender makes
        Received(lot_id, qty)), the movement made and applied in place (Ledger.receive).
        A receipt the window knows (a retry, an id reused), a lot's other dates, or a
        device op's business time go the general way, which answers or refuses them."""
        if cmd.sku != self.sku or cmd.site != self.site:
            raise InvariantViolation(f"{cmd.sku}@{cmd.site} routed to cell {self.sku}@{self.site}")
        self._forget_old(now_ms)
        ledger = self.ledger
        lot = ledger.lots.get(cmd.lot_id)
        if cmd.request_id in self._seen or self._business_at_ms or (lot is not None and cmd.expires_at_ms):
            self.handle_checked(cmd, now_ms)  # the window is already trimmed for now_ms: no change twice
            return
        self.expire_due(now_ms)
        new_lot = (
            None
            if lot is not None
            else Lot(cmd.lot_id, cmd.received_at_ms or now_ms, cmd.expires_at_ms, cmd.opened_at_ms)
        )
        key = QuantKey(cmd.lot_id, cmd.bin, cmd.status, cmd.owner)
        # Positional, in Movement's field order (as `_emit`; a test checks the order).
        m = Movement(
            ledger.seq + 1, _RECEIVE, self.sku, self.site, cmd.lot_id, cmd.qty, cmd.source, key,
            None, 0, "", cmd.request_id, cmd.doc_ref, now_ms, new_lot, 0, None,
        )  # fmt: skip
        ledger.receive(m)
        self.outbox.append(m)
        self._seen[cmd.request_id] = (now_ms, cmd, Received(cmd.lot_id, cmd.qty))

    def replay_receipt(self, cmd: Receive, made: Movement, now_ms: int) -> None:
        """`handle_checked` of a receipt its journal entry shows accepted (a standby's or a
        recovery's replay), with the movement it made there (`made`, decoded from the
        entry) applied as it is rather than made again: no QuantKey, Lot or Movement is
        built, and the ledger and the window end as the primary's did (DESIGN.md §9).

        Raises InvariantViolation before the receipt changes anything when `made` is not
        the movement it makes here — replay then stops with JournalCorrupt, as it did when
        making the receipt again produced another movement."""
        if cmd.sku != self.sku or cmd.site != self.site:
            raise InvariantViolation(f"{cmd.sku}@{cmd.site} routed to cell {self.sku}@{self.site}")
        self._forget_old(now_ms)
        if cmd.request_id in self._seen:  # the primary answered it from its window: no movement
            raise InvariantViolation(f"receipt {cmd.request_id!r} of {self.sku}@{self.site} is in the window")
        self.expire_due(now_ms)  # holds due before it: their movements came first on the primary too
        if not self._receipt_made(cmd, made, now_ms):
            raise InvariantViolation(f"receipt {cmd.request_id!r} of {self.sku}@{self.site} did not make {made!r}")
        self.ledger.receive(made)
        self.outbox.append(made)
        self._seen[cmd.request_id] = (now_ms, cmd, Received(cmd.lot_id, cmd.qty))

    def _receipt_made(self, cmd: Receive, made: Movement, now_ms: int) -> bool:
        """`made` is the very movement `_receive` makes for `cmd` now (field by field)."""
        dst, lot = made.dst, made.lot
        known = self.ledger.lots.get(cmd.lot_id)
        if known is None:
            lot_ok = lot is not None and (lot.lot_id, lot.received_at_ms, lot.expires_at_ms, lot.opened_at_ms) == (
                cmd.lot_id,
                cmd.received_at_ms or now_ms,
                cmd.expires_at_ms,
                cmd.opened_at_ms,
            )
        else:  # no new lot; dates that conflict were refused (LOT_DATES_CONFLICT)
            lot_ok = lot is None and (not cmd.expires_at_ms or cmd.expires_at_ms == known.expires_at_ms)
        return (
            lot_ok
            and made.kind is MovementKind.RECEIVE
            and type(dst) is QuantKey
            and (dst.lot_id, dst.bin, dst.status, dst.owner) == (cmd.lot_id, cmd.bin, cmd.status, cmd.owner)
            and (made.seq, made.sku, made.site, made.lot_id, made.qty, made.src, made.at_ms)
            == (self.ledger.seq + 1, self.sku, self.site, cmd.lot_id, cmd.qty, cmd.source, now_ms)
            and (made.request_id, made.doc_ref) == (cmd.request_id, cmd.doc_ref)
            and (made.held_key, made.held_delta, made.hold_id, made.expires_at_ms, made.provenance)
            == (None, 0, "", 0, None)
        )

    def _recall(self, request_id: str) -> Recalled | None:
        """The window's entry for `request_id`, built (and kept built) if still encoded."""
        entry = self._seen.get(request_id)
        if entry is None or not isinstance(entry[2], int):
            return entry
        recalled = self._seen[request_id] = self.recalled(entry)  # same key: its place is kept
        return recalled

    @staticmethod
    def recalled(entry: WindowEntry) -> Recalled:
        """An entry as (at_ms, command, answer), built from its source if still encoded."""
        at_ms, source, row = entry
        if not isinstance(row, int):
            return cast("Recalled", entry)
        return (at_ms, *cast("WindowSource", source).entry(row))

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
            case Count():
                return self._count(cmd, now_ms)
            case ExpireLots():
                return self._expire_lots(cmd, now_ms)
            case ScrapOverAge():
                return self._scrap_over_age(cmd, now_ms)
            case OpenLot():
                return self._open_lot(cmd, now_ms)
            case FreezeStock():
                return self._freeze(cmd, now_ms)
            case DeviceOp():
                return self._device_op(cmd, now_ms)
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
                stale = self._over_age_lots(line, now_ms)
                if stale:
                    raise freshness_expired(self.sku, self.site, stale, line.qty, free)
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
        seen = self._recall(request_id)
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
        if self.ledger.opened_lots and cmd.destination is not External.SCRAP:  # inline: the order path
            picks = self._fresh_picks(picks, cmd, line, now_ms)
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
        if cmd.relative:
            return self._adjust_by(cmd, now_ms, key)
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

    def _adjust_by(self, cmd: Adjust, now_ms: int, key: QuantKey) -> Adjusted:
        """A relative adjustment: the quant as it stands now changes by `delta_qty`. It takes
        free units only — what holds promised stays promised — so it never oversells and
        never goes below zero (INSUFFICIENT_STOCK, with what was free, changes nothing)."""
        quant = self.ledger.quants.get(key)
        previous = quant.qty if quant else 0
        delta = cmd.delta_qty
        if delta < 0:
            held = quant.held if quant else 0
            if previous - held < -delta:
                raise InsufficientStock(self.sku, self.site, -delta, max(previous - held, 0))
            self._emit(MovementKind.ADJUST, cmd, now_ms, key.lot_id, -delta, key, External.COUNT_VARIANCE)
        else:
            self._emit(MovementKind.ADJUST, cmd, now_ms, key.lot_id, delta, External.COUNT_VARIANCE, key)
        return Adjusted(previous, previous + delta, delta)

    # ---- counts, expiry, freshness (issue 15) ----

    def _count(self, cmd: Count, now_ms: int) -> Counted:
        """Set the counted quants in this one step; see Count. Units held by a hold that a
        count finds missing cut that hold (newest first), and the answer lists every cut."""
        cuts: list[HoldCut] = []
        if not cmd.whole_bin:
            ready = self.statuses.role(Role.READY)
            lots = [self._set_counted(cmd, now_ms, line, line.status or ready, line.qty, cuts) for line in cmd.lines]
            return Counted(tuple(lots), tuple(cuts))
        counted = {line.lot_id: line for line in cmd.lines}
        books: dict[str, list[QuantKey]] = {}
        for key, quant in self.ledger.quants.items():
            if quant.qty > 0 and bin_matches(key.bin, cmd.bin) and self.statuses.statuses[key.status].on_hand:
                books.setdefault(key.lot_id, []).append(key)
        out: list[LotCount] = []
        for lot_id in sorted(books.keys() | counted.keys()):
            keys = books.get(lot_id, [])
            before = sum(self.ledger.quants[k].qty for k in keys)
            line = counted.get(lot_id, CountLine(lot_id, 0))
            if line.qty < before:
                self._count_missing(cmd, now_ms, keys, before - line.qty, cuts)
            elif line.qty > before:
                ready = self.statuses.role(Role.READY)
                key = QuantKey(lot_id, cmd.bin, ready, line.owner)
                current = self.ledger.quants.get(key)
                found = line.qty - before + (current.qty if current else 0)
                self._set_counted(cmd, now_ms, line, ready, found, cuts)
            out.append(LotCount(lot_id, before, line.qty))
        return Counted(tuple(out), tuple(cuts))

    def _count_missing(self, cmd: Count, now_ms: int, keys: list[QuantKey], missing: int, cuts: list[HoldCut]) -> None:
        """Take `missing` units off a lot's quants: free units first (sellable quants
        first: an unscanned take is the likely cause), held units only when no free one
        is left — so a count cuts a hold only when the held units are truly gone."""
        order = sorted(keys, key=lambda k: (not self.statuses.statuses[k.status].sellable, k))
        target = {k: self.ledger.quants[k].qty for k in order}
        for free_pass in (True, False):
            for k in order:
                quant = self.ledger.quants[k]
                room = target[k] - quant.held if free_pass else target[k]
                take = min(max(room, 0), missing)
                target[k] -= take
                missing -= take
        for k in order:
            if target[k] != self.ledger.quants[k].qty:
                self._set_quant(cmd, now_ms, k, target[k], cuts, source=cmd.source.value, confidence=cmd.confidence)

    def _set_counted(
        self, cmd: Count, now_ms: int, line: CountLine, status: str, qty: int, cuts: list[HoldCut]
    ) -> LotCount:
        key = QuantKey(line.lot_id, cmd.bin, status, line.owner)
        quant = self.ledger.quants.get(key)
        previous = quant.qty if quant else 0
        if line.lot_id not in self.ledger.lots:
            if qty:  # a lot the books do not know: received from the count-variance bucket
                lot = Lot(line.lot_id, now_ms, line.expires_at_ms)
                self._emit(
                    MovementKind.COUNT,
                    cmd,
                    now_ms,
                    line.lot_id,
                    qty,
                    External.COUNT_VARIANCE,
                    key,
                    lot=lot,
                    source=cmd.source.value,
                    confidence=cmd.confidence,
                )
            return LotCount(line.lot_id, 0, qty)
        self._set_quant(cmd, now_ms, key, qty, cuts, source=cmd.source.value, confidence=cmd.confidence)
        return LotCount(line.lot_id, previous, qty)

    def _set_quant(
        self,
        cmd: Command,
        now_ms: int,
        key: QuantKey,
        qty: int,
        cuts: list[HoldCut],
        *,
        source: str = "",
        confidence: float = 0.0,
    ) -> None:
        """Make the quant hold `qty` (held ≤ qty kept by cutting holds), the difference to or
        from the count-variance bucket."""
        quant = self.ledger.quants.get(key)
        previous, held = (quant.qty, quant.held) if quant else (0, 0)
        if qty < held:
            cuts.extend(self._cut_holds(cmd, now_ms, key, held - qty))
        variance = qty - previous
        if variance:
            src: Bucket = External.COUNT_VARIANCE if variance > 0 else key
            dst: Bucket = key if variance > 0 else External.COUNT_VARIANCE
            self._emit(
                MovementKind.COUNT,
                cmd,
                now_ms,
                key.lot_id,
                abs(variance),
                src,
                dst,
                source=source,
                confidence=confidence,
            )

    def _cut_holds(self, cmd: Command, now_ms: int, key: QuantKey, excess: int) -> list[HoldCut]:
        """Shorten the newest holds on `key` by `excess` units (journaled, and answered)."""
        cuts: list[HoldCut] = []
        # Not `reverse=True`: that keeps ties in creation order, and holds of one micro-batch
        # share created_at_ms; reversing the stable sort puts the newest first.
        parts = reversed(
            sorted((p for p in self.ledger.active.values() if key in p.allocations), key=lambda p: p.created_at_ms)
        )
        for part in parts:
            cut = min(part.allocations[key], excess)
            excess -= cut
            self._emit(
                MovementKind.CUT_HOLD,
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
            cuts.append(HoldCut(part.hold_id, key.lot_id, key.bin, key.status, cut))
            if not excess:
                break
        return cuts

    def _lot_quants(self, lot_id: str, wanted: Callable[[Lot], bool], what: str) -> list[QuantKey]:
        """On-hand quants of the lots `wanted` picks (of `lot_id` only when named, which
        must exist and be wanted: else FAILED_PRECONDITION `what`)."""
        if lot_id:
            lot = self.ledger.lots.get(lot_id)
            if lot is None:
                raise NotFound("lot", f"{self.sku}@{self.site}/{lot_id}")
            if not wanted(lot):
                raise FailedPrecondition(
                    what, f"lot {lot_id!r} of {self.sku}@{self.site} {_WHY[what]}", {"lot_id": lot_id}
                )
        statuses = self.statuses.statuses
        return [
            key
            for key, quant in self.ledger.quants.items()
            if quant.qty > 0
            and (not lot_id or key.lot_id == lot_id)
            and statuses[key.status].on_hand
            and wanted(self.ledger.lots[key.lot_id])
        ]

    def _expire_lots(self, cmd: ExpireLots, now_ms: int) -> LotsExpired:
        expired = self.statuses.role(Role.EXPIRED)

        def past(lot: Lot) -> bool:
            return lot.expires_at_ms != NO_EXPIRY_MS and lot.expires_at_ms <= now_ms

        keys = [k for k in self._lot_quants(cmd.lot_id, past, "LOT_NOT_EXPIRED") if k.status != expired]
        qty, lots, cuts, stuck = self._move_whole(cmd, now_ms, keys, expired)
        return LotsExpired(qty, lots, cuts, stuck)

    def _freeze(self, cmd: FreezeStock, now_ms: int) -> StockFrozen:
        frozen = self.statuses.role(Role.FROZEN)
        statuses = self.statuses.statuses
        keys = [
            k
            for k, q in self.ledger.quants.items()
            if q.qty > 0 and k.status != frozen and statuses[k.status].on_hand and bin_matches(k.bin, cmd.bin)
        ]
        qty, lots, cuts, stuck = self._move_whole(cmd, now_ms, keys, frozen)
        return StockFrozen(qty, lots, cuts, stuck)

    def _move_whole(
        self, cmd: Command, now_ms: int, keys: list[QuantKey], to_status: str
    ) -> tuple[int, tuple[str, ...], tuple[HoldCut, ...], int]:
        """Move each quant whole to `to_status`, cutting the holds on it first (the units
        can no longer be promised); quants whose status may not go there stay. Returns
        (moved, lots, cuts, stuck)."""
        cuts: list[HoldCut] = []
        moved, stuck, lots = 0, 0, []
        for key in keys:
            quant = self.ledger.quants[key]
            if not self.statuses.can_transition(key.status, to_status):
                stuck += quant.qty  # e.g. packed goods: a person decides (the answer says so)
                continue
            if quant.held:
                cuts.extend(self._cut_holds(cmd, now_ms, key, quant.held))
            qty = quant.qty
            dst = QuantKey(key.lot_id, key.bin, to_status, key.owner)
            self._emit(MovementKind.CHANGE_STATUS, cmd, now_ms, key.lot_id, qty, key, dst)
            moved += qty
            lots.append(key.lot_id)
        return moved, tuple(sorted(set(lots))), tuple(cuts), stuck

    def _scrap_over_age(self, cmd: ScrapOverAge, now_ms: int) -> Scrapped:
        life = self.opened_shelf_life_ms

        def over_age(lot: Lot) -> bool:
            return opened_over_age(lot, life, now_ms)

        cuts: list[HoldCut] = []
        scrapped, lots = 0, []
        for key in self._lot_quants(cmd.lot_id, over_age, "LOT_NOT_OVER_AGE"):
            quant = self.ledger.quants[key]
            if quant.held:
                cuts.extend(self._cut_holds(cmd, now_ms, key, quant.held))
            qty = quant.qty
            self._emit(MovementKind.CONSUME, cmd, now_ms, key.lot_id, qty, key, External.SCRAP)
            scrapped += qty
            lots.append(key.lot_id)
        return Scrapped(scrapped, tuple(sorted(set(lots))), tuple(cuts))

    def _device_op(self, cmd: DeviceOp, now_ms: int) -> DeviceOpDone:
        """Apply a device's offline op once: at or below the device's watermark here it was
        applied before. A refusal is the op's outcome too (the watermark moves on: the device
        is told, and its later ops are not held back by it)."""
        applied = self.devices.get(cmd.device_id, 0)
        if cmd.seq <= applied:
            return DeviceOpDone(cmd.seq, True)
        if cmd.prev_seq not in (NO_PREV_SEQ, applied):
            raise device_ops_missing(self.sku, self.site, cmd, applied)
        inner = replace(cmd.command, request_id=cmd.request_id)  # the op's own id on its movements
        self._business_at_ms = cmd.at_ms
        try:
            reply = self._dispatch(inner, now_ms)
        except DomainError as refusal:
            self.devices[cmd.device_id] = cmd.seq
            reason = refusal.reason if isinstance(refusal, FailedPrecondition) else refusal.code
            return DeviceOpDone(cmd.seq, False, None, reason, refusal.message)
        finally:
            self._business_at_ms = 0
        self.devices[cmd.device_id] = cmd.seq
        assert isinstance(reply, Received | Consumed | Counted | Adjusted | Moved | StatusChanged)  # typing only
        return DeviceOpDone(cmd.seq, False, reply)

    def _open_lot(self, cmd: OpenLot, now_ms: int) -> LotOpened:
        lot = self.ledger.lots.get(cmd.lot_id)
        if lot is None:
            raise NotFound("lot", f"{self.sku}@{self.site}/{cmd.lot_id}")
        life = self.opened_shelf_life_ms
        if lot.opened_at_ms:
            fresh_until = lot.opened_at_ms + life if life else 0
            return LotOpened(cmd.lot_id, lot.opened_at_ms, True, fresh_until)
        key = next((k for k, q in self.ledger.quants.items() if k.lot_id == cmd.lot_id and q.qty > 0), None)
        if key is None:
            raise FailedPrecondition(
                "LOT_NOT_ON_HAND",
                f"lot {cmd.lot_id!r} of {self.sku}@{self.site} has no stock to open",
                {"lot_id": cmd.lot_id},
            )
        opened = replace(lot, opened_at_ms=cmd.opened_at_ms or now_ms)
        self._emit(MovementKind.OPEN, cmd, now_ms, cmd.lot_id, 0, key, key, lot=opened)
        fresh_until = opened.opened_at_ms + life if life else 0
        return LotOpened(cmd.lot_id, opened.opened_at_ms, False, fresh_until)

    def _over_age_lots(self, line: ReserveLine, now_ms: int, status: str = "") -> list[str]:
        """Lots the line could have taken free units from but for their opened age."""
        life = self.opened_shelf_life_ms
        if not life or not self.ledger.opened_lots:
            return []
        out = []
        for key, quant in self.ledger.quants.items():
            if quant.qty - quant.held <= 0 or (line.lot_id and key.lot_id != line.lot_id):
                continue
            if (status and key.status != status) or (not status and not self.statuses.statuses[key.status].sellable):
                continue
            if (
                owner_matches(key.owner, line.owner)
                and bin_matches(key.bin, line.bin_prefix)
                and opened_over_age(self.ledger.lots[key.lot_id], life, now_ms)
            ):
                out.append(key.lot_id)
        return out

    def _fresh_picks(
        self, picks: list[tuple[QuantKey, int]], cmd: Consume, line: ReserveLine, now_ms: int
    ) -> list[tuple[QuantKey, int]]:
        """A consume to a customer or transit skips over-age opened quants, and is refused
        (FRESHNESS_EXPIRED) when only they could serve it: serving them is the harm the rule
        prevents. Scrapping them (destination scrap) is always allowed."""
        life = self.opened_shelf_life_ms
        if not life or not self.ledger.opened_lots:
            return picks
        fresh = [(k, q) for k, q in picks if not opened_over_age(self.ledger.lots[k.lot_id], life, now_ms)]
        if len(fresh) == len(picks):
            return picks
        free = sum(q for _, q in fresh)
        if free < cmd.qty:
            stale = [k.lot_id for k, _ in picks if (k, _) not in fresh]
            raise freshness_expired(self.sku, self.site, stale, cmd.qty, free)
        return fresh

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

    def records(self) -> int:
        """How many records a snapshot of this cell writes (quants, lots, holds, window
        entries): what the snapshot policy weighs a shard's state by (engine.runtime.host)."""
        ledger = self.ledger
        return len(ledger.quants) + len(ledger.lots) + len(ledger.active) + len(ledger.resolved) + len(self._seen)

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
        if self.ledger.zeroed:
            self.ledger.forget_zeroed(now_ms - limits.out_of_stock_retention_ms, limits.out_of_stock_max)

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
        rows = [
            SliceRow(group, r[0], r[1], r[2], r[3], 0 if r[4] == _FAR_FUTURE_MS else r[4])
            for group, r in sorted(acc.items())
        ]
        if self.ledger.zeroed and not filt.narrows_quants:
            rows = self._with_zero_rows(rows, group_by, filt)
        return [r for r in rows if r.qty == 0 and r.out_of_stock_since_ms] if filt.out_of_stock_only else rows

    def _with_zero_rows(
        self, rows: list[SliceRow], group_by: tuple[Dimension, ...], filt: SliceFilter
    ) -> list[SliceRow]:
        """What ran out still answers, at qty 0 with when (issue 15 item 7): per lot when
        grouped by lot, else the pair as a whole once it has no quant left. Only in views
        grouped by the lot's own dimensions (or not at all): a lot that ran out has no
        status, owner or bin left, and a row naming none would read as one more slice."""
        if not set(group_by) <= _LOT_DIMS:
            return rows
        zeroed = self.ledger.zeroed
        if Dimension.LOT in group_by:
            for lot_id, since in zeroed.items():
                if filt.lot_id and lot_id != filt.lot_id:
                    continue
                lot = self.ledger.lots[lot_id]
                expiry = lot.effective_expiry_ms(self.opened_shelf_life_ms)
                group = tuple(
                    (
                        d.value,
                        self._dim_value(d, QuantKey(lot_id, "", "", ""), lot, expiry, 0) if d in _LOT_DIMS else "",
                    )
                    for d in group_by
                )
                rows.append(SliceRow(group, 0, 0, 0, 0, 0, since))
            return sorted(rows, key=lambda r: r.group)
        since = zeroed.get(filt.lot_id, 0) if filt.lot_id else self.ledger.out_of_stock_since_ms()
        if not rows and since:
            rows.append(SliceRow(tuple((d.value, "") for d in group_by), 0, 0, 0, 0, 0, since))
        return rows

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
        source: str = "",
        confidence: float = 0.0,
    ) -> Movement:
        business_at_ms = self._business_at_ms
        provenance = Provenance(source, confidence, business_at_ms) if source or business_at_ms else None
        # Positional, in Movement's field order (a test checks it): binding 17 keywords
        # was a visible part of a bulk load's receipt.
        m = Movement(
            self.ledger.seq + 1,  # seq
            kind,
            self.sku,
            self.site,
            lot_id,
            qty,
            src,
            dst,
            held_key,
            held_delta,
            hold_id,
            cmd.request_id if cmd else "",  # request_id
            cmd.doc_ref if cmd else "",  # doc_ref
            now_ms,  # at_ms
            lot,
            expires_at_ms,
            provenance,
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


def device_ops_missing(sku: str, site: str, op: DeviceOp, applied: int) -> FailedPrecondition:
    """A device op whose previous op on this cell never arrived (a gap between uploads):
    nothing applies and the watermark stays, so the device can upload the missing op first.
    `prev_seq` below the watermark means the device's numbering went back (a reset device)."""
    missing = op.prev_seq if op.prev_seq > applied else applied
    why = (
        f"seq {op.prev_seq} is missing: upload it before seq {op.seq}"
        if op.prev_seq > applied
        else f"seq {applied} was applied here after the device's seq {op.prev_seq}: its numbering went back"
    )
    return FailedPrecondition(
        DEVICE_OPS_MISSING,
        f"device {op.device_id!r} at {sku}@{site}: {why}",
        {
            "device_id": op.device_id,
            "missing_seq": str(missing),
            "applied_seq": str(applied),
            "seq": str(op.seq),
        },
    )


_RECEIVE = MovementKind.RECEIVE


def _depends_on_later_ops(refusal: DomainError) -> bool:
    """A refusal a later command may lift (the missing device op uploaded) is not cached
    under the request id: the retry after the gap is filled must apply."""
    return isinstance(refusal, FailedPrecondition) and refusal.reason == DEVICE_OPS_MISSING


def _removal_order(strategy: Strategy, lot: Lot, expiry: int, key: QuantKey) -> tuple[int, int, str, str]:
    """Sort key of a quant under a removal strategy; ties broken by lot then bin."""
    match strategy:
        case Strategy.FIFO:
            return (lot.received_at_ms, 0, key.lot_id, key.bin)
        case Strategy.LIFO:
            return (-lot.received_at_ms, 0, key.lot_id, key.bin)
        case _:  # FEFO, and LOT (one lot: FEFO order is as good as any)
            return (expiry or _FAR_FUTURE_MS, lot.received_at_ms, key.lot_id, key.bin)
