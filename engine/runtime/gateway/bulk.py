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

from engine.domain.commands import Receive, Received, check_caller_id, validate
from engine.domain.errors import DomainError, FieldViolation, Internal, InvalidArgument, Unavailable
from engine.domain.shard import RECEIVE_BULK_MAX, CellAdopting, CellMoved, ReceiveBulk
from engine.domain.statuses import StatusDictionary
from engine.runtime.batcher import SendBatch
from engine.runtime.gateway.router import Router, ShardFactory

BULK_IN_FLIGHT_PER_SHARD = 4  # bulk calls awaiting one shard (each ≤ RECEIVE_BULK_MAX receipts)
BULK_MAX_RECEIPTS = 16 * RECEIVE_BULK_MAX  # receipts in one call of `receive`

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


class BulkReceiver:
    def __init__(
        self, router: Router, senders: Mapping[str, SendBatch], factory: ShardFactory, statuses: StatusDictionary
    ) -> None:
        self._router = router
        self._senders = dict(senders)
        self._factory = factory
        self._statuses = statuses
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def receive(self, cmds: Sequence[Receive]) -> list[BulkResult]:
        """Each receipt's answer or refusal, in the order given."""
        if len(cmds) > BULK_MAX_RECEIPTS:
            raise InvalidArgument([FieldViolation("receipts", f"at most {BULK_MAX_RECEIPTS} per call")])
        results: list[BulkResult | None] = [None] * len(cmds)
        by_shard: dict[str, list[int]] = {}
        directory = self._router.directory
        for i, cmd in enumerate(cmds):
            refusal = check_receipt(cmd, self._statuses)
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
