"""A shard hosts many cells and applies batches of ops to them in arrival order (DESIGN.md §6, §7).

`ShardCore` is plain, synchronous and deterministic: the same ops at the same engine time
give the same state and answers, which is what makes journal replay exact. `ShardHost`
(engine.runtime.host) hosts it in a Ray actor and adds the journal, snapshots, recovery and the expiry sweeper.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import structlog

from engine.domain.catalog import Pair, Site, Sku, org_covers
from engine.domain.cell import Cell, CellLimits, Dimension, SliceFilter, SliceRow
from engine.domain.commands import Command, Receive, Reply, Reserve
from engine.domain.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    InvariantViolation,
    NotFound,
    Overloaded,
    RequestConflict,
    Unavailable,
)
from engine.domain.freshness import opened_shelf_life_ms
from engine.domain.grants import ReadScope, narrow
from engine.domain.hold_listing import ScanHolds, scan_holds
from engine.domain.hold_parts import (
    CheckPart,
    HoldParts,
    PartAnswers,
    PartCheck,
    PartKind,
    ReadPart,
    check_part,
    sale_refusal,
    veto,
)
from engine.domain.inventory import StockKey
from engine.domain.model import HoldView, Movement, MovementKind
from engine.domain.receipts import ReceiptColumns
from engine.domain.state import CellState, MovedPair, ShardState, export_cell, import_cell
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary
from engine.domain.totals import SiteTotals, answers_from_totals

log = structlog.get_logger("lotwise.shard")

# ---- ops a shard accepts besides cell commands ----


@dataclass(frozen=True, slots=True)
class PutSku:
    sku: Sku


@dataclass(frozen=True, slots=True)
class PutSite:
    site: Site


@dataclass(frozen=True, slots=True)
class ReadCatalog:
    org_prefix: str = ""


@dataclass(frozen=True, slots=True)
class HoldHeader:
    """Which pairs a hold spans; kept at the hold's home shard (routing.hold_home_index)."""

    hold_id: str
    request_id: str
    pairs: tuple[Pair, ...]
    ttl_ms: int
    expires_at_ms: int = 0  # stamped by the home shard in engine time


@dataclass(frozen=True, slots=True)
class ReadSku:
    """One sku of the catalog (a freshness refusal's substitutes); NOT_FOUND when unknown."""

    sku: str


@dataclass(frozen=True, slots=True)
class RegisterHold:
    header: HoldHeader


@dataclass(frozen=True, slots=True)
class LookupHold:
    hold_id: str


@dataclass(frozen=True, slots=True)
class ReadHold:
    sku: str
    site: str
    hold_id: str


@dataclass(frozen=True, slots=True)
class ReadSlice:
    sku: str
    site: str
    group_by: tuple[Dimension, ...] = ()
    filter: SliceFilter = field(default_factory=SliceFilter)
    bin_depth: int = 0


@dataclass(frozen=True, slots=True)
class ScanCells:
    """QueryStock's share for one shard: every cell matching skus / sites / org."""

    skus: frozenset[str]
    sites: frozenset[str]
    org_prefix: str
    group_by: tuple[Dimension, ...]
    filter: SliceFilter
    bin_depth: int
    limit: int
    by_sku: bool = True
    by_site: bool = True
    scope: ReadScope | None = None  # the caller's grants: applied before summing (DESIGN §13)
    # > 0: only the `keep` first rows after `after` (a page and one more); `limit` unused.
    keep: int = 0
    after: StockKey | None = None


@dataclass(frozen=True, slots=True)
class HandOff:
    """Export a cell (snapshot hand-off to another shard); the pair is then refused here."""

    sku: str
    site: str
    to_shard: str


@dataclass(frozen=True, slots=True)
class Expect:
    """Sent to a hand-off's target first: until the cell arrives, its ops wait (retryable)."""

    sku: str
    site: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """The hand-off's cell state, with the catalog, so the target can serve the pair at once."""

    sku: str
    site: str
    cell: CellState
    skus: tuple[Sku, ...]
    sites: tuple[Site, ...]


RECEIVE_BULK_MAX = 1_024  # receipts in one ReceiveBulk: its journal entry stays well under 1 MiB


