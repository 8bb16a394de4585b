"""A cell's and a shard's state as plain, typed records: what snapshots and hand-offs carry
(DESIGN.md §7, §9).

A snapshot is an explicit export of everything replay would rebuild — quants, lots,
holds, the remembered answers of the idempotency window, the movement counter — never a
copy of live objects, so a codec can write it with a versioned schema and a newer release
can read it. `export_cell` / `import_cell` are exact inverses: importing an export gives a
cell that answers every command and read as the original would.

Configuration is not state: the status dictionary and the limits come from the importing
shard. Movements not yet drained are not state either: export only drained cells.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import TYPE_CHECKING

from engine.domain.cell import Cell, CellLimits, WindowEntry, WindowSource
from engine.domain.commands import Command, Reply
from engine.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InsufficientStock,
    Internal,
    InvalidArgument,
    InvariantViolation,
    NotFound,
    Overloaded,
    PermissionDenied,
    RequestConflict,
    Unavailable,
)
from engine.domain.ledger import Ledger
from engine.domain.model import External, HoldPart, HoldState, Lot, Quant, QuantKey
from engine.domain.statuses import StatusDictionary

if TYPE_CHECKING:
    from engine.domain.catalog import Pair, Site, Sku
    from engine.domain.shard import HoldHeader

# A refusal's constructor arguments: what each typed error is rebuilt from.
RefusalArg = str | int | dict[str, str] | tuple[FieldViolation, ...]

# The refusals a cell can remember, by name (a closed list: a name outside it is unreadable).
REFUSALS: dict[str, type[DomainError]] = {
    cls.__name__: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        InsufficientStock,
        RequestConflict,
        PermissionDenied,
        Overloaded,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A remembered refusal: the error's class name and its constructor arguments."""

    kind: str
    args: tuple[RefusalArg, ...]


@dataclass(frozen=True, slots=True)
class Remembered:
    """One entry of a cell's idempotency window: the first command under a request id
    and the answer it got (replayed to a retry with the same payload)."""

    request_id: str
    at_ms: int
    command: Command
    answer: Reply | Refusal


@dataclass(frozen=True, slots=True)
class DeferredWindow:
    """A cell's whole idempotency window, oldest first, its commands and answers not yet
    built: entry i is request `request_ids[i]`, remembered at `at_ms[i]`, row `rows[i]` of
    `sources[i]`. Recovery keeps 10⁶ remembered receipts this way (a tuple per entry, not a
    14-field command and its answer); a retry builds the one it needs (Cell._recall)."""

    request_ids: Sequence[str]
    at_ms: Sequence[int]
    sources: Sequence[WindowSource]
    rows: Sequence[int]

    def remembered(self) -> tuple[Remembered, ...]:
        """Every entry built (an export of the state)."""
        return tuple(
            _remembered(request_id, at_ms, *source.entry(row))
            for request_id, at_ms, source, row in zip(
                self.request_ids, self.at_ms, self.sources, self.rows, strict=True
            )
        )


@dataclass(frozen=True, slots=True)
class QuantBalance:
    key: QuantKey
    qty: int
    held: int


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """A hold part (engine.domain.model.HoldPart) with its allocations in allocation order."""

    hold_id: str
    request_id: str
    allocations: tuple[tuple[QuantKey, int], ...]
    created_at_ms: int
    expires_at_ms: int
    state: HoldState
    committed_qty: int
    released_qty: int
    resolved_at_ms: int


@dataclass(frozen=True, slots=True)
class CellState:
    """Everything a cell holds, in its iteration orders (they decide allocation order)."""

    sku: str
    site: str
    opened_shelf_life_ms: int
    seq: int  # the last movement applied
    quants: tuple[QuantBalance, ...]
    externals: tuple[tuple[External, int], ...]
    lots: tuple[Lot, ...]
    active: tuple[HoldRecord, ...]
    resolved: tuple[HoldRecord, ...]  # oldest resolution first
    remembered: tuple[Remembered, ...]  # oldest first
    next_expiry_ms: int  # the cell's lower bound on its earliest active expiry
    zeroed: tuple[tuple[str, int], ...] = ()  # lots that ran out, with when (oldest first)
    devices: tuple[tuple[str, int], ...] = ()  # each device's last seq applied here
    # A decoded snapshot's window left encoded (then `remembered` is empty): see
    # DeferredWindow. Never set by export_cell; `window_of` builds it into records.
    deferred: DeferredWindow | None = None


def window_of(cell: CellState) -> CellState:
    """The cell with its whole window as records (a deferred window built)."""
    if cell.deferred is None:
        return cell
    if cell.remembered:
        raise InvariantViolation(f"cell {cell.sku}@{cell.site}: a deferred window and remembered entries besides")
    return replace(cell, remembered=cell.deferred.remembered(), deferred=None)


@dataclass(frozen=True, slots=True)
class MovedPair:
    sku: str
    site: str
    to_shard: str


@dataclass(frozen=True, slots=True)
class ShardState:
    """A shard's cells, catalog, hold headers and hand-off marks (engine.domain.shard)."""

    name: str
    skus: tuple[Sku, ...]
    sites: tuple[Site, ...]
    headers: tuple[HoldHeader, ...]  # insertion order ≈ expiry order
    moved: tuple[MovedPair, ...]
    expecting: tuple[Pair, ...]
    with_holds: tuple[Pair, ...]  # the sweeper's list, in its order
    cells: tuple[CellState, ...]


# ---- refusals ----


