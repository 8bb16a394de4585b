"""The one-call sale: reserve and commit in one request, all or nothing (DESIGN.md §7).

A sale is applied as each pair's Reserve under an internal hold followed by its Commit
(engine.domain.commands.sale_parts), so cells, journal and business events need nothing
new. A sale of one pair (most POS orders) is one op at the pair's shard, a HoldParts of
kind SELL: the shard reserves, then commits — or, refused, holds nothing — in one batch
and one journal append (engine.domain.hold_parts). A sale of several pairs takes the
coordinated path of multi-line holds (HoldCoordinator): its header registered at the
hold id's home (where a reuse of its request id for other pairs is refused), every line
held under the internal hold, the parts pre-checked, then all committed; a refused line
rolls back the lines already held, so a refused sale leaves nothing held and nothing sold.

Exactly-once: the parts' ids derive from the sale's request id, so a retry is answered
from the cells' idempotency windows (a sale interrupted after its reserves is completed by
the retry); the same id with other lines is refused with RequestConflict under the sale's
own id. The one-pair path registers no hold header: like every single-cell command, its
request id is checked per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from engine.domain.commands import (
    Committed,
    SalePart,
    Sell,
    sale_hold_id,
    sale_parts,
    validate,
    validate_sale,
)
from engine.domain.errors import RequestConflict
from engine.domain.hold_parts import HoldParts, sale_refusal
from engine.domain.model import HoldView
from engine.domain.shard import CellAdopting, CellMoved
from engine.domain.statuses import StatusDictionary
from engine.runtime.gateway.holds import HoldCoordinator
from engine.runtime.gateway.router import Router
from engine.runtime.types import AggregateState, HoldLine, HoldSummary


class SaleDesk:
    """Sells in one call: one op for one pair, the coordinated path for several."""

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
            views = await self._sell_one(sale, parts, deadline) if len(parts) == 1 else None
            if views is None:
                views = await self._sell_coordinated(sale, parts[0], deadline)
        except RequestConflict as exc:
            # The parts' ids are the engine's: the caller reused the sale's request id.
            raise RequestConflict(sale.request_id, differs=exc.differs) from None
        return HoldSummary(sale.request_id, AggregateState.COMMITTED, views, 0)

    async def _sell_one(
        self, sale: Sell, parts: Sequence[SalePart], deadline: float | None
    ) -> tuple[HoldView, ...] | None:
        """A one-pair sale as one op at its shard (engine.domain.hold_parts, SELL). None when
        the pair moved meanwhile (the shard then applied nothing): the coordinated way,
        which follows it."""
        shard = self._router.directory.shard_for(parts[0].reserve.sku, parts[0].reserve.site)
        # Not told as the request's last op (send_all's `last`): should the pair have moved, the
        # coordinated way sends more, and a batch's next command on the pair must wait for them.
        (answer,) = await self._router.send_all(
            [(shard, HoldParts.sale(sale.request_id, parts))], deadline, return_exceptions=True
        )
        if isinstance(answer, CellMoved | CellAdopting):
            return None
        if isinstance(answer, BaseException):
            raise answer  # unknown outcome (a retry tells: all of it was applied, or none)
        found = cast(list[Any], answer)
        refusal = sale_refusal(found)
        if refusal is not None:
            raise refusal
        return tuple(cast(Committed, committed).hold for committed in found)

    async def _sell_coordinated(self, sale: Sell, first: SalePart, deadline: float | None) -> tuple[HoldView, ...]:
        """Hold every line under the internal hold (all or nothing), then commit all of it;
        once every line is held, the commit runs to the end whatever the caller's deadline."""
        hold_id = sale_hold_id(sale.request_id)
        lines = [HoldLine(sl.sku, sl.site, sl.line) for sl in sale.lines]
        reserve, commit = first.reserve, first.commit  # every part shares the ids and the TTL
        await self._holds.reserve(hold_id, hold_id, lines, reserve.ttl_ms, sale.doc_ref, deadline, sale.finance)
        summary = await self._holds.commit(commit.request_id, hold_id, None, sale.doc_ref, None, sale.finance)
        return summary.parts