class ReceiveBulk:
    """Receipts for pairs of this shard (bulk load), already validated by the sender
    (engine.runtime.gateway.bulk): each is applied on its own, in order, exactly as if it
    had come alone — its own answer or refusal, idempotent by its request id. The journal
    records the receipts one by one (`journaled`), so replay applies them as plain Receives.

    The sender gives the receipts as columns (engine.domain.receipts) and they travel as
    such, a few lists per call; the Receives the cells and the journal need are built
    once, here, on first use."""

    __slots__ = ("_columns", "_receipts", "made")

    def __init__(
        self,
        receipts: Sequence[Receive] | None = None,
        *,
        columns: ReceiptColumns | None = None,
        made: Sequence[Movement] | None = None,
    ) -> None:
        if (receipts is None) == (columns is None):
            raise ValueError("ReceiveBulk takes receipts or columns")
        self._receipts = None if receipts is None else tuple(receipts)
        self._columns = columns
        # Replay only (`replay_ops`): the movement each receipt made on the primary, which
        # its cell applies as it is (Cell.replay_receipt). Never sent, never journaled.
        self.made = None if made is None else tuple(made)
        if self.made is not None and len(self.made) != len(self):
            raise ValueError("ReceiveBulk takes one movement made per receipt")

    @property
    def receipts(self) -> tuple[Receive, ...]:
        if self._receipts is None:
            self._receipts = tuple(self.columns.receipts())
        return self._receipts

    @property
    def columns(self) -> ReceiptColumns:
        if self._columns is None:
            self._columns = ReceiptColumns.of(self.receipts)
        return self._columns

    def __len__(self) -> int:
        return len(self._receipts) if self._receipts is not None else len(self.columns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReceiveBulk) and self.receipts == other.receipts

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReceiveBulk({len(self)} receipts)"

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to a shard process as columns: pickling a thousand dataclasses costs several
        # times more than pickling a few lists of their fields.
        return (_receive_bulk_of_columns, (self.columns,))


def _receive_bulk_of_columns(columns: ReceiptColumns) -> ReceiveBulk:
    return ReceiveBulk(columns=columns)


@dataclass(frozen=True, slots=True)
class Sweep:
    """Release holds past their TTL (bounded work); journaled like any other write."""

    max_cells: int = 10_000


class CellMoved(Unavailable):
    """The pair was handed off to another shard; the gateway re-routes and retries."""

    FIELDS = ("sku", "site", "to_shard")
    sku: str
    site: str
    to_shard: str

    def __init__(self, sku: str, site: str, to_shard: str) -> None:
        Unavailable.__init__(self, f"{sku}@{site} moved to {to_shard}")
        self.sku, self.site, self.to_shard = sku, site, to_shard

    def __reduce__(self) -> tuple[Any, ...]:
        return (CellMoved, (self.sku, self.site, self.to_shard))


class CellAdopting(Unavailable):
    """The pair is on its way to this shard; the gateway retries shortly."""

    FIELDS = ("sku", "site")
    sku: str
    site: str

    def __init__(self, sku: str, site: str) -> None:
        Unavailable.__init__(self, f"{sku}@{site} is being handed over")
        self.sku, self.site = sku, site

    def __reduce__(self) -> tuple[Any, ...]:
        return (CellAdopting, (self.sku, self.site))


Op = (
    Command
    | PutSku
    | PutSite
    | ReadCatalog
    | ReadSku
    | RegisterHold
    | LookupHold
    | ReadHold
    | ReadSlice
    | ScanCells
    | ScanHolds
    | HandOff
    | Expect
    | Adopt
    | Sweep
    | ReceiveBulk
    | HoldParts
)
Result = Any  # a Reply, a read's value, or the DomainError that refused the op

HEADER_RETENTION_MS = 60 * 60_000  # past a hold's expiry; matches CellLimits.resolved_hold_retention_ms
HEADER_MAX = 1_000_000


def journaled(op: Op) -> Sequence[Op]:
    """The ops the journal records for `op`: a bulk receipt is its receipts (replay applies
    them one by one, which gives the very same state and movements); a hold's parts are
    their commands (its reads: nothing)."""
    if isinstance(op, ReceiveBulk):
        return op.receipts
    if isinstance(op, HoldParts):
        if op.kind is PartKind.SELL:
            return op.applied  # what the sale applied: its reserves, then commits or aborts
        return op.commands if op.mutating and not op.vetoed else ()  # type: ignore[return-value]
    return (op,)


def replay_ops(ops: Sequence[Op], movements: Sequence[Movement]) -> Sequence[Op]:
    """A journal entry's ops as replay applies them: the receipts the entry shows accepted
    go as ReceiveBulk runs, each receipt with the movement it made (applied as it is, not
    made again: Cell.replay_receipt), every other op as it is.

    Validation refuses before anything changes, so a receipt that made a movement passed
    it. A RECEIVE movement of (sku, site, request_id) is the one a receipt made when no
    other command of the entry has that (sku, site, request_id) and no other movement of
    the entry has it either; a receipt sharing it (a retry, a conflicting reuse, a device
    op) is applied as before, validated. Replay then does what the primary did after
    validating, in the same order: the same state and the same movements (which the
    caller still compares with the journal's)."""
    if not any(m.kind == MovementKind.RECEIVE for m in movements):
        return ops
    made: dict[tuple[str, str, str], Movement | None] = {}
    for m in movements:
        key = (m.sku, m.site, m.request_id)
        # None: not a receipt's movement, or two movements name it (not one receipt's alone).
        made[key] = None if key in made or m.kind != MovementKind.RECEIVE else m
    uses = Counter((op.sku, op.site, op.request_id) for op in ops if isinstance(op, Command))
    out: list[Op] = []
    run: list[Receive] = []
    run_made: list[Movement] = []

    def flush() -> None:
        if run:
            out.append(ReceiveBulk(run, made=run_made))
            run.clear()
            run_made.clear()

    for op in ops:
        if isinstance(op, Receive):
            key = (op.sku, op.site, op.request_id)
            movement = made.get(key)
            if movement is not None and uses[key] == 1:
                run.append(op)
                run_made.append(movement)
                if len(run) == RECEIVE_BULK_MAX:
                    flush()
                continue
        flush()
        out.append(op)
    flush()
    return out


