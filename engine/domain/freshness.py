"""Opened freshness: goods with an opened shelf life are refused once over age (DESIGN.md §2).

The rule is data on the sku master: `opened_shelf_life_hours` (or the older whole-day
field) and `substitutes`, an ordered list of skus that may serve instead. A cell knows
only its own pair, so it refuses with reason FRESHNESS_EXPIRED naming the over-age lots;
the gateway, which can read every pair of the site, adds the substitutes in stock there
(`with_substitutes`) before the refusal reaches the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain.catalog import Sku
from engine.domain.errors import FailedPrecondition
from engine.domain.model import MS_PER_DAY, MS_PER_HOUR

FRESHNESS_EXPIRED = "FRESHNESS_EXPIRED"


def opened_shelf_life_ms(sku: Sku) -> int:
    """The sku's opened shelf life; hours win over the older whole-day field. 0: none."""
    if sku.opened_shelf_life_hours:
        return sku.opened_shelf_life_hours * MS_PER_HOUR
    return sku.opened_shelf_life_days * MS_PER_DAY


def freshness_expired(sku: str, site: str, lot_ids: Sequence[str], requested: int, fresh: int) -> FailedPrecondition:
    """The refusal of a reserve, sale or consume that only over-age opened stock could serve."""
    lots = ",".join(sorted(set(lot_ids)))
    return FailedPrecondition(
        FRESHNESS_EXPIRED,
        f"{sku}@{site}: opened lot(s) {lots} are past their opened shelf life; {fresh} fresh of {requested} requested",
        {"sku": sku, "site": site, "lot_ids": lots, "requested": str(requested), "fresh_qty": str(fresh)},
    )


def is_freshness_expired(error: BaseException) -> bool:
    return isinstance(error, FailedPrecondition) and error.reason == FRESHNESS_EXPIRED


def with_substitutes(error: FailedPrecondition, substitutes: Sequence[tuple[str, int]]) -> FailedPrecondition:
    """The refusal with the substitutes in stock at its site: `substitutes` metadata is
    `sku=available` pairs, comma-separated, in the sku master's order of preference."""
    listed = ",".join(f"{sku}={qty}" for sku, qty in substitutes if qty > 0)
    message = error.message + (f"; substitutes in stock: {listed}" if listed else "; no substitute in stock")
    return FailedPrecondition(error.reason, message, {**error.metadata, "substitutes": listed})


def without_substitutes(error: FailedPrecondition) -> FailedPrecondition:
    """The refusal for a caller who may not read the site's stock: which other skus are in
    stock there, and how many, is stock information like any other (DESIGN §13)."""
    listed = error.metadata.get("substitutes", "")
    suffix = f"; substitutes in stock: {listed}" if listed else "; no substitute in stock"
    message = error.message.removesuffix(suffix) + "; substitutes not shown (no read grant at this site)"
    return FailedPrecondition(error.reason, message, {**error.metadata, "substitutes": ""})


def parse_substitutes(text: str) -> list[tuple[str, int]]:
    """`with_substitutes`' metadata back to (sku, available) pairs (clients, CLI)."""
    out: list[tuple[str, int]] = []
    for part in filter(None, text.split(",")):
        sku, _, qty = part.partition("=")
        out.append((sku, int(qty or 0)))
    return out
