"""A floor under each moved pair's inventory position, kept from the journal's movements, so
the replenishment trigger screens a moved pair without reading the cells (issue 12 item 10).

The trigger asks one question per moved pair: is its inventory position still above its
reorder point? The policy's position (engine.replenish.policy) is

    IP = Σ available (sellable, unexpired, not held) + arriving units due by today + L̄ + R
         + open purchase to-dos,

and a pair is triggered when IP ≤ ROP — so a LOWER bound on IP that is above the reorder point
proves the pair is not triggered, and the screen may skip it. A floor that is too low only costs
a full recompute (which reads the cells and seeds the floor again); one that is too high could
skip a pair that really crossed, so every rule here errs low:

- Seeded by one read of the cells (`begin` before it, `seed` after it). The cells are ahead of
  the journal: a movement the follower receives after the read may or may not be in it. So
  movements noted from `begin` on count their decreases always (a decrease counted twice only
  lowers the floor) and their increases only when applied clearly after the read (`at_ms` past
  the read's start by SEED_MARGIN_MS, the engines' clock skew) and delivered for the first time.
- Sellable stock stops counting when its lot expires, without a movement: a floor is valid only
  until the earliest expiry of the sellable stock it counts (`fresh_until_ms`); a pair whose read
  cannot tell it (an expired lot beside fresh ones in one sellable status row) is not floored.
- An increase of sellable stock counts only for a lot whose dates the floor saw on its receipt
  (a receipt carries the lot's dates; a lot opened since is dropped: its shelf life shortens).
- Held units: a reserve lowers the floor; a release, commit or expiry of a hold gives back only
  what that hold took after the seed (a hold that had expired by the read was not counted by it,
  and its sweep must not count it again).
- Arriving units (in transit in, receiving, QC) are counted as read, and only for a pair whose
  arrivals carry no transfer ETA (an ETA may move without a movement): any movement of arriving
  stock, an opened lot or a status the dictionary does not know drops the floor (read again).
- Open to-dos come from the stored suggestion, as on the read path.

The statuses are the cells' own dictionary (the trigger is given it). What the floor does not
follow: a sku's opened shelf life changed in the catalogue while lots are open (their effective
expiry moves without a movement); the scheduled full recompute reads every pair and seeds its floor
again. Bounded: MAX_FLOORS pairs, MAX_HOLDS_PER_PAIR holds each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.model import Movement, MovementKind, QuantKey
from engine.domain.statuses import DEFAULT_DICTIONARY, Role, StatusDictionary

Pair = tuple[str, str]

SEED_MARGIN_MS = 2_000  # a movement applied this long after a read's start is surely not in it
MAX_FLOORS = 100_000  # pairs with a floor, at most (past this: they start again empty)
MAX_HOLDS_PER_PAIR = 1_000  # holds followed per pair; past this, the pair's floor is dropped
NEVER_MS = 2**62  # no sellable lot counted expires


@dataclass(frozen=True, slots=True)
class Floored:
    """A pair's floored position: what the screen takes as its stock position."""

    available: int  # ≤ Σ available in the cells (sellable, unexpired, not held)
    in_transit: int  # arriving units as read (no transfer ETA among them)


@dataclass(slots=True)
class _Floor:
    token: int  # the read that seeds it (a later `begin` replaces it)
    begun_ms: int  # when that read started (engine time)
    seeded: bool = False
    available: int = 0  # the read's, then moved by the movements noted
    in_transit: int = 0
    fresh_until_ms: int = NEVER_MS  # the floor counts no sellable unit past this
    lots: dict[str, int] = field(default_factory=dict)  # lot → expiry (0: never), of receipts seen
    holds: dict[str, int] = field(default_factory=dict)  # hold → units it took after the read