def op_weight(ops: Sequence[Op]) -> int:
    """How many journaled ops `ops` stand for (what bounds a group commit)."""
    return sum(op.weight if isinstance(op, HoldParts) else len(op) if isinstance(op, ReceiveBulk) else 1 for op in ops)


def new_total() -> list[int]:
    """[qty, held, available, on_hand, earliest expiry, latest out-of-stock time]."""
    return [0, 0, 0, 0, 0, 0]


def add_row(total: list[int], row: SliceRow) -> None:
    """Sum a slice row into a `new_total`."""
    total[0] += row.qty
    total[1] += row.held
    total[2] += row.available
    total[3] += row.on_hand
    if row.earliest_expiry_ms and (not total[4] or row.earliest_expiry_ms < total[4]):
        total[4] = row.earliest_expiry_ms
    total[5] = max(total[5], row.out_of_stock_since_ms)


def _total_of(row: SliceRow) -> list[int]:
    total = new_total()
    add_row(total, row)
    return total


def add_total(total: list[int], part: list[int]) -> None:
    """Sum a `new_total` into another (as add_row does a row)."""
    total[0] += part[0]
    total[1] += part[1]
    total[2] += part[2]
    total[3] += part[3]
    if part[4] and (not total[4] or part[4] < total[4]):
        total[4] = part[4]
    total[5] = max(total[5], part[5])


def row_of(group: tuple[tuple[str, str], ...], total: list[int]) -> SliceRow:
    """A summed row; a group is out of stock (since the latest of its parts ran out) only
    when nothing in it has stock."""
    since = total[5] if total[0] == 0 else 0
    return SliceRow(group, total[0], total[1], total[2], total[3], total[4], since)


def result_too_large(limit: int) -> FailedPrecondition:
    return FailedPrecondition(
        "RESULT_TOO_LARGE",
        f"the query has more than {limit} rows: narrow it (skus, sites, org, filters) or raise limit",
        {"limit": str(limit)},
    )


class GroupSums:
    """A scan's sums by row key. Whole (`keep` 0): more than `limit` keys is refused, never
    truncated. Paged: only keys after `after`, and only the `keep` smallest — exact, because
    keys are only ever added: a key with `keep` smaller ones already can never make the page,
    so it is dropped and never summed again (memory stays within 2 × `keep` keys)."""

    __slots__ = ("after", "ceiling", "keep", "limit", "sums")

    def __init__(self, limit: int, keep: int = 0, after: StockKey | None = None) -> None:
        self.sums: dict[StockKey, list[int]] = {}
        self.limit = limit
        self.keep = keep
        self.after = after
        self.ceiling: StockKey | None = None  # paged: keys above it are out of the page

    def slot(self, key: StockKey) -> list[int] | None:
        """The running total of `key`; None when the key is out of this page."""
        total = self.sums.get(key)
        if total is not None:
            return total
        if not self.keep:
            if len(self.sums) >= self.limit:
                raise result_too_large(self.limit)
        else:
            if (self.after is not None and key <= self.after) or (self.ceiling is not None and key > self.ceiling):
                return None
            if len(self.sums) >= 2 * self.keep:
                self._prune()
                if key > self.ceiling:  # type: ignore[operator]
                    return None
        total = self.sums[key] = new_total()
        return total

    def _prune(self) -> None:
        ordered = sorted(self.sums)
        self.ceiling = ordered[self.keep - 1]
        for key in ordered[self.keep :]:
            del self.sums[key]

    def rows(self) -> list[tuple[str, str, SliceRow]]:
        """The summed rows; paged: the `keep` first in key order."""
        items = sorted(self.sums.items())[: self.keep] if self.keep else self.sums.items()
        return [(sku, site, row_of(group, total)) for (sku, site, group), total in items]


