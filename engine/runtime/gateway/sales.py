"""The one-call sale: reserve and commit in one request, all or nothing (DESIGN.md §7).

A sale is applied as each pair's Reserve under an internal hold followed by its Commit
(engine.domain.commands.sale_parts), so cells, journal and business events need nothing
new. One pair (most POS orders) takes the fast path: both commands go to the pair's shard
back to back, usually in one micro-batch, so one journal append. Several pairs take the
coordinated path of multi-line holds (HoldCoordinator): every line held under the
internal hold, the parts pre-checked, then all committed; a refused line rolls back the
lines already held, so a refused sale leaves nothing held and nothing sold.

Exactly-once: the parts' ids derive from the sale's request id, so a retry is answered
from the cells' idempotency windows (a sale interrupted after its reserves is completed by
the retry); the same id with other lines is refused with RequestConflict under the sale's
own id. The fast path registers no hold header: like every single-cell command, its
request id is checked per pair.
"""

from __future__ import annotations

from typing import Any

import structlog

from engine.domain.commands import (
    SALE_VOID_SUFFIX,
    Committed,
    Release,
    SalePart,
    Sell,
    derived_id,
    sale_hold_id,
    sale_parts,
    validate,
    validate_sale,
)
from engine.domain.errors import DeadlineExceeded, DomainError, Internal, NotFound, RequestConflict, Unavailable
from engine.domain.model import HoldView
from engine.domain.statuses import StatusDictionary
from engine.runtime.gateway.holds import HoldCoordinator
from engine.runtime.gateway.router import Router
from engine.runtime.types import AggregateState, HoldLine, HoldSummary

log = structlog.get_logger("lotwise.gateway")


class SaleDesk:
    """Sells in one call: the fast path for one pair, the coordinated path for several."""

    def __init__(self, router: Router, holds: HoldCoordinator, statuses: StatusDictionary) -> None:
        self._router = router
        self._holds = holds
        self._statuses = statuses

    async def sell(self, sale: Sell, deadline: float | None) -> HoldSummary:
        """Reserve and commit every line; the summary is named by the sale's request id."""
        validate_sale(sale)  # the sale's own field names: bad input costs no shard call
        parts = sale_parts(sale)
        for part in parts:
            validate(part.reserve, self._statuses)
            validate(part.commit, self._statuses)
        try:
            if len(parts) == 1:
                views: tuple[HoldView, ...] = (await self._sell_one(parts[0], deadline),)
            else:
                views = await self._sell_coordinated(sale, parts[0], deadline)
        except RequestConflict as exc:
            # The parts' ids are the engine's: the caller reused the sale's request id.
            raise RequestConflict(sale.request_id, differs=exc.differs) from None
        return HoldSummary(sale.request_id, AggregateState.COMMITTED, views, 0)

    async def _sell_one(self, part: SalePart, deadline: float | None) -> HoldView:
        """Both commands back to back on one shard queue (order is kept per shard)."""
        reserved, committed = await self._send_pair(part, deadline)
        if isinstance(reserved, DomainError):
            raise reserved  # nothing held (or unknown: a retry completes it, the TTL ends it)
        if isinstance(committed, Committed):
            return committed.hold
        if isinstance(committed, DomainError) and not _outcome_unknown(committed):
            await self._void(part)  # the commit was refused: let go of what the reserve holds
        raise committed if isinstance(committed, DomainError) else Internal("a sale's commit answered nothing")

    async def _send_pair(self, part: SalePart, deadline: float | None) -> tuple[Any, Any]:
        """The Reserve under the caller's deadline; the Commit under none, so a reserve
        that was applied is always followed by its commit (never left held to its TTL)."""
        reserve, commit = part.reserve, part.commit
        pair = (reserve.sku, reserve.site)
        # Both are queued, in order, before either is awaited (send_all); the Commit's own
        # deadline is none. An op the batcher answers before the shard does (a deadline
        # that passed) is refused as a value below, like the shard's own refusals.
        reserved, committed = await self._router.send_all(
            [(pair, reserve), (pair, commit)], deadline, deadlines=[deadline, None], return_exceptions=True
        )
        for result in (reserved, committed):
            if isinstance(result, BaseException) and not isinstance(result, DomainError):
                raise result  # a bug, not an answer
        return reserved, committed

    async def _void(self, part: SalePart) -> None:
        """Roll back a fast-path sale whose commit was refused (best effort, like an abort)."""
        r = part.reserve
        void = Release(derived_id(r.request_id, SALE_VOID_SUFFIX), r.sku, r.site, r.hold_id, r.doc_ref, abort=True)
        result: Any = await self._router.to_pair(r.sku, r.site, void, None, essential=True)
        if isinstance(result, DomainError) and not isinstance(result, NotFound):
            log.warning("roll-back of a refused sale not applied", hold_id=r.hold_id, reason=str(result))

    async def _sell_coordinated(self, sale: Sell, first: SalePart, deadline: float | None) -> tuple[HoldView, ...]:
        """Hold every line under the internal hold (all or nothing), then commit all of it;
        once every line is held, the commit runs to the end whatever the caller's deadline."""
        hold_id = sale_hold_id(sale.request_id)
        lines = [HoldLine(sl.sku, sl.site, sl.line) for sl in sale.lines]
        reserve, commit = first.reserve, first.commit  # every part shares the ids and the TTL
        await self._holds.reserve(hold_id, hold_id, lines, reserve.ttl_ms, sale.doc_ref, deadline, sale.finance)
        summary = await self._holds.commit(commit.request_id, hold_id, None, sale.doc_ref, None, sale.finance)
        return summary.parts


def _outcome_unknown(error: DomainError) -> bool:
    """The shard may have applied the command (it failed mid-call): a retry will tell."""
    return isinstance(error, Unavailable | DeadlineExceeded)
