"""Bulk receipts — a bulk load's lots — at one shard call per shard (DESIGN.md §7).

The receipts are validated here, once. Those of one shard travel together as ReceiveBulk
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
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from engine.domain.commands import (
    MAX_QTY,
    RECEIVE_SOURCES,
    Receive,
    Received,
    check_caller_id,
    check_id,
    validate,
)
from engine.domain.errors import DomainError, FieldViolation, Internal, InvalidArgument, Unavailable
from engine.domain.model import External
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
        if len(cmds) > BULK_MAX_RECEIPTS:
            raise InvalidArgument([FieldViolation("receipts", f"at most {BULK_MAX_RECEIPTS} per call")])
        results: list[BulkResult | None] = [None] * len(cmds)
        by_shard: dict[str, list[int]] = {}
        directory = self._router.directory
        for i, cmd in enumerate(cmds):
            refusal = self._checks.check(cmd)
            if refusal is not None:
                results[i] = refusal
            else:
                by_shard.setdefault(directory.shard_for(cmd.sku, cmd.site), []).append(i)
        parts = [(name, part) for name, rows in by_shard.items() for part in even_parts(rows)]
        answers = await asyncio.gather(*(self._send(name, [cmds[i] for i in rows]) for name, rows in parts))
        moved: list[int] = []
        for (_, rows), answer in zip(parts, answers, strict=True):
            for i, result in zip(rows, answer, strict=True):
                if isinstance(result, CellMoved | CellAdopting):
                    moved.append(i)
                else:
                    results[i] = result
        if moved:
            await self._follow(cmds, moved, results)
        return [r if r is not None else Internal("a receipt got no answer") for r in results]

    async def _send(self, name: str, cmds: list[Receive]) -> list[BulkResult]:
        """One shard call for the receipts; a failed call refuses them all as UNAVAILABLE
        (not applied, or applied and answered again from the idempotency window on a retry)."""
        slots = self._slots.setdefault(name, asyncio.Semaphore(BULK_IN_FLIGHT_PER_SHARD))
        async with slots:
            try:
                send = self._senders.get(name)
                if send is None:
                    send = self._senders[name] = await self._factory(name)
                (answer,) = await send([ReceiveBulk(tuple(cmds))])
            except Exception as exc:  # the shard (process) failed: nothing was acknowledged
                answer = exc if isinstance(exc, Unavailable) else Unavailable(f"shard {name}: {exc}")
        return _per_receipt(answer, cmds)

    async def _follow(self, cmds: Sequence[Receive], rows: list[int], results: list[BulkResult | None]) -> None:
        """Receipts of pairs that moved: one by one through the router, which follows them."""
        answers = await asyncio.gather(
            *(self._router.to_pair(cmds[i].sku, cmds[i].site, cmds[i], None) for i in rows), return_exceptions=True
        )
        for i, answer in zip(rows, answers, strict=True):
            results[i] = answer if isinstance(answer, Received | DomainError) else Unavailable(str(answer))


def even_parts(rows: list[int]) -> list[list[int]]:
    """Rows cut into the fewest parts of at most RECEIVE_BULK_MAX, of even sizes (1,030
    rows make two of 515, not 1,024 and a stray 6 that would cost a journal entry)."""
    parts = -(-len(rows) // RECEIVE_BULK_MAX)
    size = -(-len(rows) // parts) if parts else 0
    return [rows[k : k + size] for k in range(0, len(rows), size)] if rows else []


def _per_receipt(answer: Any, cmds: Sequence[Receive]) -> list[BulkResult]:
    """The shard's answer to a ReceiveBulk — a refusal or None (received) per receipt, or
    one refusal of them all — as each receipt's answer."""
    if isinstance(answer, list) and len(answer) == len(cmds):
        pairs = zip(cmds, answer, strict=True)
        return [Received(cmd.lot_id, cmd.qty) if result is None else result for cmd, result in pairs]
    if isinstance(answer, DomainError):
        return [answer] * len(cmds)
    log.error("unexpected answer to a bulk receipt", answer_type=type(answer).__name__)
    return [Internal("unexpected answer to a bulk receipt")] * len(cmds)