class ShardCore:
    """Cells, the replicated catalog and hold headers of one shard. Single-threaded."""

    # A class default as well: a core unpickled from a pre-v3 snapshot (adapters/nats/legacy.py)
    # never ran __init__, and is exported once.
    _capture: SnapshotCapture | None = None
    # Per-site totals (engine.domain.totals), built on the first whole-estate read and kept
    # from then on as cells change; a class default for the same reason as _capture.
    _totals: SiteTotals | None = None

    def __init__(
        self,
        name: str,
        statuses: StatusDictionary = DEFAULT_DICTIONARY,
        limits: CellLimits = CellLimits(),
    ) -> None:
        self.name = name
        self.statuses = statuses
        self.limits = limits
        self.cells: dict[Pair, Cell] = {}
        self.skus: dict[str, Sku] = {}
        self.sites: dict[str, Site] = {}
        self.headers: OrderedDict[str, HoldHeader] = OrderedDict()  # insertion ≈ expiry order
        self.moved: dict[Pair, str] = {}
        self.expecting: set[Pair] = set()
        # Cells that may have active holds (the sweeper's list) and cells touched since the
        # last drain. Dicts, not sets: iteration order must not depend on the process's
        # hash seed, or a replay elsewhere would produce movements in another order.
        self.with_holds: dict[Pair, None] = {}
        self._touched: dict[Pair, Cell] = {}
        self._handed_off: list[Movement] = []
        self._capture: SnapshotCapture | None = None  # a snapshot being taken (copy-on-write)
        self._totals: SiteTotals | None = None

    def apply_batch(self, ops: Sequence[Op], now_ms: int) -> list[Result]:
        """Apply ops in order; each answer is a value or the DomainError that refused it."""
        results: list[Result] = []
        for op in ops:
            try:
                results.append(self.apply(op, now_ms))
            except DomainError as refusal:
                # Without its traceback: the frames it names hold `results`, which holds
                # it — a cycle per refusal, which a cell's window keeps and (frozen by the
                # shard host, engine/runtime/host.py) no collector would ever free.
                results.append(refusal.with_traceback(None))
            except Exception:  # a bug: log it, answer INTERNAL, keep serving the others
                log.exception("op failed", shard=self.name, op=type(op).__name__)
                results.append(Internal(f"{type(op).__name__} failed on shard {self.name}"))
        return results

    def apply(self, op: Op, now_ms: int) -> Result:
        match op:
            case ReadSlice():
                cell = self._existing_cell(op.sku, op.site)
                rows = [] if cell is None else cell.slice(now_ms, op.group_by, op.filter, op.bin_depth)
                return (now_ms, rows)  # the engine time the answer is as of
            case ReadHold():
                cell = self._existing_cell(op.sku, op.site)
                return None if cell is None else cell.hold_view(op.hold_id, now_ms)
            case ScanCells():
                return self._scan(op, now_ms)
            case ScanHolds():
                return scan_holds(self.cells, self.sites, op, now_ms)
            case LookupHold():
                header = self.headers.get(op.hold_id)
                if header is None:
                    raise NotFound("hold", op.hold_id)
                return header
            case RegisterHold():
                return self._register(op.header, now_ms)
            case PutSku():
                self.skus[op.sku.sku] = op.sku
                self._refresh_shelf_life(op.sku)
                return None
            case PutSite():
                self.sites[op.site.site] = op.site
                return None
            case ReadCatalog():
                sites = [s for s in self.sites.values() if org_covers(s.org_path, op.org_prefix)]
                return (sorted(sites, key=lambda s: s.site), sorted(self.skus.values(), key=lambda s: s.sku))
            case ReadSku():
                known = self.skus.get(op.sku)
                if known is None:
                    raise NotFound("sku", op.sku)
                return known
            case HandOff():
                return self._hand_off(op)
            case Expect():
                self.expecting.add((op.sku, op.site))
                return None
            case Adopt():
                return self._adopt(op)
            case Sweep():
                return self.sweep(now_ms, op.max_cells)
            case ReceiveBulk():
                return self._receive_bulk(op, now_ms)
            case HoldParts():
                return self._hold_parts(op, now_ms)
            case _:
                return self._command(op, now_ms)

    def _command(self, cmd: Command, now_ms: int) -> Reply:
        cell = self._cell(cmd.sku, cmd.site)
        self._before_change((cmd.sku, cmd.site))
        self._touched[(cmd.sku, cmd.site)] = cell
        reply = cell.handle(cmd, now_ms)
        if isinstance(cmd, Reserve):
            self.with_holds[(cmd.sku, cmd.site)] = None
        return reply

    def _receive_bulk(self, op: ReceiveBulk, now_ms: int) -> list[DomainError | None]:
        """Each receipt's refusal, or None when it was received (its answer is always
        Received(lot_id, qty): the sender makes it, so no answer object travels back);
        in order, and one refused receipt stops no other."""
        if len(op) > RECEIVE_BULK_MAX:
            raise InvalidArgument([FieldViolation("receipts", f"at most {RECEIVE_BULK_MAX} per bulk op")])
        if op.made is not None:
            return self._replay_receipts(op.receipts, op.made, now_ms)
        results: list[DomainError | None] = []
        for cmd in op.receipts:
            try:
                cell = self._cell(cmd.sku, cmd.site)
                self._before_change((cmd.sku, cmd.site))
                self._touched[(cmd.sku, cmd.site)] = cell
                cell.receive_checked(cmd, now_ms)  # the sender validated it
                results.append(None)
            except DomainError as refusal:
                results.append(refusal)
            except Exception:  # a bug: as apply_batch does for a lone op (replay does the same)
                log.exception("receipt failed", shard=self.name, request_id=cmd.request_id)
                results.append(Internal(f"Receive failed on shard {self.name}"))
        return results

    def _replay_receipts(
        self, receipts: Sequence[Receive], made: Sequence[Movement], now_ms: int
    ) -> list[DomainError | None]:
        """`_receive_bulk` of receipts the journal shows accepted, each with the movement
        it made there (replay: the movements are not made again). A receipt whose movement
        does not fit is refused (InvariantViolation): the movements replay hands on then
        differ from the journal's, and replay stops with JournalCorrupt."""
        results: list[DomainError | None] = []
        for cmd, movement in zip(receipts, made, strict=True):
            try:
                cell = self._cell(cmd.sku, cmd.site)
                self._before_change((cmd.sku, cmd.site))
                self._touched[(cmd.sku, cmd.site)] = cell
                cell.replay_receipt(cmd, movement, now_ms)
                results.append(None)
            except DomainError as refusal:
                results.append(refusal)
        return results

    def _hold_parts(self, op: HoldParts, now_ms: int) -> PartAnswers:
        """Each part as if it had come alone, in order: its answer, or the refusal (a
        moved pair's CellMoved too: the sender follows it for that part alone)."""
        if op.kind is PartKind.SELL:
            return self._sell(op, now_ms)
        if op.all_or_nothing:
            # Vetoed until the checks pass: should one raise (a bug), nothing is applied and
            # nothing journaled (replay applies the journaled commands, without the checks).
            op.vetoed = True
            refusal = self._vetoed(op, now_ms)
            if refusal is not None:
                return PartAnswers([refusal] * len(op))
            op.vetoed = False
        answers = PartAnswers()
        for cmd in op.commands:
            try:
                if isinstance(cmd, ReadPart | CheckPart):
                    answers.append(self._read_part(cmd, now_ms))
                else:
                    answers.append(self._command(cmd, now_ms))
            except DomainError as refusal:
                answers.append(refusal.with_traceback(None))  # no cycle kept (apply_batch says why)
            except Exception:  # a bug: as apply_batch does for a lone op
                log.exception("hold part failed", shard=self.name, op=type(cmd).__name__)
                answers.append(Internal(f"{type(cmd).__name__} failed on shard {self.name}"))
        return answers

    def _sell(self, op: HoldParts, now_ms: int) -> PartAnswers:
        """A one-shard sale, all or nothing within this batch: every part's Reserve; then,
        when each held and none would refuse its commit (the pre-check of a commit), every
        part's Commit — else the abort of every part, and the reason, for each part. The
        commands applied are what the journal records (`op.applied`), refused ones too (a
        cell's window remembers a refusal, and replay must remember it as well)."""
        parts = op.sale_parts()
        for part in parts:  # a pair that moved stops it before anything applies: the sender follows
            if (part.reserve.sku, part.reserve.site) not in self.cells:
                self._check_here((part.reserve.sku, part.reserve.site))
        applied: list[Command] = []
        op.applied = applied  # afresh: an op object applied again (in process) journals only this time
        reserved = [self._applied(part.reserve, applied, now_ms) for part in parts]
        refusal = sale_refusal(reserved) or self._vetoed(op, now_ms)
        if refusal is None:
            return PartAnswers(self._applied(part.commit, applied, now_ms) for part in parts)
        # Only what this sale holds is let go (a part refused outright may be another's,
        # under a reused request id); an aborted part answers a retry's reserve HOLD_ABORTED.
        for void, answer in zip(op.voids(), reserved, strict=True):
            if not isinstance(answer, DomainError):
                self._applied(void, applied, now_ms)
        return PartAnswers([refusal] * len(op))

    def _applied(self, cmd: Command, applied: list[Command], now_ms: int) -> Result:
        """Apply one command of a compound op, noting it for the journal; its answer or refusal."""
        applied.append(cmd)
        try:
            return self._command(cmd, now_ms)
        except DomainError as refusal:
            return refusal.with_traceback(None)  # no cycle kept (apply_batch says why)

    def _read_part(self, cmd: ReadPart | CheckPart, now_ms: int) -> HoldView | PartCheck | None:
        cell = self._existing_cell(cmd.sku, cmd.site)
        view = None if cell is None else cell.hold_view(cmd.hold_id, now_ms)
        return check_part(cmd, view) if isinstance(cmd, CheckPart) else view

    def _vetoed(self, op: HoldParts, now_ms: int) -> DomainError | None:
        """The refusal that stops an all-or-nothing commit (release) before any part applies
        (engine.domain.hold_parts.veto), or None. A pair that moved or is being adopted
        stops it too: the coordinator then goes the two-step way, which follows it."""
        found: list[PartCheck] = []
        for check in op.checks():
            try:
                found.append(cast(PartCheck, self._read_part(check, now_ms)))
            except DomainError as refusal:
                return refusal.with_traceback(None)
        return veto(found)

    def _cell(self, sku: str, site: str) -> Cell:
        pair = (sku, site)
        cell = self.cells.get(pair)
        if cell is not None:
            return cell
        self._check_here(pair)
        known = self.skus.get(sku)
        if known is None:
            raise NotFound("sku", sku)
        if site not in self.sites:
            raise NotFound("site", site)
        cell = Cell(sku, site, self.statuses, opened_shelf_life_ms(known), self.limits)
        self.cells[pair] = cell
        return cell

    def _refresh_shelf_life(self, sku: Sku) -> None:
        """A changed opened shelf life applies to the sku's cells at once (O(sites))."""
        life = opened_shelf_life_ms(sku)
        for site in self.sites:
            cell = self.cells.get((sku.sku, site))
            if cell is not None and cell.opened_shelf_life_ms != life:
                self._before_change((sku.sku, site))
                cell.opened_shelf_life_ms = life

    def _check_here(self, pair: Pair) -> None:
        """A pair with no cell here may live elsewhere (moved) or be on its way (expected)."""
        moved_to = self.moved.get(pair)
        if moved_to is not None:
            raise CellMoved(pair[0], pair[1], moved_to)
        if pair in self.expecting:
            raise CellAdopting(*pair)

    def _existing_cell(self, sku: str, site: str) -> Cell | None:
        """For reads: unknown sku or site is NOT_FOUND; a known pair with no stock is empty."""
        cell = self.cells.get((sku, site))
        if cell is not None:
            return cell
        self._check_here((sku, site))
        if sku not in self.skus:
            raise NotFound("sku", sku)
        if site not in self.sites:
            raise NotFound("site", site)
        return None

    def _register(self, header: HoldHeader, now_ms: int) -> HoldHeader:
        existing = self.headers.get(header.hold_id)
        if existing is not None:
            if (existing.request_id, existing.pairs) != (header.request_id, header.pairs):
                differs = ",".join(
                    name
                    for name, same in (
                        ("request_id", existing.request_id == header.request_id),
                        ("lines", existing.pairs == header.pairs),
                    )
                    if not same
                )
                raise RequestConflict(header.hold_id, "hold id", differs)
            return existing
        self._prune_headers(now_ms)
        if len(self.headers) >= HEADER_MAX:
            # Never evict the header of a hold that may still be live: refuse instead.
            raise Overloaded(f"hold index of shard {self.name}", HEADER_MAX)
        header = replace(header, expires_at_ms=now_ms + header.ttl_ms)
        self.headers[header.hold_id] = header
        return header

    def _prune_headers(self, now_ms: int) -> None:
        """Forget headers of holds resolved long ago (their parts are pruned by then too)."""
        horizon = now_ms - HEADER_RETENTION_MS
        headers = self.headers
        while headers and next(iter(headers.values())).expires_at_ms < horizon:
            headers.popitem(last=False)

    def _scan(self, op: ScanCells, now_ms: int) -> list[tuple[str, str, SliceRow]]:
        """This shard's rows, already summed by the query's grouping (so a limit never cuts
        a group's total short); more groups than the limit is refused, never truncated.
        Sums per site by status and/or owner come from the kept totals (a lookup)."""
        if answers_from_totals(op.group_by, op.filter, op.by_sku, op.skus):
            return self._scan_totals(op, now_ms)
        return self.scan_cells(op, now_ms)

    def _scan_totals(self, op: ScanCells, now_ms: int) -> list[tuple[str, str, SliceRow]]:
        """`scan_cells`'s answer from the per-site totals; a site the caller may see only
        some bins of is sliced cell by cell, as `scan_cells` would."""
        totals = self._totals
        if totals is None:
            totals = self._totals = SiteTotals(self.cells)
        totals.refresh(self.cells, now_ms)
        acc = GroupSums(op.limit, op.keep, op.after)
        for site in totals.sites():
            if op.sites and site not in op.sites:
                continue
            known = self.sites.get(site)
            org_path = known.org_path if known is not None else ""
            if op.org_prefix and (known is None or not org_covers(org_path, op.org_prefix)):
                continue
            granted = ("",) if op.scope is None else op.scope.bins_for(site, org_path)
            if granted == ("",):
                parts = totals.rows_of(site, op.group_by, op.filter)
            else:
                parts = [
                    (row.group, _total_of(row))
                    for p in totals.pairs_of(site)
                    for row in self._scoped_slice(op, site, self.cells[p], now_ms)
                ]
            for group, part in parts:
                total = acc.slot(("", site if op.by_site else "", group))
                if total is not None:
                    add_total(total, part)
        return acc.rows()

    def scan_cells(self, op: ScanCells, now_ms: int) -> list[tuple[str, str, SliceRow]]:
        """Every matching cell sliced now: the scan the kept totals must always agree with."""
        acc = GroupSums(op.limit, op.keep, op.after)
        for (sku, site), cell in self.cells.items():
            if op.skus and sku not in op.skus:
                continue
            if op.sites and site not in op.sites:
                continue
            if op.org_prefix:
                known = self.sites.get(site)
                if known is None or not org_covers(known.org_path, op.org_prefix):
                    continue
            for row in self._scoped_slice(op, site, cell, now_ms):
                total = acc.slot((sku if op.by_sku else "", site if op.by_site else "", row.group))
                if total is not None:
                    add_row(total, row)
        return acc.rows()

    def _scoped_slice(self, op: ScanCells, site: str, cell: Cell, now_ms: int) -> list[SliceRow]:
        """The cell's rows within the caller's grants: one slice per granted bin prefix
        (disjoint, so nothing is counted twice), each narrowed by the query's own prefix."""
        if op.scope is None:
            return cell.slice(now_ms, op.group_by, op.filter, op.bin_depth)
        known = self.sites.get(site)
        rows: list[SliceRow] = []
        for granted in op.scope.bins_for(site, known.org_path if known else ""):
            prefix = narrow(granted, op.filter.bin_prefix)
            if prefix is not None:
                filt = op.filter if prefix == op.filter.bin_prefix else replace(op.filter, bin_prefix=prefix)
                rows.extend(cell.slice(now_ms, op.group_by, filt, op.bin_depth))
        return rows

    def _adopt(self, op: Adopt) -> None:
        pair = (op.sku, op.site)
        self._before_change(pair)
        self.skus.update((s.sku, s) for s in op.skus)
        self.sites.update((s.site, s) for s in op.sites)
        cell = import_cell(op.cell, self.statuses, self.limits)
        self.cells[pair] = cell
        self.moved.pop(pair, None)
        self.expecting.discard(pair)
        if cell.ledger.active:
            self.with_holds[pair] = None

    def _hand_off(self, op: HandOff) -> tuple[CellState, tuple[Sku, ...], tuple[Site, ...]]:
        pair = (op.sku, op.site)
        self._before_change(pair)
        cell = self.cells.pop(pair, None)
        if cell is None:
            cell = self._cell(op.sku, op.site)  # an empty cell moves too, so the pin is exact
            del self.cells[pair]
        self.moved[pair] = op.to_shard
        self.with_holds.pop(pair, None)
        # Movements this batch made before the hand-off are journaled here, not there.
        self._touched.pop(pair, None)
        self._handed_off.extend(cell.drain())
        return export_cell(cell), tuple(self.skus.values()), tuple(self.sites.values())

    # ---- snapshots (engine.domain.state) ----

    def export_state(self) -> ShardState:
        """Everything replay would rebuild, as plain records; call between batches (drained).
        All at once: O(state) under the caller's turn. The host uses `begin_capture`."""
        capture = self.begin_capture()
        capture.step(budget_s=None)
        return capture.state()

    def begin_capture(self) -> SnapshotCapture:
        """Start a snapshot of the state as it is now, without stopping the shard: the
        catalog and the list of cells are copied now (cheap), the cells are exported later
        a few at a time (`SnapshotCapture.step`) — and a cell about to change before its
        turn is exported first (copy-on-write). Call between batches (drained)."""
        if self._touched or self._handed_off:
            raise InvariantViolation(f"shard {self.name} exported with undrained movements")
        if self._capture is not None and not self._capture.complete:
            raise InvariantViolation(f"shard {self.name} is already taking a snapshot")
        self._capture = SnapshotCapture(self)
        return self._capture

    def _before_change(self, pair: Pair) -> None:
        """Every change to an existing cell passes here first: a snapshot being taken
        needs the cell as it was at the snapshot's point, and the kept totals recompute it."""
        if self._totals is not None:
            self._totals.mark(pair)
        capture = self._capture
        if capture is not None:
            if capture.complete:
                self._capture = None  # done: stop paying for it on every change
            else:
                capture.before_change(pair)

    @classmethod
    def from_state(
        cls, state: ShardState, statuses: StatusDictionary = DEFAULT_DICTIONARY, limits: CellLimits = CellLimits()
    ) -> ShardCore:
        """The shard an export was taken of, under this release's configuration."""
        core = cls(state.name, statuses, limits)
        core.skus = {s.sku: s for s in state.skus}
        core.sites = {s.site: s for s in state.sites}
        core.headers = OrderedDict((h.hold_id, h) for h in state.headers)
        core.moved = {(m.sku, m.site): m.to_shard for m in state.moved}
        core.expecting = set(state.expecting)
        core.with_holds = dict.fromkeys(state.with_holds)
        core.cells = {(c.sku, c.site): import_cell(c, statuses, limits) for c in state.cells}
        return core

    def record_count(self) -> int:
        """How many records a snapshot of the shard writes: what its cost is proportional to."""
        return sum(cell.records() for cell in self.cells.values())

    def sweep_due(self, now_ms: int) -> bool:
        """Is any hold past its TTL? (Read-only: the sweeper journals a Sweep only then.)"""
        cells = self.cells
        return any((cell := cells.get(pair)) is None or cell.next_expiry_ms <= now_ms for pair in self.with_holds)

    def sweep(self, now_ms: int, max_cells: int = 10_000) -> int:
        """Release expired holds (bounded work per call); returns the movements made."""
        made = 0
        for pair in list(self.with_holds)[:max_cells]:
            cell = self.cells.get(pair)
            if cell is None:
                del self.with_holds[pair]
                continue
            self._before_change(pair)
            self._touched[pair] = cell
            made += len(cell.expire_due(now_ms))
            if not cell.ledger.active:
                del self.with_holds[pair]
        return made

    def state_hash(self) -> str:
        """A digest of everything replay must reproduce (not caches, not the dedupe window's
        insertion timing): catalog, hold headers, hand-offs and every cell's ledger."""
        digest = hashlib.blake2b(digest_size=16)
        for name, value in (
            ("skus", sorted(self.skus.items())),
            ("sites", sorted(self.sites.items())),
            ("headers", sorted(self.headers.items())),
            ("moved", sorted(self.moved.items())),
        ):
            digest.update(repr((name, value)).encode())
        for pair in sorted(self.cells):
            ledger = self.cells[pair].ledger
            digest.update(
                repr(
                    (
                        pair,
                        ledger.seq,
                        sorted(ledger.quants.items()),
                        sorted((k.value, v) for k, v in ledger.externals.items() if v),
                        sorted(ledger.lots.items()),
                        sorted((k, sorted(p.allocations.items()), p.expires_at_ms) for k, p in ledger.active.items()),
                    )
                ).encode()
            )
        return digest.hexdigest()

    def drain(self) -> list[Movement]:
        """The movements made since the last drain, cell by cell in the order they were
        first touched (deterministic: replay must produce the very same sequence)."""
        out, self._handed_off = self._handed_off, []
        for cell in self._touched.values():
            if cell.outbox:
                out.extend(cell.drain())
        self._touched.clear()
        return out