class PositionFloors:
    """Per pair, a floor under its inventory position (see the module's docstring)."""

    def __init__(self, statuses: StatusDictionary = DEFAULT_DICTIONARY) -> None:
        self._floors: dict[Pair, _Floor] = {}
        self._tokens = 0
        self._sellable = statuses.sellable_names()
        self._known = frozenset(statuses.statuses)
        self._arriving = frozenset(statuses.role(r) for r in (Role.ARRIVING, Role.RECEIPT, Role.INSPECTION))

    def __len__(self) -> int:
        return len(self._floors)

    def begin(self, pair: Pair, now_ms: int) -> int:
        """A read of the pair's position starts now: movements from here on are noted. Returns
        the token `seed` takes (a later `begin` of the same pair makes this one void)."""
        if pair not in self._floors and len(self._floors) >= MAX_FLOORS:
            self._floors.clear()
        self._tokens += 1
        self._floors[pair] = _Floor(self._tokens, now_ms)
        return self._tokens

    def seed(self, pair: Pair, token: int, available: int, in_transit: int, fresh_until_ms: int) -> None:
        """The read begun with `token` answered: the floor is its numbers moved by what was
        noted since. `fresh_until_ms` ≤ the read's start: not floored (an expired lot counted)."""
        floor = self._floors.get(pair)
        if floor is None or floor.token != token or floor.seeded:
            return
        if fresh_until_ms <= floor.begun_ms:
            del self._floors[pair]
            return
        floor.seeded = True
        floor.available += available
        floor.in_transit += in_transit
        floor.fresh_until_ms = min(floor.fresh_until_ms, fresh_until_ms)

    def drop(self, pair: Pair) -> None:
        self._floors.pop(pair, None)

    def position(self, pair: Pair, now_ms: int) -> Floored | None:
        """The pair's floored position, or None (not seeded, or a counted lot may have expired)."""
        floor = self._floors.get(pair)
        if floor is None or not floor.seeded:
            return None
        if now_ms >= floor.fresh_until_ms:
            del self._floors[pair]
            return None
        # Decreases are counted even when the read may already hold them (see above), so the
        # floor can fall below zero while the cells never do: 0 is still a floor, and the
        # position a screen is given must be a valid one (on hand ≥ 0).
        return Floored(max(floor.available, 0), max(floor.in_transit, 0))

    def note(self, m: Movement, fresh: bool) -> None:
        """One journal movement of a pair (in journal order); `fresh`: delivered for the first time."""
        pair = (m.sku, m.site)
        floor = self._floors.get(pair)
        if floor is None:
            return
        if not self._follows(m) or len(floor.holds) >= MAX_HOLDS_PER_PAIR:
            del self._floors[pair]  # read again at the next look
            return
        after = fresh and m.at_ms > floor.begun_ms + SEED_MARGIN_MS  # surely not in the read
        if m.lot is not None and after:
            floor.lots[m.lot.lot_id] = m.lot.expires_at_ms if not m.lot.opened_at_ms else -1
        if isinstance(m.src, QuantKey) and m.src.status in self._sellable:
            floor.available -= m.qty
        if isinstance(m.dst, QuantKey) and m.dst.status in self._sellable and after and m.qty > 0:
            self._add_sellable(floor, m.dst.lot_id, m.qty, m.at_ms)
        if m.held_key is not None and m.held_key.status in self._sellable and m.held_delta:
            self._held(floor, m, after)

    def _follows(self, m: Movement) -> bool:
        """Whether the floor can follow this movement (else it is dropped and read again)."""
        if m.kind is MovementKind.OPEN:
            return False
        for bucket in (m.src, m.dst, m.held_key):
            if isinstance(bucket, QuantKey) and (bucket.status in self._arriving or bucket.status not in self._known):
                return False
        return True

    @staticmethod
    def _add_sellable(floor: _Floor, lot_id: str, qty: int, at_ms: int) -> None:
        expiry = floor.lots.get(lot_id)
        if expiry is None or expiry < 0 or (expiry and expiry <= at_ms):
            return  # a lot whose dates the floor did not see, opened, or expired: not counted
        floor.available += qty
        if expiry:
            floor.fresh_until_ms = min(floor.fresh_until_ms, expiry)

    @staticmethod
    def _held(floor: _Floor, m: Movement, after: bool) -> None:
        if m.held_delta > 0:
            floor.available -= m.held_delta
            if after and m.hold_id:
                floor.holds[m.hold_id] = floor.holds.get(m.hold_id, 0) + m.held_delta
            return
        took = floor.holds.get(m.hold_id, 0)
        back = min(-m.held_delta, took)
        if back > 0:
            floor.available += back
            if took > back:
                floor.holds[m.hold_id] = took - back
            else:
                del floor.holds[m.hold_id]
