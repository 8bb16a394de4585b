"""A multi-line hold's commands for the cells of one shard, as one op (DESIGN.md §5–7).

A hold of 40 lines spans 40 cells, and each cell is the single writer of its part, so
the hold is 40 Reserves (then 40 Commits, or Releases). Sent one op each, every part
cost the gateway a future and the shard call a pickled command and a pickled answer —
a dataclass, its lines, its HoldView and that view's allocations, each pickled field by
field — which was more than the cells' own work (bench/README.md, "Many-line holds").
`HoldParts` carries one hold's commands of one kind for the cells of one shard: one op,
one future, one pickle of plain columns; its answers come back as `PartAnswers`, one per
command, pickled as plain rows too.

Nothing else changes: the shard applies the commands one by one, in order, exactly as
if each had come alone (each its own answer or refusal, each idempotent by its request
id), and the journal records them as the plain commands they are (`commands`), so replay,
followers and business events see what they always saw. All-or-nothing across cells
stays the coordinator's (engine.runtime.gateway.holds), as before — with one help from
the shard: a commit (release) whose parts all live on one shard is sent `all_or_nothing`,
and the shard pre-checks every part as the coordinator would (`checks`, `check_part`)
before it applies any, in the same batch (nothing runs between the two on a shard), and
applies none if one would be refused (`vetoed`: the journal then records nothing of it).
One shard round trip (and one wait for the journal) instead of a read, then the commands.

A one-call sale of one pair (engine.runtime.gateway.sales; the op takes any parts of one
shard) goes as one HoldParts of kind SELL: the shard applies each pair's Reserve, then —
when every one held and the pre-check passes — each pair's Commit, or else the abort of
every part it held, all in the same batch and one journal entry (the commands it applied,
`applied`: replay applies them as they are). The parts' ids are the sale's
(engine.domain.commands.sale_parts), so a retry is answered by the cells' windows, and
nothing is ever left held between the reserve and the commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, cast

from engine.domain.commands import (
    SALE_COMMIT_SUFFIX,
    SALE_VOID_SUFFIX,
    Command,
    Commit,
    Committed,
    Release,
    Released,
    Reserve,
    Reserved,
    ReserveLine,
    SalePart,
    Strategy,
    derived_id,
)
from engine.domain.errors import DeadlineExceeded, DomainError, InvariantViolation, Unavailable
from engine.domain.holds import check_resolvable, is_hold_aborted
from engine.domain.model import Allocation, Finance, HoldState, HoldView

MAX_PARTS = 256  # commands of one HoldParts: a hold's lines (engine.domain.holds.MAX_LINES)


class PartKind(StrEnum):
    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"
    READ = "read"  # each part's HoldView (None where the cell has no part)
    # The pre-check of a commit (release): per part, is it active, and the refusal the
    # commit (release) would meet there, if any (engine.domain.holds.check_resolvable).
    CHECK_COMMIT = "check_commit"
    CHECK_RELEASE = "check_release"
    # A one-shard sale: each part's Reserve, then every part's Commit or every held part's
    # abort (the head's request id is the sale's; the parts' ids derive from it).
    SELL = "sell"


class ReadPart:
    """A hold part to read (a HoldParts of kind READ): which cell."""

    __slots__ = ("hold_id", "site", "sku")

    def __init__(self, sku: str, site: str, hold_id: str) -> None:
        self.sku, self.site, self.hold_id = sku, site, hold_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReadPart) and (self.sku, self.site, self.hold_id) == (
            other.sku,
            other.site,
            other.hold_id,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReadPart({self.sku!r}, {self.site!r}, {self.hold_id!r})"


class CheckPart:
    """A hold part to pre-check (a HoldParts of kind CHECK_*): would resolving it to `done`,
    taking `qty` there (None: all that is held, or a release), be refused?"""

    __slots__ = ("done", "hold_id", "qty", "site", "sku")

    def __init__(self, sku: str, site: str, hold_id: str, done: HoldState, qty: int | None = None) -> None:
        self.sku, self.site, self.hold_id, self.done, self.qty = sku, site, hold_id, done, qty

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CheckPart) and (self.sku, self.site, self.hold_id, self.done, self.qty) == (
            other.sku,
            other.site,
            other.hold_id,
            other.done,
            other.qty,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CheckPart({self.sku!r}, {self.site!r}, {self.hold_id!r}, {self.done.value}, {self.qty})"


PartCommand = Reserve | Commit | Release | ReadPart | CheckPart

# What every command of one HoldParts shares, sent once: (request_id, hold_id, doc_ref,
# ttl_ms, finance, abort). A command's own row is (sku, site, lines | qty | None).
_Head = tuple[str, str, str, int, Finance | None, bool]


class HoldParts:
    """One hold's commands of one kind for cells of one shard (at most MAX_PARTS), in the
    order they apply; built from the commands (`of`) or from columns (a shard call)."""

    __slots__ = ("_commands", "_head", "_rows", "all_or_nothing", "applied", "kind", "vetoed")

    def __init__(
        self, kind: PartKind, head: _Head, rows: Sequence[tuple[Any, ...]], all_or_nothing: bool = False
    ) -> None:
        if not 0 < len(rows) <= MAX_PARTS:
            raise InvariantViolation(f"a HoldParts has 1..{MAX_PARTS} commands, not {len(rows)}")
        if all_or_nothing and kind not in (PartKind.COMMIT, PartKind.RELEASE):
            raise InvariantViolation(f"only a commit or release is sent all or nothing, not a {kind.value}")
        self.kind = kind
        self._head = head
        self._rows = tuple(rows)
        self._commands: tuple[PartCommand, ...] | None = None
        self.all_or_nothing = all_or_nothing  # pre-check every part, apply none if one is refused
        self.vetoed = False  # set by the shard that refused it all: nothing applied, nothing journaled
        # A SELL: the commands the shard applied, in order (what the journal records).
        self.applied: list[Command] = []

    @classmethod
    def of(cls, commands: Sequence[PartCommand], all_or_nothing: bool = False) -> HoldParts:
        """Commands of one hold and one kind, sharing their ids, doc_ref, TTL and finance
        (the coordinator makes them so); anything else is a bug, refused here."""
        first = commands[0]
        kind, head = _kind_and_head(first)
        rows = [_row(kind, cmd) for cmd in commands]
        parts = cls(kind, head, rows, all_or_nothing)
        parts._commands = tuple(commands)
        if any(_kind_and_head(cmd) != (kind, head) for cmd in commands):
            raise InvariantViolation("the commands of one HoldParts must share kind, ids, TTL and finance")
        return parts

    @classmethod
    def sale(cls, request_id: str, parts: Sequence[SalePart]) -> HoldParts:
        """A sale's parts (engine.domain.commands.sale_parts, all on one shard) as one SELL;
        `request_id` is the sale's, which the parts' ids derive from."""
        first = parts[0].reserve
        head: _Head = (request_id, first.hold_id, first.doc_ref, first.ttl_ms, first.finance, False)
        made = cls(PartKind.SELL, head, [_row(PartKind.RESERVE, part.reserve) for part in parts])
        if made.sale_parts() != tuple(parts):  # as the shard will build them from the columns
            raise InvariantViolation("a SELL's parts must be one sale's (engine.domain.commands.sale_parts)")
        return made

    def sale_parts(self) -> tuple[SalePart, ...]:
        """A SELL's parts: each pair's Reserve and the Commit of all of it."""
        request_id, hold_id, doc_ref, _, finance, _ = self._head
        commit_id = derived_id(request_id, SALE_COMMIT_SUFFIX)
        reserves = cast(tuple[Reserve, ...], self.commands)
        return tuple(SalePart(r, Commit(commit_id, r.sku, r.site, hold_id, None, doc_ref, finance)) for r in reserves)

    def voids(self) -> tuple[Release, ...]:
        """A SELL's roll-back: the abort of each part, under the id a refused sale's roll-back
        has always had (its hold id and #void)."""
        _, hold_id, doc_ref, _, _, _ = self._head
        void_id = derived_id(hold_id, SALE_VOID_SUFFIX)
        return tuple(Release(void_id, sku, site, hold_id, doc_ref, abort=True) for sku, site, _ in self._rows)

    @property
    def commands(self) -> tuple[PartCommand, ...]:
        """The commands, built once from the columns (on the shard: what cells and journal take)."""
        if self._commands is None:
            self._commands = tuple(_command(self.kind, self._head, row) for row in self._rows)
        return self._commands

    @property
    def mutating(self) -> bool:
        return self.kind in (PartKind.RESERVE, PartKind.COMMIT, PartKind.RELEASE, PartKind.SELL)

    def checks(self) -> tuple[CheckPart, ...]:
        """The pre-check of each part of a commit (release; a sale's commit of all that is
        held): what the coordinator would read."""
        done = HoldState.RELEASED if self.kind is PartKind.RELEASE else HoldState.COMMITTED
        hold_id = self._head[1]
        qty = self.kind is PartKind.COMMIT
        return tuple(CheckPart(sku, site, hold_id, done, own if qty else None) for sku, site, own in self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def weight(self) -> int:
        """What it weighs in a shard batch (engine.runtime.batcher): its commands (a SELL's
        reserve and commit of each part)."""
        return 2 * len(self._rows) if self.kind is PartKind.SELL else len(self._rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HoldParts) and (self.kind, self._head, self._rows, self.all_or_nothing) == (
            other.kind,
            other._head,
            other._rows,
            other.all_or_nothing,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HoldParts({self.kind.value}, {self._head[1]!r}, {len(self)} parts)"

    def __reduce__(self) -> tuple[Any, ...]:
        # Plain tuples of str and int: the C pickler does them without a Python call each.
        return (_hold_parts, (self.kind.value, self._head, self._rows, self.all_or_nothing))


def _hold_parts(kind: str, head: _Head, rows: tuple[tuple[Any, ...], ...], all_or_nothing: bool = False) -> HoldParts:
    return HoldParts(PartKind(kind), head, rows, all_or_nothing)


def _kind_and_head(cmd: PartCommand) -> tuple[PartKind, _Head]:
    match cmd:
        case Reserve():
            return PartKind.RESERVE, (cmd.request_id, cmd.hold_id, cmd.doc_ref, cmd.ttl_ms, cmd.finance, False)
        case Commit():
            return PartKind.COMMIT, (cmd.request_id, cmd.hold_id, cmd.doc_ref, 0, cmd.finance, False)
        case Release():
            return PartKind.RELEASE, (cmd.request_id, cmd.hold_id, cmd.doc_ref, 0, cmd.finance, cmd.abort)
        case ReadPart():
            return PartKind.READ, ("", cmd.hold_id, "", 0, None, False)
        case CheckPart():
            kind = PartKind.CHECK_COMMIT if cmd.done is HoldState.COMMITTED else PartKind.CHECK_RELEASE
            return kind, ("", cmd.hold_id, "", 0, None, False)
    raise InvariantViolation(f"{type(cmd).__name__} is not a hold part")


def _row(kind: PartKind, cmd: PartCommand) -> tuple[Any, ...]:
    if isinstance(cmd, Reserve):
        lines = tuple(
            (li.qty, li.strategy.value, li.lot_id, li.owner, li.min_shelf_life_days, li.bin_prefix) for li in cmd.lines
        )
        return (cmd.sku, cmd.site, lines)
    if isinstance(cmd, Commit | CheckPart):
        return (cmd.sku, cmd.site, cmd.qty)
    return (cmd.sku, cmd.site, None)


def _command(kind: PartKind, head: _Head, row: tuple[Any, ...]) -> PartCommand:
    request_id, hold_id, doc_ref, ttl_ms, finance, abort = head
    sku, site, own = row
    match kind:
        case PartKind.RESERVE | PartKind.SELL:  # a SELL's commands are its reserves (sale_parts)
            request_id = hold_id if kind is PartKind.SELL else request_id
            lines = tuple(
                ReserveLine(q, Strategy(s), lot, owner, life, prefix) for q, s, lot, owner, life, prefix in own
            )
            return Reserve(request_id, sku, site, hold_id, lines, ttl_ms, doc_ref, finance)
        case PartKind.COMMIT:
            return Commit(request_id, sku, site, hold_id, own, doc_ref, finance)
        case PartKind.RELEASE:
            return Release(request_id, sku, site, hold_id, doc_ref, abort, finance)
        case PartKind.READ:
            return ReadPart(sku, site, hold_id)
        case PartKind.CHECK_COMMIT:
            return CheckPart(sku, site, hold_id, HoldState.COMMITTED, own)
        case PartKind.CHECK_RELEASE:
            return CheckPart(sku, site, hold_id, HoldState.RELEASED, own)


# ---- answers ----

# Reserved | Committed | Released | HoldView | None | PartCheck, or the DomainError that refused it
PartAnswer = Any
# A CheckPart's answer: (is the part active, the refusal resolving it would meet or None).
PartCheck = tuple[bool, DomainError | None]


def veto(found: Sequence[PartCheck]) -> DomainError | None:
    """Of a commit's (release's) pre-checks, the refusal that stops every part, if any. When
    no part is active any more (a retry, or a hold already resolved) nothing is vetoed: the
    commands go as they are, and the cells answer retries from their idempotency window and
    others with the reason."""
    if not any(active for active, _ in found):
        return None
    return next((refusal for _, refusal in found if refusal is not None), None)


def sale_refusal(answers: Sequence[PartAnswer]) -> DomainError | None:
    """Of a sale's answers per part, the refusal that says why it was not made, if any: a
    definite one (e.g. INSUFFICIENT_STOCK) before HOLD_ABORTED (an earlier attempt was
    rolled back) before a retryable one (as the coordinator ranks a hold's refusals)."""

    def rank(refusal: DomainError) -> int:
        if isinstance(refusal, Unavailable | DeadlineExceeded):
            return 2
        return 1 if is_hold_aborted(refusal) else 0

    refusals = [a for a in answers if isinstance(a, DomainError)]
    return min(refusals, key=rank) if refusals else None


def check_part(cmd: CheckPart, view: HoldView | None) -> PartCheck:
    """Pre-check one part as its cell would refuse resolving it (and nothing else)."""
    active = view is not None and view.state is HoldState.ACTIVE
    try:
        check_resolvable(cmd.hold_id, (cmd.sku, cmd.site), view, cmd.done, cmd.qty)
    except DomainError as refusal:
        return active, refusal.with_traceback(None)
    return active, None


_VIEW, _RESERVED, _COMMITTED, _RELEASED, _NONE, _OTHER = range(6)


class PartAnswers(list[PartAnswer]):
    """A HoldParts' answers, one per command in order; pickled as plain rows (a HoldView
    and its allocations as tuples), so an answer costs no dataclass pickling either way."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_part_answers, (tuple(_answer_row(a) for a in self),))


def _part_answers(rows: Iterable[tuple[Any, ...]]) -> PartAnswers:
    return PartAnswers(_answer_of(row) for row in rows)


def _view_row(v: HoldView) -> tuple[Any, ...]:
    allocations = tuple((a.lot_id, a.bin, a.status, a.owner, a.qty, a.expires_at_ms) for a in v.allocations)
    return (
        v.hold_id,
        v.sku,
        v.site,
        v.state.value,
        allocations,
        v.held_qty,
        v.committed_qty,
        v.released_qty,
        v.created_at_ms,
        v.expires_at_ms,
    )


def _view_of(row: tuple[Any, ...]) -> HoldView:
    hold_id, sku, site, state, allocations, held, committed, released, created, expires = row
    return HoldView(
        hold_id,
        sku,
        site,
        HoldState(state),
        tuple(Allocation(*a) for a in allocations),
        held,
        committed,
        released,
        created,
        expires,
    )


def _answer_row(answer: PartAnswer) -> tuple[Any, ...]:
    match answer:
        case HoldView():
            return (_VIEW, _view_row(answer))
        case Reserved():
            return (_RESERVED, _view_row(answer.hold))
        case Committed():
            return (_COMMITTED, _view_row(answer.hold), answer.committed_qty, answer.released_qty)
        case Released():
            return (_RELEASED, _view_row(answer.hold), answer.released_qty)
        case None:
            return (_NONE,)
    return (_OTHER, answer)  # a refusal (or a bug's Internal): pickled as it is


def _answer_of(row: tuple[Any, ...]) -> PartAnswer:
    tag = row[0]
    if tag == _VIEW:
        return _view_of(row[1])
    if tag == _RESERVED:
        return Reserved(_view_of(row[1]))
    if tag == _COMMITTED:
        return Committed(_view_of(row[1]), row[2], row[3])
    if tag == _RELEASED:
        return Released(_view_of(row[1]), row[2])
    if tag == _NONE:
        return None
    return row[1]
