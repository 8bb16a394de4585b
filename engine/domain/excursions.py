"""Temperature excursions: a cabinet that left its range has its stock frozen for QA (DESIGN.md §3).

Everything in the cabinet that may move into the dictionary's frozen role is frozen, by
quant, free units only: held units stay held, because releasing a customer's hold is a
person's decision. Each command takes the free qty it saw and is keyed by its quant, so
a redelivery after a partial application redoes only what is left.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain.cell import Dimension
from engine.domain.commands import ChangeStatus
from engine.domain.ingestion import derived_id
from engine.domain.inventory import StockRow
from engine.domain.statuses import Role, StatusDictionary


def freeze_doc_ref(doc_ref: str, temp_c: float) -> str:
    """The sender's document, or one that names the temperature seen."""
    return doc_ref or f"excursion:{temp_c}C"


def freeze_commands(
    event_id: str, site: str, rows: Sequence[StockRow], statuses: StatusDictionary, doc_ref: str
) -> list[ChangeStatus]:
    """The status changes that freeze a cabinet's quants (`rows`)."""
    frozen = statuses.role(Role.FROZEN)
    out = []
    for r in rows:
        g = dict(r.row.group)
        status = g[Dimension.STATUS]
        free = r.row.qty - r.row.held
        if free <= 0 or status == frozen or not statuses.can_transition(status, frozen):
            continue
        lot, bin_, owner = g[Dimension.LOT], g[Dimension.BIN], g[Dimension.OWNER]
        rid = derived_id(event_id, r.sku, lot, bin_, status, owner)
        out.append(ChangeStatus(rid, r.sku, site, lot, free, status, frozen, bin_, owner, doc_ref=doc_ref))
    return out