def _remembered(request_id: str, at_ms: int, command: Command, answer: Reply | DomainError) -> Remembered:
    return Remembered(request_id, at_ms, command, refusal_of(answer) if isinstance(answer, DomainError) else answer)


def refusal_of(error: DomainError) -> Refusal:
    """The error as its class name and constructor arguments (its `__reduce__`, which every
    domain error declares so it can cross process boundaries by its fields)."""
    kind = type(error).__name__
    if REFUSALS.get(kind) is not type(error):
        raise InvariantViolation(f"refusal {kind} cannot be remembered in a snapshot")
    rebuild, args = error.__reduce__()[:2]
    if rebuild is not type(error):
        raise InvariantViolation(f"refusal {kind} does not rebuild from its constructor arguments")
    return Refusal(kind, tuple(args))


def error_of(refusal: Refusal) -> DomainError:
    cls = REFUSALS.get(refusal.kind)
    if cls is None:
        raise ValueError(f"unknown refusal {refusal.kind!r}")
    # Each class takes its own constructor arguments (what refusal_of recorded).
    rebuild: Callable[..., DomainError] = cls
    return rebuild(*refusal.args)


# ---- cells ----


def _hold_record(part: HoldPart) -> HoldRecord:
    return HoldRecord(
        part.hold_id,
        part.request_id,
        tuple(part.allocations.items()),
        part.created_at_ms,
        part.expires_at_ms,
        part.state,
        part.committed_qty,
        part.released_qty,
        part.resolved_at_ms,
    )


def _hold_part(record: HoldRecord) -> HoldPart:
    return HoldPart(
        record.hold_id,
        record.request_id,
        dict(record.allocations),
        record.created_at_ms,
        record.expires_at_ms,
        record.state,
        record.committed_qty,
        record.released_qty,
        record.resolved_at_ms,
    )


def export_cell(cell: Cell) -> CellState:
    """The cell's state; its outbox must be drained (undrained movements are not state)."""
    if cell.outbox:
        raise InvariantViolation(f"cell {cell.sku}@{cell.site} exported with {len(cell.outbox)} undrained movements")
    ledger = cell.ledger
    # The idempotency window is the cell's own (private) field: this module is its export.
    seen = cell._seen
    return CellState(
        sku=cell.sku,
        site=cell.site,
        opened_shelf_life_ms=cell.opened_shelf_life_ms,
        seq=ledger.seq,
        quants=tuple(QuantBalance(key, q.qty, q.held) for key, q in ledger.quants.items()),
        externals=tuple(ledger.externals.items()),
        lots=tuple(ledger.lots.values()),
        active=tuple(_hold_record(p) for p in ledger.active.values()),
        resolved=tuple(_hold_record(p) for p in ledger.resolved.values()),
        remembered=tuple(_remembered(request_id, *cell.recalled(entry)) for request_id, entry in seen.items()),
        next_expiry_ms=cell.next_expiry_ms,
        zeroed=tuple(ledger.zeroed.items()),
        devices=tuple(cell.devices.items()),
    )


_key, _qty, _held = attrgetter("key"), attrgetter("qty"), attrgetter("held")
_lot_id = attrgetter("lot_id")
_request_id, _at_ms, _command = attrgetter("request_id"), attrgetter("at_ms"), attrgetter("command")


def _answer(remembered: Remembered) -> Reply | DomainError:
    answer = remembered.answer
    return error_of(answer) if isinstance(answer, Refusal) else answer


def _window(state: CellState) -> OrderedDict[str, WindowEntry]:
    window, deferred = state.remembered, state.deferred
    if deferred is None:
        return OrderedDict(
            zip(
                map(_request_id, window),
                zip(map(_at_ms, window), map(_command, window), map(_answer, window), strict=True),
                strict=True,
            )
        )
    if window:
        raise InvariantViolation(f"cell {state.sku}@{state.site}: a deferred window and remembered entries besides")
    # Left encoded: (at_ms, source, row) per entry, built in C; Cell.recalled decodes one.
    entries: zip[WindowEntry] = zip(deferred.at_ms, deferred.sources, deferred.rows, strict=True)
    return OrderedDict(zip(deferred.request_ids, entries, strict=True))


def import_cell(state: CellState, statuses: StatusDictionary, limits: CellLimits) -> Cell:
    """A cell that answers as the exported one did, under this shard's configuration.
    Quants, lots and the window are built with map/zip (C-level loops): recovering 10⁶
    quants spends its time here and in the decoder, not in per-record Python."""
    cell = Cell(state.sku, state.site, statuses, state.opened_shelf_life_ms, limits)
    quants, lots = state.quants, state.lots
    cell.ledger = Ledger(
        quants=dict(zip(map(_key, quants), map(Quant, map(_qty, quants), map(_held, quants)), strict=True)),
        externals=dict(state.externals),
        lots=dict(zip(map(_lot_id, lots), lots, strict=True)),
        active={r.hold_id: _hold_part(r) for r in state.active},
        resolved=OrderedDict((r.hold_id, _hold_part(r)) for r in state.resolved),
        seq=state.seq,
        zeroed=OrderedDict(state.zeroed),
    )
    live: dict[str, int] = {}
    for key in cell.ledger.quants:
        live[key.lot_id] = live.get(key.lot_id, 0) + 1
    cell.ledger.live = live
    cell.ledger.opened_lots = sum(1 for lot in lots if lot.opened_at_ms)
    cell._seen = _window(state)
    cell._next_expiry_ms = state.next_expiry_ms
    cell.devices = dict(state.devices)
    return cell
