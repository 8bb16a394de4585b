"""Random command sequences against one cell; after every step all of DESIGN.md §4 holds.

The machine drives receive / reserve / commit (full and partial) / release / consume /
adjust / move / change-status / one-call sale / count (of a quant and of a whole bin) /
lot opening / lot expiry / scrapping of over-age opened lots (receipts from every source, consumption to every
destination and from a named status, commands with and without a financial context)
with clock jumps (often past hold TTLs and lot expiries), sweeps, retries of earlier
request ids (same payload and another payload) and invalid commands. It keeps its own
model, built only from what it sent and the movements it drained: the first answer of
every request id, each hold's allocations, and the lots' dates. After every step the
invariants below compare the live cell with that model and with a replay of every
movement ever drained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.domain.cell import Cell, CellLimits, Dimension, SliceFilter
from engine.domain.clock import ManualClock
from engine.domain.commands import (
    CONSUME_DESTINATIONS,
    DEVICE_OPS_MISSING,
    NO_PREV_SEQ,
    RECEIVE_SOURCES,
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
    CountSource,
    DeviceOp,
    DeviceOpDone,
    ExpireLots,
    FreezeStock,
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
    SaleLine,
    ScrapOverAge,
    Scrapped,
    Sell,
    StatusChanged,
    StockFrozen,
    Strategy,
    sale_parts,
    same_payload,
)
from engine.domain.errors import (
    DomainError,
    FailedPrecondition,
    InsufficientStock,
    InvalidArgument,
    NotFound,
    RequestConflict,
)
from engine.domain.freshness import FRESHNESS_EXPIRED
from engine.domain.ledger import replay, same_balances
from engine.domain.model import External, Finance, HoldState, HoldView, Movement, MovementKind, QuantKey
from engine.domain.receipts import ReceiptColumns
from engine.domain.statuses import DEFAULT_DICTIONARY, Role
from engine.runtime.gateway.bulk import ReceiptChecks
from tests.unit.conftest import DAY_MS, HOUR_MS, SITE, SKU, T0_MS, ledger_state

STATUSES = DEFAULT_DICTIONARY
OPENED_SHELF_LIFE_MS = 2 * DAY_MS
LIMITS = CellLimits(
    dedupe_window_ms=15 * 60_000,  # the default age bound: clock jumps cross it both ways
    dedupe_max_entries=1_000_000,  # never reached here; the count bound has its own unit test
    resolved_hold_retention_ms=3_650 * DAY_MS,  # resolved holds stay visible, so "resolved once" is checkable
    resolved_hold_max=1_000_000,
)


@dataclass(frozen=True)
class LotSpec:
    lot_id: str
    expires_at_ms: int
    opened_at_ms: int = 0

    @property
    def effective_expiry_ms(self) -> int:
        """min(expires_at, opened_at + opened shelf life), 0 = never (DESIGN.md §2)."""
        dates = [d for d in (self.expires_at_ms, self.opened_at_ms and self.opened_at_ms + OPENED_SHELF_LIFE_MS) if d]
        return min(dates) if dates else 0


LOTS = (
    LotSpec("L-6h", T0_MS + 6 * HOUR_MS),
    LotSpec("L-3d", T0_MS + 3 * DAY_MS),
    LotSpec("L-40d", T0_MS + 40 * DAY_MS),
    LotSpec("L-none", 0),
    LotSpec("L-open", T0_MS + 30 * DAY_MS, opened_at_ms=T0_MS - DAY_MS),  # effectively T0 + 1 day
)
LOT_BY_ID = {lot.lot_id: lot for lot in LOTS}
LOT_IDS = tuple(LOT_BY_ID)
BINS = ("", "A/01", "A/01/P1", "B/02")
OWNERS = ("own", "consignment:acme", "consignment:zed", "custody:clinic")
OWNER_FILTERS = ("", "own", "consignment", "consignment:acme", "custody")
BIN_PREFIXES = ("", "A/01", "B")
ALL_STATUSES = tuple(sorted(STATUSES.statuses))
RECEIVABLE = tuple(sorted(s.name for s in STATUSES.statuses.values() if s.receivable))
ON_HAND = tuple(sorted(s.name for s in STATUSES.statuses.values() if s.on_hand))
TTLS_MS = (1_000, 600_000, 3_600_000)
FAR_MS = 2**62

lots = st.sampled_from(LOTS)
bins = st.sampled_from(BINS)
source_bins = st.one_of(st.just(""), st.sampled_from(BINS))  # where receive_sellable puts stock
owners = st.one_of(st.just("own"), st.sampled_from(OWNERS))
qtys = st.integers(1, 12)
# Half the time the sellable status, so holds and consumption find stock.
receivable_statuses = st.one_of(st.just("available"), st.sampled_from(RECEIVABLE))
any_statuses = st.one_of(st.just("available"), st.sampled_from(ALL_STATUSES))
sometimes = st.sampled_from((False, False, False, True))
# Valid financial contexts (None most often): they must change no balance and no answer.
finances = st.one_of(
    st.none(),
    st.none(),
    st.builds(
        Finance,
        currency=st.sampled_from(["EUR", "USD"]),
        unit_cost=st.sampled_from(["", "0", "12.50", "0.000001"]),
        unit_price=st.sampled_from(["", "19.99"]),
        tax_rate=st.sampled_from(["", "0", "0.20", "1"]),
        terms=st.sampled_from(["", "n/30", "2/10 n/30", "2.5/15 net 45"]),
    ),
)
bad_finances = st.sampled_from(
    [
        Finance(currency="eur"),
        Finance(unit_cost="12.50"),  # an amount without a currency
        Finance(currency="EUR", unit_price="-1"),
        Finance(currency="EUR", unit_cost="1e3"),
        Finance(tax_rate="1.5"),
        Finance(terms="2/30 n/30"),
    ]
)
clock_jumps = st.one_of(
    st.integers(1, 5_000),
    st.sampled_from([ttl + 1 for ttl in TTLS_MS]),
    st.integers(HOUR_MS, 2 * DAY_MS),
)


def mostly(default: object, others: tuple[object, ...]) -> st.SearchStrategy[object]:
    """`default` about two times in three, else any of `others`: constraints that bite
    sometimes, so that most holds still find stock."""
    return st.one_of(st.just(default), st.just(default), st.sampled_from(others))


@st.composite
def reserve_lines(draw: st.DrawFn) -> ReserveLine:
    strategy = draw(st.sampled_from(list(Strategy)))
    lot_id = draw(st.sampled_from(LOT_IDS) if strategy is Strategy.LOT else mostly("", LOT_IDS))
    return ReserveLine(
        qty=draw(st.integers(1, 8)),
        strategy=strategy,
        lot_id=str(lot_id),
        owner=str(draw(mostly("", OWNER_FILTERS))),
        min_shelf_life_days=float(draw(mostly(0.0, (1.0, 5.0)))),  # type: ignore[arg-type]
        bin_prefix=str(draw(mostly("", BIN_PREFIXES))),
    )


@dataclass(frozen=True)
class FirstAnswer:
    command: Command
    at_ms: int
    answer: Reply | DomainError


@dataclass
class HoldModel:
    """One hold as its movements tell it."""

    request_id: str
    expires_at_ms: int
    allocations: dict[QuantKey, int] = field(default_factory=dict)
    reserved: int = 0
    committed: int = 0
    released: int = 0
    state: HoldState = HoldState.ACTIVE

    @property
    def held(self) -> int:
        return sum(self.allocations.values())


def owner_ok(owner: str, owner_filter: str) -> bool:
    return owner_filter in ("", owner) or owner.startswith(owner_filter + ":")


def bin_ok(bin_: str, prefix: str) -> bool:
    return prefix in ("", bin_) or bin_.startswith(prefix + "/")


def alloc_keys(hold: HoldView) -> list[tuple[QuantKey, int]]:
    return [(QuantKey(a.lot_id, a.bin, a.status, a.owner), a.qty) for a in hold.allocations]


class CellMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0_MS)
        self.cell = Cell(SKU, SITE, STATUSES, OPENED_SHELF_LIFE_MS, LIMITS)
        self.journal: list[Movement] = []  # every movement ever drained, in order
        self.answers: dict[str, FirstAnswer] = {}
        self.invalid_ids: list[str] = []
        self.holds: dict[str, HoldModel] = {}
        self.received_at: dict[str, int] = {}  # lot → engine time of its first receipt
        self.opened_at: dict[str, int] = {}  # lot → when it was opened, as its movements tell
        self.counter = 0

    # ---------------------------------------------------------------- model helpers

    @property
    def now_ms(self) -> int:
        return self.clock.now_ms()

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def remembered(self, request_id: str) -> FirstAnswer | None:
        first = self.answers.get(request_id)
        if first is None or self.now_ms - first.at_ms > LIMITS.dedupe_window_ms:
            return None
        return first

    def due_holds(self) -> set[str]:
        return {h for h, m in self.holds.items() if m.state is HoldState.ACTIVE and m.expires_at_ms <= self.now_ms}

    def due_allocations(self) -> dict[QuantKey, int]:
        out: dict[QuantKey, int] = {}
        for hold_id in self.due_holds():
            for k, q in self.holds[hold_id].allocations.items():
                out[k] = out.get(k, 0) + q
        return out

    def qty(self, k: QuantKey) -> int:
        quant = self.cell.ledger.quants.get(k)
        return quant.qty if quant else 0

    def effective_held(self, k: QuantKey) -> int:
        """Held by holds that are not past their TTL (expired holds stop counting at once)."""
        quant = self.cell.ledger.quants.get(k)
        return (quant.held if quant else 0) - self.due_allocations().get(k, 0)

    def expiry(self, lot_id: str) -> int:
        """The lot's effective expiry as the movements tell its dates (an opening changes it)."""
        opened = self.opened_at.get(lot_id, 0)
        dates = [d for d in (LOT_BY_ID[lot_id].expires_at_ms, opened and opened + OPENED_SHELF_LIFE_MS) if d]
        return min(dates) if dates else 0

    def fresh(self, lot_id: str) -> bool:
        expiry = self.expiry(lot_id)
        return expiry == 0 or expiry > self.now_ms

    def over_age(self, lot_id: str) -> bool:
        opened = self.opened_at.get(lot_id, 0)
        return bool(opened) and opened + OPENED_SHELF_LIFE_MS <= self.now_ms

    def stale(self, line: ReserveLine, status: str = "") -> dict[QuantKey, int]:
        """Free qty the line could take but for the opened age of its lot (FRESHNESS_EXPIRED)."""
        everything = self.candidates(line, for_consume=True, status=status)
        return {k: q for k, q in everything.items() if self.over_age(k.lot_id)}

    def rank(self, strategy: Strategy, k: QuantKey) -> tuple[int, int, str, str]:
        received = self.received_at[k.lot_id]
        if strategy is Strategy.FIFO:
            return (received, 0, k.lot_id, k.bin)
        if strategy is Strategy.LIFO:
            return (-received, 0, k.lot_id, k.bin)
        return (self.expiry(k.lot_id) or FAR_MS, received, k.lot_id, k.bin)

    def candidates(self, line: ReserveLine, *, for_consume: bool = False, status: str = "") -> dict[QuantKey, int]:
        """Free qty a line may take, per quant, as the spec says (after the due sweep): from
        sellable quants, or (a consume that names a status) from quants in exactly that one."""
        out: dict[QuantKey, int] = {}
        for k, quant in self.cell.ledger.quants.items():
            if k.status != status if status else not STATUSES.statuses[k.status].sellable:
                continue
            if (line.lot_id and k.lot_id != line.lot_id) or not owner_ok(k.owner, line.owner):
                continue
            if not bin_ok(k.bin, line.bin_prefix):
                continue
            expiry = self.expiry(k.lot_id)
            if not for_consume:
                if not self.fresh(k.lot_id):
                    continue
                if expiry and line.min_shelf_life_days and (expiry - self.now_ms) / DAY_MS < line.min_shelf_life_days:
                    continue
            free = quant.qty - self.effective_held(k)
            if free > 0:
                out[k] = free
        return out

    def check_greedy(self, strategy: Strategy, picks: list[tuple[QuantKey, int]], cands: dict[QuantKey, int]) -> None:
        """Picks are in removal order and take whole quants before the last one touched."""
        assert len({k for k, _ in picks}) == len(picks)
        for k, q in picks:
            assert k in cands, f"{k} was not a candidate"
            assert 0 < q <= cands[k]
        ranks = [self.rank(strategy, k) for k, _ in picks]
        assert ranks == sorted(ranks), f"{strategy} picks out of removal order: {picks}"
        taken = dict(picks)
        for k, free in cands.items():
            if ranks and self.rank(strategy, k) < ranks[-1]:
                assert taken.get(k, 0) == free, f"{strategy} skipped free stock in {k}"
        assert sum(1 for k, q in picks if q < cands[k]) <= 1

    def record(self, movements: list[Movement]) -> None:
        """Append drained movements to the journal and follow the holds they change."""
        for m in movements:
            self.journal.append(m)
            if m.kind in (MovementKind.RECEIVE, MovementKind.COUNT) and m.lot is not None:
                assert m.lot.lot_id not in self.received_at, "a lot's dates were sent twice"
                self.received_at[m.lot.lot_id] = m.lot.received_at_ms
                if m.lot.opened_at_ms:
                    self.opened_at[m.lot.lot_id] = m.lot.opened_at_ms
            if m.kind is MovementKind.OPEN:
                assert m.lot is not None
                assert m.lot.lot_id not in self.opened_at, "a lot was opened twice"
                assert (m.qty, m.src) == (0, m.dst)
                self.opened_at[m.lot.lot_id] = m.lot.opened_at_ms
            if not m.hold_id:
                assert (m.held_key, m.held_delta) == (None, 0)
                continue
            assert m.held_key is not None
            hold = self.holds.get(m.hold_id)
            if m.kind is MovementKind.RESERVE:
                if hold is None:
                    hold = self.holds[m.hold_id] = HoldModel(m.request_id, m.expires_at_ms)
                assert hold.state is HoldState.ACTIVE, f"resolved hold {m.hold_id} came back to active"
                assert (hold.request_id, hold.expires_at_ms) == (m.request_id, m.expires_at_ms)
                assert m.held_delta > 0
                hold.allocations[m.held_key] = hold.allocations.get(m.held_key, 0) + m.held_delta
                hold.reserved += m.held_delta
                continue
            assert hold is not None, f"{m.kind} of unknown hold {m.hold_id}"
            assert hold.state is HoldState.ACTIVE, f"hold {m.hold_id} resolved twice"
            assert m.held_delta < 0
            left = hold.allocations.get(m.held_key, 0) + m.held_delta
            assert left >= 0, f"hold {m.hold_id} gave back more than it held"
            if left:
                hold.allocations[m.held_key] = left
            else:
                del hold.allocations[m.held_key]
            if m.kind is MovementKind.COMMIT:
                assert (m.qty, m.src, m.dst) == (-m.held_delta, m.held_key, External.CUSTOMER)
                hold.committed -= m.held_delta
            else:
                assert m.kind in (MovementKind.RELEASE, MovementKind.EXPIRE, MovementKind.ADJUST, MovementKind.CUT_HOLD)
                assert (m.qty, m.src, m.dst) == (0, m.held_key, m.held_key)
                hold.released -= m.held_delta
            if not hold.allocations:
                if hold.committed:
                    hold.state = HoldState.COMMITTED
                elif m.kind is MovementKind.EXPIRE:
                    hold.state = HoldState.EXPIRED
                else:
                    hold.state = HoldState.RELEASED

    def run(self, cmd: Command, bulk: bool = False) -> tuple[Reply | DomainError, list[Movement]]:
        """Send one command; check the idempotency and refusal rules; return the answer and
        the command's own movements (without the EXPIRE sweep that runs before it).
        `bulk`: a receipt the way a bulk load applies it (`bulk_answer`)."""
        first = self.remembered(cmd.request_id)
        due = self.due_holds()
        before = ledger_state(self.cell.ledger)
        answer: Reply | DomainError
        if bulk and isinstance(cmd, Receive):
            answer = self.bulk_answer(cmd)
        else:
            try:
                answer = self.cell.handle(cmd, self.now_ms)
            except DomainError as err:
                answer = err
        movements = self.cell.drain()
        self.record(movements)
        # Shown by `pytest --hypothesis-show-statistics`: which outcomes the runs reached.
        event(f"{type(cmd).__name__}{' (bulk)' if bulk else ''} → {type(answer).__name__}{' (retry)' if first else ''}")
        if first is not None:
            assert movements == [], "a retried request id emitted movements"
            assert ledger_state(self.cell.ledger) == before, "a retried request id changed the ledger"
            if same_payload(first.command, cmd):
                assert answer == first.answer, "a retry did not get the first answer"
            else:
                assert isinstance(answer, RequestConflict), f"reused request id answered {answer!r}"
                assert (answer.request_id, answer.what) == (cmd.request_id, "request id")
            return answer, []
        if isinstance(answer, InvalidArgument):
            assert movements == [], "an invalid command emitted movements"
            assert ledger_state(self.cell.ledger) == before
            return answer, []
        swept = [m for m in movements if m.kind is MovementKind.EXPIRE]
        own = movements[len(swept) :]
        assert {m.hold_id for m in swept} == due, "the sweep before a command must take exactly the due holds"
        assert all(m.kind is not MovementKind.EXPIRE for m in own)
        assert all(m.request_id == cmd.request_id for m in own)
        if isinstance(answer, DomainError):
            assert own == [], f"refusal {answer!r} emitted {own}"
        if not (isinstance(answer, FailedPrecondition) and answer.reason == DEVICE_OPS_MISSING):
            # A gap refusal is not remembered: the op applies once the missing one came.
            self.answers[cmd.request_id] = FirstAnswer(cmd, self.now_ms, answer)
        return answer, own

    def bulk_answer(self, cmd: Receive) -> Reply | DomainError:
        """A bulk load's receipt: the gateway's checks refuse it before any shard call
        (engine.runtime.gateway.bulk), or the shard hands it to the cell unchecked
        (ShardCore._receive_bulk → Cell.handle_checked)."""
        refusal = ReceiptChecks(STATUSES).check_columns(ReceiptColumns.of([cmd])).get(0)
        if refusal is not None:
            return refusal
        try:
            return self.cell.handle_checked(cmd, self.now_ms)
        except DomainError as err:
            return err

    # ---------------------------------------------------------------- rules: commands

    @initialize()
    def some_sellable_stock(self) -> None:
        for lot_id, qty, bin_, owner in (
            ("L-40d", 20, "", "own"),
            ("L-none", 15, "A/01", "consignment:acme"),
            ("L-3d", 10, "A/01/P1", "own"),
        ):
            lot = LOT_BY_ID[lot_id]
            cmd = Receive(self.new_id("R"), SKU, SITE, lot_id, qty, bin_, "available", owner, lot.expires_at_ms)
            assert self.run(cmd)[0] == Received(lot_id, qty)

    @rule(lot=lots, qty=st.integers(1, 20), bulk=sometimes)
    def receive_sellable(self, lot: LotSpec, qty: int, bulk: bool) -> None:
        cmd = Receive(
            self.new_id("R"), SKU, SITE, lot.lot_id, qty, "", "available", "own", lot.expires_at_ms, 0, lot.opened_at_ms
        )
        assert self.run(cmd, bulk)[0] == Received(lot.lot_id, qty)

    @rule(
        lot=lots,
        bin_=bins,
        status=receivable_statuses,
        owner=owners,
        qty=qtys,
        wrong_dates=sometimes,
        source=st.sampled_from(RECEIVE_SOURCES),
        finance=finances,
        bulk=sometimes,
    )
    def receive(
        self,
        lot: LotSpec,
        bin_: str,
        status: str,
        owner: str,
        qty: int,
        wrong_dates: bool,
        source: External,
        finance: Finance | None,
        bulk: bool,
    ) -> None:
        known = lot.lot_id in self.received_at
        conflict = wrong_dates and known
        expires = lot.expires_at_ms + DAY_MS if conflict else lot.expires_at_ms
        cmd = Receive(
            self.new_id("R"),
            SKU,
            SITE,
            lot.lot_id,
            qty,
            bin_,
            status,
            owner,
            expires,
            0,
            lot.opened_at_ms,
            source=source,
            finance=finance,
        )
        k = QuantKey(lot.lot_id, bin_, status, owner)
        before = self.qty(k)
        answer, own = self.run(cmd, bulk)
        if conflict:
            assert isinstance(answer, FailedPrecondition)
            assert answer.reason == "LOT_DATES_CONFLICT"
        else:
            assert answer == Received(lot.lot_id, qty)
            assert [(m.kind, m.src, m.dst, m.qty) for m in own] == [(MovementKind.RECEIVE, source, k, qty)]
            assert self.qty(k) == before + qty

    @rule(
        data=st.data(),
        lines=st.lists(reserve_lines(), min_size=1, max_size=3),
        ttl_ms=st.sampled_from(TTLS_MS),
        reuse_hold_id=sometimes,
        finance=finances,
    )
    def reserve(
        self, data: st.DataObject, lines: list[ReserveLine], ttl_ms: int, reuse_hold_id: bool, finance: Finance | None
    ) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.holds))) if reuse_hold_id and self.holds else self.new_id("H")
        self._reserve(hold_id, lines, ttl_ms, finance)

    @rule(qty=st.integers(1, 5), strategy=st.sampled_from(list(Strategy)), lot=lots, ttl_ms=st.sampled_from(TTLS_MS))
    def reserve_one_line(self, qty: int, strategy: Strategy, lot: LotSpec, ttl_ms: int) -> None:
        lot_id = lot.lot_id if strategy is Strategy.LOT else ""
        self._reserve(self.new_id("H"), [ReserveLine(qty, strategy, lot_id)], ttl_ms)

    def _reserve(self, hold_id: str, lines: list[ReserveLine], ttl_ms: int, finance: Finance | None = None) -> None:
        conflict = hold_id in self.holds
        cands = self.candidates(lines[0])
        stale = self.stale(lines[0])
        answer, own = self.run(Reserve(self.new_id("R"), SKU, SITE, hold_id, tuple(lines), ttl_ms, finance=finance))
        total = sum(line.qty for line in lines)
        if conflict:
            assert isinstance(answer, RequestConflict)
            assert (answer.request_id, answer.what) == (hold_id, "hold id")
            return
        if len(lines) == 1:
            assert isinstance(answer, Reserved) == (sum(cands.values()) >= total), (answer, cands)
        if isinstance(answer, Reserved):
            hold = answer.hold
            assert (hold.hold_id, hold.state, hold.held_qty) == (hold_id, HoldState.ACTIVE, total)
            assert hold.expires_at_ms == self.now_ms + ttl_ms
            assert {m.kind for m in own} == {MovementKind.RESERVE}
            assert sum(m.held_delta for m in own) == total
            if len(lines) == 1:
                self.check_greedy(lines[0].strategy, alloc_keys(hold), cands)
        elif isinstance(answer, FailedPrecondition) and answer.reason == FRESHNESS_EXPIRED:
            assert len(lines) > 1 or stale, answer  # only over-age opened stock could serve
            assert hold_id not in self.holds
        else:
            assert isinstance(answer, InsufficientStock), answer
            assert len(lines) > 1 or not stale, (answer, stale)
            assert answer.requested in {line.qty for line in lines}
            assert 0 <= answer.available < answer.requested
            if len(lines) == 1:
                assert answer.available == sum(cands.values())
            assert hold_id not in self.holds

    def _hold_to_resolve(self, data: st.DataObject) -> tuple[str, HoldModel, HoldState, bool]:
        """Mostly an active hold (so commits and releases succeed), sometimes any hold."""
        every = sorted(self.holds)
        active = [h for h in every if self.holds[h].state is HoldState.ACTIVE]
        hold_id = data.draw(
            st.sampled_from(active) if active and data.draw(st.integers(0, 3)) else st.sampled_from(every)
        )
        hold = self.holds[hold_id]
        return hold_id, hold, hold.state, hold_id in self.due_holds()

    def _expect_not_active(self, answer: Reply | DomainError, state: HoldState, due: bool) -> bool:
        """True (and checked) when the hold can no longer be committed or released."""
        if due or state is HoldState.EXPIRED:
            assert isinstance(answer, FailedPrecondition)
            assert answer.reason == "HOLD_EXPIRED"
            return True
        if state is not HoldState.ACTIVE:
            assert isinstance(answer, FailedPrecondition)
            assert answer.reason == "HOLD_NOT_ACTIVE"
            return True
        return False

    def live_holds(self) -> list[str]:
        due = self.due_holds()
        return sorted(h for h, m in self.holds.items() if m.state is HoldState.ACTIVE and h not in due)

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), qty=st.one_of(st.none(), st.integers(0, 10)), finance=finances)
    def commit(self, data: st.DataObject, qty: int | None, finance: Finance | None) -> None:
        self._commit(*self._hold_to_resolve(data), qty, finance)

    @precondition(lambda self: self.live_holds())
    @rule(data=st.data(), partial=st.booleans())
    def commit_a_live_hold(self, data: st.DataObject, partial: bool) -> None:
        hold_id = data.draw(st.sampled_from(self.live_holds()))
        hold = self.holds[hold_id]
        qty = data.draw(st.integers(0, hold.held)) if partial else None
        self._commit(hold_id, hold, HoldState.ACTIVE, False, qty)

    def _commit(
        self,
        hold_id: str,
        hold: HoldModel,
        state: HoldState,
        due: bool,
        qty: int | None,
        finance: Finance | None = None,
    ) -> None:
        held = hold.held
        answer, own = self.run(Commit(self.new_id("R"), SKU, SITE, hold_id, qty, finance=finance))
        if self._expect_not_active(answer, state, due):
            return
        if qty is not None and qty > held:
            assert isinstance(answer, FailedPrecondition)
            assert answer.reason == "COMMIT_EXCEEDS_HOLD"
            return
        to_commit = held if qty is None else qty
        assert isinstance(answer, Committed), answer
        assert (answer.committed_qty, answer.released_qty) == (to_commit, held - to_commit)
        assert {m.hold_id for m in own} == {hold_id}
        assert sum(m.qty for m in own if m.kind is MovementKind.COMMIT) == to_commit
        assert sum(-m.held_delta for m in own if m.kind is MovementKind.RELEASE) == held - to_commit
        resolved = HoldState.COMMITTED if to_commit else HoldState.RELEASED
        assert hold.state is resolved
        assert answer.hold.state is resolved

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), finance=finances)
    def release(self, data: st.DataObject, finance: Finance | None) -> None:
        hold_id, hold, state, due = self._hold_to_resolve(data)
        held = hold.held
        answer, own = self.run(Release(self.new_id("R"), SKU, SITE, hold_id, finance=finance))
        if self._expect_not_active(answer, state, due):
            return
        assert isinstance(answer, Released), answer
        assert answer.released_qty == held
        assert {m.kind for m in own} == {MovementKind.RELEASE}
        assert hold.state is HoldState.RELEASED
        assert answer.hold.state is HoldState.RELEASED

    @rule(lines=st.lists(reserve_lines(), min_size=1, max_size=3), finance=finances)
    def sell(self, lines: list[ReserveLine], finance: Finance | None) -> None:
        """A one-call sale at this cell: its Reserve and its Commit, back to back (as the
        gateway's fast path sends them); all of it is sold, or nothing is held."""
        sale_id = self.new_id("S")
        sale = Sell(sale_id, tuple(SaleLine(SKU, SITE, line) for line in lines), f"receipt-{sale_id}", finance)
        (part,) = sale_parts(sale)
        total = sum(line.qty for line in lines)
        cands = self.candidates(lines[0])
        stale = self.stale(lines[0])
        reserved, _ = self.run(part.reserve)
        committed, own = self.run(part.commit)
        if len(lines) == 1:
            assert isinstance(reserved, Reserved) == (sum(cands.values()) >= total), (reserved, cands)
        if not isinstance(reserved, Reserved):
            if isinstance(reserved, FailedPrecondition) and reserved.reason == FRESHNESS_EXPIRED:
                assert len(lines) > 1 or stale, reserved
            else:
                assert isinstance(reserved, InsufficientStock), reserved
                assert len(lines) > 1 or not stale, (reserved, stale)
            assert isinstance(committed, NotFound), committed
            assert part.reserve.hold_id not in self.holds  # nothing held
            return
        assert isinstance(committed, Committed), committed
        assert (committed.committed_qty, committed.released_qty) == (total, 0)
        assert self.holds[part.reserve.hold_id].state is HoldState.COMMITTED  # no hold left open
        assert {m.kind for m in own} == {MovementKind.COMMIT}
        assert all(m.doc_ref == sale.doc_ref and m.dst is External.CUSTOMER for m in own)

    @rule(
        qty=st.integers(1, 15),
        strategy=st.sampled_from(list(Strategy)),
        lot=lots,
        use_lot=st.booleans(),
        owner_filter=st.sampled_from(OWNER_FILTERS),
        bin_prefix=st.sampled_from(BIN_PREFIXES),
        destination=st.sampled_from(CONSUME_DESTINATIONS),
        status=mostly("", ON_HAND),
        finance=finances,
    )
    def consume(
        self,
        qty: int,
        strategy: Strategy,
        lot: LotSpec,
        use_lot: bool,
        owner_filter: str,
        bin_prefix: str,
        destination: External,
        status: str,
        finance: Finance | None,
    ) -> None:
        lot_id = lot.lot_id if use_lot or strategy is Strategy.LOT else ""
        line = ReserveLine(qty, strategy, lot_id, owner_filter, 0.0, bin_prefix)
        cands = self.candidates(line, for_consume=True, status=status)
        stale = {} if destination is External.SCRAP else {k: q for k, q in cands.items() if self.over_age(k.lot_id)}
        cands = {k: q for k, q in cands.items() if k not in stale}  # skipped while fresh stock serves
        cmd = Consume(
            self.new_id("R"),
            SKU,
            SITE,
            qty,
            lot_id,
            bin_prefix,
            owner_filter,
            strategy,
            destination=destination,
            status=status,
            finance=finance,
        )
        answer, own = self.run(cmd)
        if stale and sum(cands.values()) < qty:  # only over-age opened stock could serve: refused
            assert isinstance(answer, FailedPrecondition), answer
            assert answer.reason == FRESHNESS_EXPIRED
            return
        assert isinstance(answer, Consumed), answer
        consumed = min(qty, sum(cands.values()))
        assert (answer.consumed_qty, answer.shortfall_qty) == (consumed, qty - consumed)
        picks = [(QuantKey(a.lot_id, a.bin, a.status, a.owner), a.qty) for a in answer.allocations]
        assert picks == [(m.src, m.qty) for m in own if m.kind is MovementKind.CONSUME]
        assert {m.dst for m in own} <= {destination}
        assert all(k.status == status for k, _ in picks) if status else True
        self.check_greedy(strategy, picks, cands)
        shortfall = [(m.src, m.dst, m.qty) for m in own if m.kind is MovementKind.DISCREPANCY]
        expected = [(External.COUNT_VARIANCE, destination, qty - consumed)] if qty > consumed else []
        assert shortfall == expected

    @rule(lot=lots, bin_=bins, status=any_statuses, owner=owners, counted=st.integers(0, 15), finance=finances)
    def adjust(
        self, lot: LotSpec, bin_: str, status: str, owner: str, counted: int, finance: Finance | None = None
    ) -> None:
        k = QuantKey(lot.lot_id, bin_, status, owner)
        known = lot.lot_id in self.received_at
        previous, held = self.qty(k), self.effective_held(k)
        cmd = Adjust(self.new_id("R"), SKU, SITE, lot.lot_id, counted, bin_, status, owner, finance=finance)
        answer, _ = self.run(cmd)
        if not known:
            assert isinstance(answer, NotFound)
            assert answer.resource_type == "lot"
            return
        assert answer == Adjusted(previous, counted, counted - previous)
        quant = self.cell.ledger.quants.get(k)
        assert ((quant.qty, quant.held) if quant else (0, 0)) == (counted, min(held, counted))

    @rule(
        lot=lots,
        bin_=bins,
        status=any_statuses,
        owner=owners,
        delta=st.integers(-15, 15).filter(bool),
        finance=finances,
    )
    def adjust_by(
        self, lot: LotSpec, bin_: str, status: str, owner: str, delta: int, finance: Finance | None = None
    ) -> None:
        """A relative adjustment (an approved proposal, a transfer's shortage): the quant as
        it stands changes by `delta`, taking free units only — never below zero or into what
        holds promised."""
        k = QuantKey(lot.lot_id, bin_, status, owner)
        known = lot.lot_id in self.received_at
        previous, held = self.qty(k), self.effective_held(k)
        cmd = Adjust(self.new_id("R"), SKU, SITE, lot.lot_id, 0, bin_, status, owner, finance=finance, delta_qty=delta)
        answer, own = self.run(cmd)
        if not known:
            assert isinstance(answer, NotFound)
            return
        quant = self.cell.ledger.quants.get(k)
        now = (quant.qty, quant.held) if quant else (0, 0)
        if delta < 0 and previous - held < -delta:
            assert isinstance(answer, InsufficientStock), answer
            assert answer.available == max(previous - held, 0)
            assert now == (previous, held)
            return
        assert answer == Adjusted(previous, previous + delta, delta)
        assert now == (previous + delta, held)
        assert [(m.kind, m.qty) for m in own] == [(MovementKind.ADJUST, abs(delta))]

    @precondition(lambda self: self.live_holds())
    @rule(data=st.data(), delta=st.integers(-6, -1))
    def adjust_a_held_quant_by(self, data: st.DataObject, delta: int) -> None:
        """A relative loss on stock that holds have promised: refused past the free units."""
        held_keys = sorted({k for h in self.live_holds() for k in self.holds[h].allocations})
        k = data.draw(st.sampled_from(held_keys))
        self.adjust_by(LOT_BY_ID[k.lot_id], k.bin, k.status, k.owner, delta)

    @precondition(lambda self: self.live_holds())
    @rule(data=st.data())
    def count_a_held_quant(self, data: st.DataObject) -> None:
        """A count on stock that holds have promised: the holds shrink to fit the count."""
        held_keys = sorted({k for h in self.live_holds() for k in self.holds[h].allocations})
        k = data.draw(st.sampled_from(held_keys))
        counted = data.draw(st.integers(0, self.qty(k) + 2))
        self.adjust(LOT_BY_ID[k.lot_id], k.bin, k.status, k.owner, counted)

    @rule(
        lot=lots,
        from_bin=source_bins,
        step=st.integers(1, len(BINS) - 1),
        status=any_statuses,
        owner=owners,
        qty=qtys,
        finance=finances,
    )
    def move(
        self, lot: LotSpec, from_bin: str, step: int, status: str, owner: str, qty: int, finance: Finance | None
    ) -> None:
        to_bin = BINS[(BINS.index(from_bin) + step) % len(BINS)]
        src, dst = QuantKey(lot.lot_id, from_bin, status, owner), QuantKey(lot.lot_id, to_bin, status, owner)
        before_src, before_dst = self.qty(src), self.qty(dst)
        free = before_src - self.effective_held(src)
        cmd = Move(self.new_id("R"), SKU, SITE, lot.lot_id, qty, from_bin, to_bin, status, owner, finance=finance)
        answer, _ = self.run(cmd)
        if lot.lot_id not in self.received_at:
            assert isinstance(answer, NotFound)
        elif free >= qty:
            assert answer == Moved(qty)
            assert (self.qty(src), self.qty(dst)) == (before_src - qty, before_dst + qty)
        else:
            assert isinstance(answer, InsufficientStock)
            assert answer.available == max(free, 0)

    @rule(data=st.data(), lot=lots, bin_=source_bins, owner=owners, qty=qtys, allowed=st.booleans(), finance=finances)
    def change_status(
        self, data: st.DataObject, lot: LotSpec, bin_: str, owner: str, qty: int, allowed: bool, finance: Finance | None
    ) -> None:
        from_status = data.draw(any_statuses)
        targets = sorted(STATUSES.statuses[from_status].to)
        to_status = data.draw(st.sampled_from(targets) if allowed and targets else st.sampled_from(ALL_STATUSES))
        src = QuantKey(lot.lot_id, bin_, from_status, owner)
        free = self.qty(src) - self.effective_held(src)
        cmd = ChangeStatus(
            self.new_id("R"), SKU, SITE, lot.lot_id, qty, from_status, to_status, bin_, owner, finance=finance
        )
        answer, _ = self.run(cmd)
        if not STATUSES.can_transition(from_status, to_status):
            assert isinstance(answer, FailedPrecondition)
            assert answer.reason == "TRANSITION_NOT_ALLOWED"
        elif lot.lot_id not in self.received_at:
            assert isinstance(answer, NotFound)
        elif free >= qty:
            assert answer == StatusChanged(qty)
        else:
            assert isinstance(answer, InsufficientStock)
            assert answer.available == max(free, 0)

    # ---------------------------------------------------------------- rules: stock health (issue 15)

    def on_hand_under(self, lot_id: str, prefix: str) -> tuple[int, int]:
        """(qty, effective held) of the lot's on-hand quants under a bin prefix."""
        keys = [
            k
            for k, q in self.cell.ledger.quants.items()
            if k.lot_id == lot_id and q.qty > 0 and bin_ok(k.bin, prefix) and STATUSES.statuses[k.status].on_hand
        ]
        return sum(self.qty(k) for k in keys), sum(self.effective_held(k) for k in keys)

    @rule(
        lot=lots,
        bin_=bins,
        status=mostly("available", ON_HAND),
        owner=owners,
        counted=st.integers(0, 15),
        source=st.sampled_from(list(CountSource)),
    )
    def count_a_quant(
        self, lot: LotSpec, bin_: str, status: str, owner: str, counted: int, source: CountSource
    ) -> None:
        """A count sets the quant in one step; held units beyond the count cut holds."""
        k = QuantKey(lot.lot_id, bin_, str(status), owner)
        previous, held = self.qty(k), self.effective_held(k)
        line = CountLine(lot.lot_id, counted, str(status), owner, lot.expires_at_ms)
        answer, own = self.run(Count(self.new_id("R"), SKU, SITE, bin_, (line,), source=source, confidence=0.5))
        assert answer == Counted((LotCount(lot.lot_id, previous, counted),), answer.holds_cut), answer  # type: ignore[union-attr]
        assert isinstance(answer, Counted)
        quant = self.cell.ledger.quants.get(k)
        assert ((quant.qty, quant.held) if quant else (0, 0)) == (counted, min(held, counted))
        assert sum(c.qty for c in answer.holds_cut) == max(held - counted, 0)
        assert all(m.source == source.value for m in own if m.kind is MovementKind.COUNT)

    @rule(prefix=st.sampled_from(BIN_PREFIXES), data=st.data())
    def count_a_whole_bin(self, prefix: str, data: st.DataObject) -> None:
        """Every on-hand quant under the bin is counted; a lot left out was found empty."""
        named = data.draw(st.lists(st.sampled_from(LOT_IDS), unique=True, max_size=3))
        counted = {lot_id: data.draw(st.integers(0, 25)) for lot_id in named}
        before = {lot_id: self.on_hand_under(lot_id, prefix) for lot_id in LOT_IDS}
        lines = tuple(
            CountLine(lot_id, qty, "", "own", LOT_BY_ID[lot_id].expires_at_ms) for lot_id, qty in counted.items()
        )
        answer, _ = self.run(Count(self.new_id("R"), SKU, SITE, prefix, lines, whole_bin=True, source=CountSource.RFID))
        assert isinstance(answer, Counted), answer
        for lot_id in LOT_IDS:
            qty, held = self.on_hand_under(lot_id, prefix)
            want = counted.get(lot_id, 0)
            assert qty == want, (lot_id, qty, want)
            assert held == min(before[lot_id][1], want), (lot_id, held, before[lot_id])
        assert {c.lot_id: (c.previous_qty, c.counted_qty) for c in answer.lots} == {
            lot_id: (before[lot_id][0], counted.get(lot_id, 0))
            for lot_id in LOT_IDS
            if before[lot_id][0] or lot_id in counted
        }

    @rule(lot=lots)
    def open_a_lot(self, lot: LotSpec) -> None:
        opened_before = self.opened_at.get(lot.lot_id, 0)
        has_stock = any(k.lot_id == lot.lot_id and q.qty > 0 for k, q in self.cell.ledger.quants.items())
        answer, own = self.run(OpenLot(self.new_id("R"), SKU, SITE, lot.lot_id))
        if lot.lot_id not in self.received_at:
            assert isinstance(answer, NotFound), answer
        elif opened_before:
            assert answer == LotOpened(lot.lot_id, opened_before, True, opened_before + OPENED_SHELF_LIFE_MS)
            assert own == []
        elif not has_stock:
            assert isinstance(answer, FailedPrecondition), answer
            assert answer.reason == "LOT_NOT_ON_HAND"
        else:
            assert answer == LotOpened(lot.lot_id, self.now_ms, False, self.now_ms + OPENED_SHELF_LIFE_MS)
            assert [m.kind for m in own] == [MovementKind.OPEN]

    @rule()
    def expire_lots(self) -> None:
        expired = STATUSES.role(Role.EXPIRED)

        def due(k: QuantKey, q: int) -> bool:
            past = LOT_BY_ID[k.lot_id].expires_at_ms and LOT_BY_ID[k.lot_id].expires_at_ms <= self.now_ms
            return bool(past) and q > 0 and k.status != expired and STATUSES.statuses[k.status].on_hand

        todo = {k: q.qty for k, q in self.cell.ledger.quants.items() if due(k, q.qty)}
        movable = sum(q for k, q in todo.items() if STATUSES.can_transition(k.status, expired))
        answer, _ = self.run(ExpireLots(self.new_id("R"), SKU, SITE))
        assert isinstance(answer, LotsExpired), answer
        assert (answer.qty, answer.stuck_qty) == (movable, sum(todo.values()) - movable)
        assert all(
            not STATUSES.can_transition(k.status, expired) for k, q in self.cell.ledger.quants.items() if due(k, q.qty)
        )

    @rule(
        device=st.sampled_from(("POS-1", "POS-2")),
        replay=st.booleans(),
        qty=qtys,
        lot=lots,
        prev=st.sampled_from(("unsaid", "last", "gap")),
        skipped=st.integers(1, 3),
    )
    def a_device_op(self, device: str, replay: bool, qty: int, lot: LotSpec, prev: str, skipped: int) -> None:
        """A device's offline receipt: a new seq applies once; a replayed one (another
        upload, another request id) changes nothing, however late. One naming a previous
        seq on the cell the cell never saw (a gap between uploads) is refused naming it,
        and nothing moves."""
        last = self.cell.devices.get(device, 0)
        seq = last if replay and last else last + 1 + (skipped if prev == "gap" else 0)
        prev_seq = {"unsaid": NO_PREV_SEQ, "last": last, "gap": last + skipped}[prev]
        if seq == last:
            prev_seq = NO_PREV_SEQ if prev == "unsaid" else last - 1  # a replay: its own previous
        inner = Receive("", SKU, SITE, lot.lot_id, qty, "", "available", "own", lot.expires_at_ms)
        at_ms = self.now_ms - HOUR_MS
        answer, own = self.run(DeviceOp(self.new_id("D"), SKU, SITE, device, seq, at_ms, inner, prev_seq=prev_seq))
        if prev == "gap" and seq != last:
            assert isinstance(answer, FailedPrecondition), answer
            assert answer.reason == DEVICE_OPS_MISSING
            assert answer.metadata["missing_seq"] == str(last + skipped)
            assert self.cell.devices.get(device, 0) == last
            return
        assert isinstance(answer, DeviceOpDone), answer
        assert answer.already_applied == (seq == last)
        if answer.already_applied:
            assert own == []
        assert all(m.business_at_ms == at_ms for m in own)
        assert self.cell.devices[device] == seq

    @rule(prefix=st.sampled_from(BIN_PREFIXES))
    def freeze_a_bin(self, prefix: str) -> None:
        """A temperature excursion: everything on hand under the bin that may freeze does,
        held units too (their holds cut); what may not is reported as stuck."""
        frozen = STATUSES.role(Role.FROZEN)

        def due(k: QuantKey, q: int) -> bool:
            return q > 0 and k.status != frozen and STATUSES.statuses[k.status].on_hand and bin_ok(k.bin, prefix)

        todo = {k: q.qty for k, q in self.cell.ledger.quants.items() if due(k, q.qty)}
        movable = sum(q for k, q in todo.items() if STATUSES.can_transition(k.status, frozen))
        held = sum(self.effective_held(k) for k in todo if STATUSES.can_transition(k.status, frozen))
        answer, _ = self.run(FreezeStock(self.new_id("R"), SKU, SITE, prefix))
        assert isinstance(answer, StockFrozen), answer
        assert (answer.qty, answer.stuck_qty) == (movable, sum(todo.values()) - movable)
        assert sum(c.qty for c in answer.holds_cut) == held
        assert all(
            not STATUSES.can_transition(k.status, frozen) for k, q in self.cell.ledger.quants.items() if due(k, q.qty)
        )

    @rule()
    def scrap_over_age(self) -> None:
        def due(k: QuantKey, q: int) -> bool:
            return q > 0 and self.over_age(k.lot_id) and STATUSES.statuses[k.status].on_hand

        todo = sum(q.qty for k, q in self.cell.ledger.quants.items() if due(k, q.qty))
        scrap_before = self.cell.ledger.externals.get(External.SCRAP, 0)
        answer, _ = self.run(ScrapOverAge(self.new_id("R"), SKU, SITE))
        assert isinstance(answer, Scrapped), answer
        assert answer.qty == todo
        assert self.cell.ledger.externals.get(External.SCRAP, 0) == scrap_before + todo
        assert not any(due(k, q.qty) for k, q in self.cell.ledger.quants.items())

    # ---------------------------------------------------------------- rules: time, retries, bad input

    @rule(ms=clock_jumps)
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule()
    def sweep(self) -> None:
        due = self.due_holds()
        swept = self.cell.expire_due(self.now_ms)
        assert self.cell.drain() == swept
        self.record(swept)
        assert {m.kind for m in swept} <= {MovementKind.EXPIRE}
        assert {m.hold_id for m in swept} == due
        assert all(self.holds[h].state is HoldState.EXPIRED for h in due)

    @precondition(lambda self: self.answers)
    @rule(data=st.data())
    def retry_same_payload(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.answers)))
        self.run(self.answers[request_id].command)  # run() checks: the first answer, no movements

    @precondition(lambda self: self.answers and self.live_holds())
    @rule(data=st.data())
    def retry_once_a_hold_is_past_its_ttl(self, data: st.DataObject) -> None:
        """A retry answers from the window before anything else: even with a hold past its
        TTL and not yet swept, it must emit no movement (run() checks)."""
        earliest_expiry_ms = min(self.holds[h].expires_at_ms for h in self.live_holds())
        self.clock.advance(max(0, earliest_expiry_ms - self.now_ms))
        recent = sorted(r for r in self.answers if self.remembered(r))
        if recent:
            self.run(self.answers[data.draw(st.sampled_from(recent))].command)

    @precondition(lambda self: self.answers)
    @rule(data=st.data(), other_kind=st.booleans())
    def retry_other_payload(self, data: st.DataObject, other_kind: bool) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.answers)))
        first = self.answers[request_id].command
        other: Command = (
            Release(request_id, SKU, SITE, "H-never-reserved")
            if other_kind and not isinstance(first, Release)
            else dataclasses.replace(first, doc_ref=first.doc_ref + "-changed")
        )
        self.run(other)  # run() checks: RequestConflict while remembered, nothing changed

    @rule(data=st.data(), finance=bad_finances)
    def invalid_finance(self, data: st.DataObject, finance: Finance) -> None:
        """Any command with a malformed financial context is refused whole (run() checks:
        no movement, no change, not remembered)."""
        request_id = self.new_id("R")
        cmd = data.draw(
            st.sampled_from(
                [
                    Receive(request_id, SKU, SITE, "L-none", 1, status="available", finance=finance),
                    Consume(request_id, SKU, SITE, 1, finance=finance),
                    Commit(request_id, SKU, SITE, "H-any", finance=finance),
                    Release(request_id, SKU, SITE, "H-any", finance=finance),
                    Adjust(request_id, SKU, SITE, "L-none", 0, finance=finance),
                ]
            )
        )
        answer, _ = self.run(cmd)
        assert isinstance(answer, InvalidArgument), answer
        assert {v.field for v in answer.violations} <= {
            "finance.currency",
            "finance.unit_cost",
            "finance.unit_price",
            "finance.tax_rate",
            "finance.terms",
        }
        self.invalid_ids.append(request_id)

    @rule(qty=st.integers(-3, 0))
    def invalid_reserve(self, qty: int) -> None:
        request_id = self.new_id("R")
        answer, _ = self.run(Reserve(request_id, SKU, SITE, self.new_id("H"), (ReserveLine(qty),), 1_000))
        assert isinstance(answer, InvalidArgument)
        assert {v.field for v in answer.violations} == {"lines[0].qty"}
        self.invalid_ids.append(request_id)

    @precondition(lambda self: self.invalid_ids)
    @rule(data=st.data(), qty=qtys)
    def reuse_an_invalid_request_id(self, data: st.DataObject, qty: int) -> None:
        request_id = data.draw(st.sampled_from(self.invalid_ids))
        self.invalid_ids.remove(request_id)
        answer, _ = self.run(Receive(request_id, SKU, SITE, "L-none", qty, status="available"))
        assert answer == Received("L-none", qty), "an invalid command must not be remembered"

    # ---------------------------------------------------------------- invariants (DESIGN.md §4)

    @invariant()
    def ledger_checks_its_own_invariants(self) -> None:
        self.cell.ledger.check_invariants(self.cell.statuses)

    @invariant()
    def held_within_qty_and_buckets_conserved(self) -> None:
        ledger = self.cell.ledger
        for k, quant in ledger.quants.items():
            assert 0 <= quant.held <= quant.qty, f"{k}: held {quant.held}, qty {quant.qty}"
            assert (quant.qty, quant.held) != (0, 0), f"{k}: an empty quant was kept"
        assert sum(q.qty for q in ledger.quants.values()) + sum(ledger.externals.values()) == 0

    @invariant()
    def available_is_sellable_unexpired_unheld(self) -> None:
        expected = sum(
            quant.qty - self.effective_held(k)
            for k, quant in self.cell.ledger.quants.items()
            if STATUSES.statuses[k.status].sellable and self.fresh(k.lot_id)
        )
        assert expected >= 0
        assert self.cell.available(self.now_ms) == expected
        rows = self.cell.slice(self.now_ms, (Dimension.STATUS, Dimension.LOT))
        assert sum(r.available for r in rows) == expected
        assert sum(r.qty for r in rows) == sum(q.qty for q in self.cell.ledger.quants.values())
        assert all(r.available >= 0 and 0 <= r.held <= r.qty for r in rows)

    @invariant()
    def replay_from_zero_gives_the_live_state(self) -> None:
        assert self.cell.outbox == []
        rebuilt = replay(self.journal)
        live = self.cell.ledger
        assert same_balances(rebuilt, live)
        assert {h: (p.state, p.committed_qty, p.released_qty) for h, p in rebuilt.resolved.items()} == {
            h: (p.state, p.committed_qty, p.released_qty) for h, p in live.resolved.items()
        }

    @invariant()
    def what_ran_out_answers_at_zero(self) -> None:
        """A lot marked out of stock has no quant; a lot with quants is not marked; the
        per-lot quant counts agree with the quants (issue 15 item 7)."""
        ledger = self.cell.ledger
        with_quants = {k.lot_id for k in ledger.quants}
        assert not with_quants & set(ledger.zeroed)
        assert ledger.live == {lot: sum(1 for k in ledger.quants if k.lot_id == lot) for lot in with_quants}
        rows = self.cell.slice(self.now_ms, (Dimension.LOT,), SliceFilter(out_of_stock_only=True))
        assert {dict(r.group)["lot"] for r in rows} == set(ledger.zeroed)
        assert all(r.qty == 0 and r.out_of_stock_since_ms for r in rows)

    @invariant()
    def movement_seqs_are_gap_free_from_one(self) -> None:
        assert [m.seq for m in self.journal] == list(range(1, len(self.journal) + 1))
        assert self.cell.ledger.seq == len(self.journal)

    @invariant()
    def every_hold_is_resolved_at_most_once(self) -> None:
        ledger, due = self.cell.ledger, self.due_holds()
        assert set(ledger.active) | set(ledger.resolved) == set(self.holds)
        for hold_id, hold in self.holds.items():
            part = ledger.hold(hold_id)
            view = self.cell.hold_view(hold_id, self.now_ms)
            assert part is not None
            assert view is not None
            assert (view.committed_qty, view.released_qty) == (hold.committed, hold.released)
            if hold.state is HoldState.ACTIVE:
                assert hold_id in ledger.active
                assert hold_id not in ledger.resolved
                assert part.allocations == hold.allocations
                expired = hold_id in due
                assert view.state is (HoldState.EXPIRED if expired else HoldState.ACTIVE)
                assert view.held_qty == (0 if expired else hold.held)
            else:
                assert hold_id in ledger.resolved
                assert hold_id not in ledger.active
                assert part.state is hold.state
                assert view.state is hold.state
                assert view.held_qty == 0
                assert hold.committed + hold.released == hold.reserved


CellMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCellInvariants = CellMachine.TestCase