class SnapshotCapture:
    """A snapshot of one shard at one point (between two batches), taken incrementally.

    Cells are independent, so the state at the point is: the catalog, headers and marks
    copied at the point (small, immutable records), plus each cell exported either by
    `step` while it is still unchanged, or by `before_change` just before its first change
    after the point. The shard keeps serving between steps."""

    def __init__(self, core: ShardCore) -> None:
        self.name = core.name
        self._skus = tuple(core.skus.values())
        self._sites = tuple(core.sites.values())
        self._headers = tuple(core.headers.values())  # frozen records: sharing them is safe
        self._moved = tuple(MovedPair(sku, site, to) for (sku, site), to in core.moved.items())
        self._expecting = tuple(sorted(core.expecting))  # a set: sorted, so exports compare equal
        self._with_holds = tuple(core.with_holds)
        self._order = tuple(core.cells)  # the cells' order at the point (it decides scan order)
        self._todo: dict[Pair, Cell] = dict(core.cells)
        self._done: dict[Pair, CellState] = {}
        self.records = 0  # of the cells exported so far (Cell.records): the state's size once complete

    @property
    def complete(self) -> bool:
        return not self._todo

    @property
    def remaining(self) -> int:
        return len(self._todo)

    def before_change(self, pair: Pair) -> None:
        cell = self._todo.pop(pair, None)
        if cell is not None:
            self.records += cell.records()
            self._done[pair] = export_cell(cell)

    def step(self, budget_s: float | None = 0.002) -> bool:
        """Export unchanged cells for about `budget_s` seconds (None: all); True when done."""
        todo, done = self._todo, self._done
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        while todo:
            pair, cell = todo.popitem()
            self.records += cell.records()
            done[pair] = export_cell(cell)  # µs for a small cell, ms for one of 10³ quants
            if deadline is not None and time.perf_counter() >= deadline:
                break
        return not todo

    def release(self, budget_s: float | None = 0.002) -> bool:
        """Drop exported cells for about `budget_s` seconds (None: all); True when none is
        left. A snapshot of 10⁶ quants is millions of records: freeing them at once stops
        the shard for as long as making them did, so they go a few cells at a time once
        the snapshot is saved. A capture not complete is abandoned (no more copying)."""
        self._todo.clear()
        self._order = ()
        done = self._done
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        while done:
            done.popitem()
            if deadline is not None and time.perf_counter() >= deadline:
                break
        return not done

    def state(self) -> ShardState:
        if self._todo:
            raise InvariantViolation(f"snapshot of shard {self.name} read before it was complete")
        return ShardState(
            name=self.name,
            skus=self._skus,
            sites=self._sites,
            headers=self._headers,
            moved=self._moved,
            expecting=self._expecting,
            with_holds=self._with_holds,
            cells=tuple(self._done[pair] for pair in self._order),
        )
