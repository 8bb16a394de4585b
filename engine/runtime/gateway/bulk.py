"""Bulk receipts — a bulk load's lots — at one shard call per shard (DESIGN.md §7).

The receipts come as columns (engine.domain.receipts) and are validated here, once, a
column at a time when they are all sane (row by row, with each refusal, when not); they
are routed once per pair and cut by shard a column at a time, so no object is made per
lot on their way to the shards. Those of one shard travel together as ReceiveBulk
ops of at most RECEIVE_BULK_MAX receipts, each op in a shard call of its own, straight to
the shard: no micro-batcher (the op already is a batch, and one call — one Ray actor call
in a cluster — carries it), at most BULK_IN_FLIGHT_PER_SHARD calls at once per shard. The
shard applies the receipts in order, one by one, each idempotent by its request id, and
journals them as one entry (engine.runtime.host), so every receipt has its own answer or
refusal and none is half-applied.

A receipt whose pair moved (a hot pair pinned to a shard of its own) is answered CellMoved
or CellAdopting by the old shard: it then goes the ordinary way, through the router, which
follows the pair.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from engine.domain.commands import (
    MAX_ID_LEN,
    MAX_QTY,
    RECEIVE_SOURCES,
    SALE_SUFFIXES,
    UNDO_SUFFIX,
    Receive,
    Received,
    check_caller_id,
    check_id,
    validate,
)
from engine.domain.errors import DomainError, FieldViolation, Internal, InvalidArgument, Unavailable
from engine.domain.model import External
from engine.domain.receipts import ReceiptColumns
from engine.domain.shard import RECEIVE_BULK_MAX, CellAdopting, CellMoved, ReceiveBulk
from engine.domain.statuses import StatusDictionary
from engine.runtime.batcher import SendBatch
from engine.runtime.gateway.router import Router, ShardFactory

BULK_IN_FLIGHT_PER_SHARD = 4  # bulk calls awaiting one shard (each ≤ RECEIVE_BULK_MAX receipts)
BULK_MAX_RECEIPTS = 16 * RECEIVE_BULK_MAX  # receipts in one call of `receive`
SANE_CONTEXTS_MAX = 65_536  # (sku, site, bin, status, owner, source) remembered as sane
MAX_DOC_REF = 256  # engine.domain.commands.validate's bound on doc_ref

log = structlog.get_logger("lotwise.gateway")

BulkResult = Received | DomainError


def check_receipt(cmd: Receive, statuses: StatusDictionary) -> DomainError | None:
    """Why the receipt is refused before it costs a shard call (None: it is sane)."""
    try:
        validate(cmd, statuses)
    except DomainError as err:
        return err
    out: list[FieldViolation] = []
    check_caller_id(cmd.request_id, "request_id", out)
    return InvalidArgument(out) if out else None


Context = tuple[str, str, str, str, str, object]


class ReceiptChecks:
    """`check_receipt` at a bulk load's pace, with the very same answers.

    A bulk load's lots share a few contexts — (sku, site, bin, status, owner, source) —
    and differ in their request id, lot id, quantity and times. Every check of
    `validate` looks at one field alone, so a context found sane once is sane for every
    lot that carries it: only the lot's own fields are checked then. Anything that is
    not plainly sane takes the full check, which says exactly what is wrong."""

    __slots__ = ("_contexts", "_statuses")

    def __init__(self, statuses: StatusDictionary) -> None:
        self._statuses = statuses
        self._contexts: set[Context] = set()

    def check(self, cmd: Receive) -> DomainError | None:
        """Why the receipt is refused before it costs a shard call (None: it is sane)."""
        context = (cmd.sku, cmd.site, cmd.bin, cmd.status, cmd.owner, cmd.source)
        if context in self._contexts and _own_fields_sane(cmd):
            return None
        refusal = check_receipt(cmd, self._statuses)
        if refusal is None:
            if len(self._contexts) >= SANE_CONTEXTS_MAX:
                self._contexts.clear()  # bounded: a load of many contexts only checks more
            self._contexts.add(context)
        return refusal

    def check_columns(self, receipts: ReceiptColumns) -> dict[int, DomainError]:
        """`check` of every row: the refused rows by index (none: all sane). A load whose
        rows are all sane — the usual case — is checked a column at a time; otherwise
        row by row, which says exactly what is wrong with each."""
        try:
            if self._columns_sane(receipts):
                return {}
        except TypeError:  # a value of another type than its field's (not from the wire): row by row
            pass
        refused: dict[int, DomainError] = {}
        for row in range(len(receipts)):
            refusal = self.check(receipts.receipt(row))
            if refusal is not None:
                refused[row] = refusal
        return refused

    def _columns_sane(self, receipts: ReceiptColumns) -> bool:
        """Every row passes `check` (False: maybe not). A context not seen before is
        checked in full on its first row, and remembered when sane; the lots' own fields
        are checked column by column (`_own_columns_sane`)."""
        contexts = list(
            zip(
                receipts.sku, receipts.site, receipts.bin, receipts.status, receipts.owner, receipts.source, strict=True
            )
        )
        new = set(contexts).difference(self._contexts)
        if new:
            rows = len(contexts)
            first = dict(zip(reversed(contexts), range(rows - 1, -1, -1), strict=True))  # the earliest row wins
            for context in new:
                if self.check(receipts.receipt(first[context])) is not None:
                    return False
        return _own_columns_sane(receipts)


_ID_CHARS = rf"[A-Za-z0-9._:\-@#+]{{1,{MAX_ID_LEN}}}"  # commands._ID_RE's characters, check_id's length
_IDS_RE = re.compile(rf"{_ID_CHARS}(?:\n{_ID_CHARS})*")  # ids one per line, each as check_id wants
_RESERVED_ENDINGS = tuple(f"{suffix}\n" for suffix in (*SALE_SUFFIXES, UNDO_SUFFIX))  # check_caller_id's
_SOURCES = frozenset(RECEIVE_SOURCES)


def _ids_sane(ids: Sequence[str], caller: bool) -> bool:
    """check_id (and with `caller`, check_caller_id) passes every id, in one regex match
    over the ids one per line ("\n" is no id character: a line break inside an id shows as
    one line too many)."""
    lines = "\n".join(ids)
    if lines.count("\n") != len(ids) - 1 or not _IDS_RE.fullmatch(lines):
        return False
    ended = lines + "\n"
    return not (caller and any(ending in ended for ending in _RESERVED_ENDINGS))


def _own_columns_sane(receipts: ReceiptColumns) -> bool:
    """`_own_fields_sane` of every row, a column at a time."""
    if not len(receipts):
        return True
    times = (receipts.expires_at_ms, receipts.received_at_ms, receipts.opened_at_ms)
    return (
        _ids_sane(receipts.request_id, caller=True)
        and _ids_sane(receipts.lot_id, caller=False)
        and set(map(type, receipts.qty)) == {int}  # not a bool, not a float
        and min(receipts.qty) > 0
        and max(receipts.qty) <= MAX_QTY
        and all(set(map(type, column)) == {int} and min(column) >= 0 for column in times)
        and max(map(len, receipts.doc_ref)) <= MAX_DOC_REF
        and set(receipts.finance) == {None}
        and set(map(type, receipts.source)) == {External}  # a plain "@supplier" equals the member, but is refused
        and _SOURCES.issuperset(receipts.source)
    )


def _own_fields_sane(cmd: Receive) -> bool:
    """The fields a lot does not share with others pass every check of `check_receipt`
    (False: maybe not — the full check decides)."""
    out: list[FieldViolation] = []
    check_id(cmd.request_id, "request_id", out)
    check_caller_id(cmd.request_id, "request_id", out)
    check_id(cmd.lot_id, "lot_id", out)
    qty, times = cmd.qty, (cmd.expires_at_ms, cmd.received_at_ms, cmd.opened_at_ms)
    return (
        not out
        and type(qty) is int
        and 0 < qty <= MAX_QTY
        and all(type(t) is int and t >= 0 for t in times)
        and len(cmd.doc_ref) <= MAX_DOC_REF
        and cmd.finance is None
        and type(cmd.source) is External  # a plain "@supplier" equals the member, but is refused
        and cmd.source in RECEIVE_SOURCES
    )


class BulkReceiver:
    def __init__(
        self, router: Router, senders: Mapping[str, SendBatch], factory: ShardFactory, statuses: StatusDictionary
    ) -> None:
        self._router = router
        self._senders = dict(senders)
        self._factory = factory
        self._checks = ReceiptChecks(statuses)
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def receive(self, cmds: Sequence[Receive]) -> list[BulkResult]:
        """Each receipt's answer or refusal, in the order given."""
        answers = await self.receive_columns(ReceiptColumns.of(cmds))
        return [
            Received(cmd.lot_id, cmd.qty) if answer is None else answer
            for cmd, answer in zip(cmds, answers, strict=True)
        ]

    async def receive_columns(self, receipts: ReceiptColumns) -> list[DomainError | None]:
        """Each receipt's refusal, or None when it was received (Received(lot_id, qty)),
        in the order given."""
        if len(receipts) > BULK_MAX_RECEIPTS:
            raise InvalidArgument([FieldViolation("receipts", f"at most {BULK_MAX_RECEIPTS} per call")])
        refused = self._checks.check_columns(receipts)
        results: list[DomainError | _NoAnswer | None] = [_NO_ANSWER] * len(receipts)
        for row, refusal in refused.items():
            results[row] = refusal
        parts = [(name, part) for name, rows in self._by_shard(receipts, refused).items() for part in even_parts(rows)]
        answers = await asyncio.gather(*(self._send(name, receipts.take(rows)) for name, rows in parts))
        moved: list[int] = []
        for (_, rows), answer in zip(parts, answers, strict=True):
            for row, result in zip(rows, answer, strict=True):
                if isinstance(result, CellMoved | CellAdopting):
                    moved.append(row)
                else:
                    results[row] = result
        if moved:
            await self._follow(receipts, moved, results)
        return [Internal("a receipt got no answer") if r is _NO_ANSWER else r for r in results]  # type: ignore[misc]

    def _by_shard(self, receipts: ReceiptColumns, refused: Mapping[int, DomainError]) -> dict[str, list[int]]:
        """The rows not refused, by the shard of their pair (the directory asked once per pair)."""
        shard_for = self._router.directory.shard_for
        shards: dict[tuple[str, str], str] = {}
        by_shard: dict[str, list[int]] = {}
        for row, pair in enumerate(zip(receipts.sku, receipts.site, strict=True)):
            if refused and row in refused:
                continue
            name = shards.get(pair)
            if name is None:
                name = shards[pair] = shard_for(*pair)
            rows = by_shard.get(name)
            if rows is None:
                rows = by_shard[name] = []
            rows.append(row)
        return by_shard

    async def _send(self, name: str, receipts: ReceiptColumns) -> list[DomainError | None]:
        """One shard call for the receipts; a failed call refuses them all as UNAVAILABLE
        (not applied, or applied and answered again from the idempotency window on a retry)."""
        slots = self._slots.setdefault(name, asyncio.Semaphore(BULK_IN_FLIGHT_PER_SHARD))
        async with slots:
            try:
                send = self._senders.get(name)
                if send is None:
                    send = self._senders[name] = await self._factory(name)
                (answer,) = await send([ReceiveBulk(columns=receipts)])
            except Exception as exc:  # the shard (process) failed: nothing was acknowledged
                answer = exc if isinstance(exc, Unavailable) else Unavailable(f"shard {name}: {exc}")
        return _per_receipt(answer, len(receipts))

    async def _follow(
        self, receipts: ReceiptColumns, rows: list[int], results: list[DomainError | _NoAnswer | None]
    ) -> None:
        """Receipts of pairs that moved: one by one through the router, which follows them."""
        cmds = [receipts.receipt(row) for row in rows]
        answers = await asyncio.gather(
            *(self._router.to_pair(cmd.sku, cmd.site, cmd, None) for cmd in cmds), return_exceptions=True
        )
        for row, answer in zip(rows, answers, strict=True):
            if isinstance(answer, Received):
                results[row] = None
            else:
                results[row] = answer if isinstance(answer, DomainError) else Unavailable(str(answer))


class _NoAnswer:
    """A receipt's place before its answer is known."""


_NO_ANSWER = _NoAnswer()


def even_parts(rows: list[int]) -> list[list[int]]:
    """Rows cut into the fewest parts of at most RECEIVE_BULK_MAX, of even sizes (1,030
    rows make two of 515, not 1,024 and a stray 6 that would cost a journal entry)."""
    parts = -(-len(rows) // RECEIVE_BULK_MAX)
    size = -(-len(rows) // parts) if parts else 0
    return [rows[k : k + size] for k in range(0, len(rows), size)] if rows else []


def _per_receipt(answer: Any, n: int) -> list[DomainError | None]:
    """The shard's answer to a ReceiveBulk of n receipts — a refusal or None (received)
    per receipt, or one refusal of them all — as each receipt's answer."""
    if isinstance(answer, list) and len(answer) == n:
        return answer
    if isinstance(answer, DomainError):
        return [answer] * n
    log.error("unexpected answer to a bulk receipt", answer_type=type(answer).__name__)
    return [Internal("unexpected answer to a bulk receipt")] * n
