"""The double-entry ledger of one cell (DESIGN.md §4).

A cell's balances change only by `Ledger.apply(movement)`: the live path and the replay
path are one function, and `check_invariants` states what must hold after every step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.domain.errors import InvariantViolation
from engine.domain.model import (
    External,
    HoldPart,
    HoldState,
    Lot,
    Movement,
    MovementKind,
    Quant,
    QuantKey,
)
from engine.domain.statuses import StatusDictionary

_RESOLVING = {
    MovementKind.COMMIT,
    MovementKind.RELEASE,
    MovementKind.EXPIRE,
    MovementKind.ADJUST,
    MovementKind.CUT_HOLD,
}


@dataclass(slots=True)
class Ledger:
    quants: dict[QuantKey, Quant] = field(default_factory=dict)
    externals: dict[External, int] = field(default_factory=dict)
    lots: dict[str, Lot] = field(default_factory=dict)
    active: dict[str, HoldPart] = field(default_factory=dict)
    resolved: OrderedDict[str, HoldPart] = field(default_factory=OrderedDict)  # oldest first
    seq: int = 0  # the last movement applied; movements arrive gap-free from 1
    # Lots whose last quant went to zero, with when (oldest first): out of stock stays
    # visible (issue 15 item 7) until the cell compacts it (`forget_zeroed`).
    zeroed: OrderedDict[str, int] = field(default_factory=OrderedDict)
    # How many quants each lot has: tells in O(1) when a lot's last one goes.
    live: dict[str, int] = field(default_factory=dict)
    opened_lots: int = 0  # lots with an opened_at: none, and freshness costs the order path nothing

    def apply(self, m: Movement) -> None:
        if m.seq != self.seq + 1:
            raise InvariantViolation(f"movement seq {m.seq} after {self.seq}: a gap or a repeat")
        self.seq = m.seq
        if m.lot is not None and (m.kind is MovementKind.OPEN or m.lot.lot_id not in self.lots):
            self.lots[m.lot.lot_id] = m.lot  # an opening replaces the lot's dates (never an opened lot's)
            if m.lot.opened_at_ms:
                self.opened_lots += 1
        qty, dst = m.qty, m.dst
        if qty and m.held_key is None and type(m.src) is External and type(dst) is QuantKey:
            # A receipt's shape (an external bucket gives, one quant takes, no hold): the
            # bulk load's path, inlined. Only the quant can have reached zero (a status
            # that allows negative stock), as the general path below would find.
            externals = self.externals
            externals[m.src] = externals.get(m.src, 0) - qty
            quant = self.quants.get(dst) or self._new_quant(dst)
            quant.qty += qty
            if quant.qty == 0 and quant.held == 0:
                self._drop(dst, m.at_ms)
            return
        if qty:
            self._add(m.src, -qty)
            self._add(dst, qty)
        if m.held_key is not None and m.held_delta:
            held = self.quants.get(m.held_key) or self._new_quant(m.held_key)
            held.held += m.held_delta
            self._apply_to_hold(m)
        for key in (m.src, m.dst, m.held_key):
            if isinstance(key, QuantKey):
                left = self.quants.get(key)
                if left is not None and left.qty == 0 and left.held == 0:
                    self._drop(key, m.at_ms)

    def receive(self, m: Movement) -> None:
        """`apply` of a receipt's movement — a RECEIVE: an External gives, one QuantKey
        takes (`m.dst`), no hold, qty ≠ 0 — which its caller made so (Cell's receipt
        steps): `apply`'s receipt branch, with only the buckets' types checked."""
        if m.seq != self.seq + 1:
            raise InvariantViolation(f"movement seq {m.seq} after {self.seq}: a gap or a repeat")
        lot, src, dst, qty = m.lot, m.src, m.dst, m.qty
        if not qty or type(src) is not External or type(dst) is not QuantKey:
            raise InvariantViolation(f"movement seq {m.seq} is not a receipt's: {src!r} → {dst!r}")
        self.seq = m.seq
        if lot is not None and lot.lot_id not in self.lots:
            self.lots[lot.lot_id] = lot
            if lot.opened_at_ms:
                self.opened_lots += 1
        externals = self.externals
        externals[src] = externals.get(src, 0) - qty
        quant = self.quants.get(dst) or self._new_quant(dst)
        quant.qty += qty
        if quant.qty == 0 and quant.held == 0:
            self._drop(dst, m.at_ms)

    def _drop(self, key: QuantKey, at_ms: int) -> None:
        """An empty quant goes; its lot has one fewer (out of stock from `at_ms` if none)."""
        del self.quants[key]
        left = self.live[key.lot_id] - 1
        if left:
            self.live[key.lot_id] = left
        else:
            del self.live[key.lot_id]
            self.zeroed[key.lot_id] = at_ms

    def _new_quant(self, key: QuantKey) -> Quant:
        """A new quant: its lot has one more (and is in stock again if it had none)."""
        quant = self.quants[key] = Quant()
        lot_id = key.lot_id
        count = self.live.get(lot_id, 0)
        if not count:
            self.zeroed.pop(lot_id, None)
        self.live[lot_id] = count + 1
        return quant

    def forget_zeroed(self, older_than_ms: int, keep_at_most: int) -> None:
        """Compact out-of-stock marks past their retention (bounded memory)."""
        zeroed = self.zeroed
        while zeroed and (len(zeroed) > keep_at_most or next(iter(zeroed.values())) < older_than_ms):
            zeroed.popitem(last=False)

    def out_of_stock_since_ms(self) -> int:
        """When the pair ran out (its last quant went), or 0 while it has any quant."""
        return 0 if self.quants or not self.zeroed else max(self.zeroed.values())

    def _add(self, bucket: QuantKey | External, qty: int) -> None:
        if isinstance(bucket, QuantKey):
            quant = self.quants.get(bucket) or self._new_quant(bucket)  # inline: the hot path
            quant.qty += qty
        else:
            self.externals[bucket] = self.externals.get(bucket, 0) + qty

    def _apply_to_hold(self, m: Movement) -> None:
        key = m.held_key
        assert key is not None  # guarded by the caller; typing only
        if m.kind is MovementKind.RESERVE:
            part = self.active.get(m.hold_id)
            if part is None:
                part = HoldPart(m.hold_id, m.request_id, {}, m.at_ms, m.expires_at_ms)
                self.active[m.hold_id] = part
            part.allocations[key] = part.allocations.get(key, 0) + m.held_delta
            return
        if m.kind not in _RESOLVING:
            raise InvariantViolation(f"{m.kind} movement may not change held")
        part = self.active.get(m.hold_id)
        if part is None:
            raise InvariantViolation(f"{m.kind} of hold {m.hold_id!r}, which is not active")
        left = part.allocations.get(key, 0) + m.held_delta
        if left < 0:
            raise InvariantViolation(f"hold {m.hold_id!r} would hold {left} of {key}")
        if left:
            part.allocations[key] = left
        else:
            part.allocations.pop(key, None)
        if m.kind is MovementKind.COMMIT:
            part.committed_qty += -m.held_delta
        else:
            part.released_qty += -m.held_delta
        if not part.allocations:
            # A hold resolves once nothing is held by it; the last movement tells how.
            if part.committed_qty:
                part.state = HoldState.COMMITTED
            elif m.kind is MovementKind.EXPIRE:
                part.state = HoldState.EXPIRED
            else:
                part.state = HoldState.RELEASED
            part.resolved_at_ms = m.at_ms
            del self.active[m.hold_id]
            self.resolved[m.hold_id] = part

    def hold(self, hold_id: str) -> HoldPart | None:
        return self.active.get(hold_id) or self.resolved.get(hold_id)

    def prune_resolved(self, older_than_ms: int, keep_at_most: int) -> None:
        """Forget resolved holds past their retention (bounded memory); GetHold answers
        NOT_FOUND for them afterwards. Resolution order is time order, so pop the front."""
        resolved = self.resolved
        while resolved and (
            len(resolved) > keep_at_most or next(iter(resolved.values())).resolved_at_ms < older_than_ms
        ):
            resolved.popitem(last=False)

    def check_invariants(self, statuses: StatusDictionary) -> None:
        """Raise InvariantViolation unless every invariant of DESIGN.md §4 holds."""
        total = sum(q.qty for q in self.quants.values()) + sum(self.externals.values())
        if total != 0:
            raise InvariantViolation(f"conservation: buckets sum to {total}, not 0")
        held_by_holds: dict[QuantKey, int] = {}
        for part in self.active.values():
            if part.state is not HoldState.ACTIVE or not part.allocations:
                raise InvariantViolation(f"active hold {part.hold_id!r} is {part.state} / empty")
            for key, qty in part.allocations.items():
                if qty <= 0:
                    raise InvariantViolation(f"hold {part.hold_id!r} allocates {qty} of {key}")
                held_by_holds[key] = held_by_holds.get(key, 0) + qty
        for key, quant in self.quants.items():
            status = statuses.get(key.status)
            if status is None:
                raise InvariantViolation(f"quant {key} has an unknown status")
            if quant.qty < 0 and not status.allow_negative:
                raise InvariantViolation(f"quant {key} is negative: {quant.qty}")
            if not 0 <= quant.held <= max(quant.qty, 0):
                raise InvariantViolation(f"quant {key}: held {quant.held} outside 0..{quant.qty}")
            if quant.held != held_by_holds.get(key, 0):
                raise InvariantViolation(f"quant {key}: held {quant.held} ≠ holds' {held_by_holds.get(key, 0)}")
            if key.lot_id not in self.lots:
                raise InvariantViolation(f"quant {key} names an unknown lot")
        for key in held_by_holds:
            if key not in self.quants:
                raise InvariantViolation(f"a hold allocates {key}, which has no quant")


def replay(movements: Iterable[Movement]) -> Ledger:
    """Rebuild a ledger from zero; the result must equal the live one."""
    ledger = Ledger()
    for m in movements:
        ledger.apply(m)
    return ledger


def same_balances(a: Ledger, b: Ledger) -> bool:
    """Quants, external buckets, lots and active holds agree (resolved-hold retention may differ)."""
    return (
        a.quants == b.quants
        and {k: v for k, v in a.externals.items() if v} == {k: v for k, v in b.externals.items() if v}
        and a.lots == b.lots
        and {k: (p.allocations, p.expires_at_ms) for k, p in a.active.items()}
        == {k: (p.allocations, p.expires_at_ms) for k, p in b.active.items()}
        and a.seq == b.seq
    )
