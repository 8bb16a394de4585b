"""A small hospital for the ingestion tests: catalog, devices, opening stock, event builders.

Plain module so unit and integration tests share it. Sites: a central warehouse `dc`, a
ward cabinet site `icu` (cabinet `ICU-1` in bin `CAB1`), another cabinet site `ed`.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from adapters.nats.ingest.config import Cabinet, IngestConfig, Wms
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import Receive
from engine.domain.gs1 import Gs1Data, encode_gs1
from engine.domain.inventory import StockQuery

STRIP_GTIN = "09506000134352"
CATH_GTIN = "00380652001205"
NOW_MS = 1_790_000_000_000  # 2026-09-21: the ManualClock's start in these tests
DAY_MS = 86_400_000

SKUS = (Sku("strip", "Glucose test strips", "box"), Sku("cath", "IV catheter 20G"))
SITES = (
    Site("dc", "acme/central", "central_warehouse"),
    Site("icu", "acme/h1", "cabinet"),
    Site("ed", "acme/h1", "cabinet"),
)


def hospital_config(namespace: str = "lotwise", **consumer: Any) -> IngestConfig:
    return IngestConfig(
        cabinets={"ICU-1": Cabinet(site="icu", bin="CAB1"), "ED-1": Cabinet(site="ed")},
        gtins={STRIP_GTIN: "strip", CATH_GTIN: "cath"},
        wms=Wms(sites={"WH1": "dc"}),
        **({"consumer": consumer} if consumer else {}),
    ).with_defaults(namespace)


async def load_hospital(gateway: Any, prefix: str = "") -> None:
    """Catalog + opening stock: strips in the ICU cabinet (two lots, the later-numbered
    one expiring first), catheters at the DC."""
    for sku in SKUS:
        await gateway.put_sku(sku)
    for site in SITES:
        await gateway.put_site(site)
    opening = (
        ("strip", "icu", "L100", 10, "CAB1", 300),
        ("strip", "icu", "L200", 5, "CAB1", 30),
        ("strip", "dc", "L100", 100, "A/01", 300),
        ("cath", "dc", "C1", 50, "B/01", 400),
    )
    for sku, site, lot, qty, bin_, days in opening:
        await gateway.execute(
            Receive(
                f"open:{prefix}{sku}:{site}:{lot}",
                sku,
                site,
                lot,
                qty,
                bin=bin_,
                status="available",
                expires_at_ms=expiry_ms(days),
            )
        )


def expiry_day(days: int) -> date:
    return datetime.fromtimestamp((NOW_MS + days * DAY_MS) / 1000, tz=UTC).date()


def expiry_ms(days: int) -> int:
    """As a barcode's expiry date means it: usable through that day (UTC)."""
    return Gs1Data(gtin=STRIP_GTIN, expiry=expiry_day(days)).expires_at_ms()


def strip_barcode(lot: str, expiry_days: int = 300) -> str:
    return encode_gs1(Gs1Data(gtin=STRIP_GTIN, lot=lot, expiry=expiry_day(expiry_days)), human_readable=True)


_ids = itertools.count(1)


def event(type_: str, **fields: Any) -> dict[str, Any]:
    """A flat event dict (the JSON shape) with a fresh event id unless one is given."""
    return {"event_id": fields.pop("event_id", f"ev-{next(_ids)}"), "type": type_, **fields}


async def quants(gateway: Any, sku: str, site: str) -> dict[tuple[str, str, str, str], int]:
    """(lot, bin, status, owner) → qty of one pair, zero rows left out."""
    rows = await gateway.query_stock(
        StockQuery(
            skus=(sku,),
            sites=(site,),
            group_by=(Dimension.LOT, Dimension.BIN, Dimension.STATUS, Dimension.OWNER),
            by_sku=False,
            by_site=False,
            filter=SliceFilter(),
        )
    )
    out = {}
    for r in rows:
        g = dict(r.row.group)
        if r.row.qty:
            out[(g["lot"], g["bin"], g["status"], g["owner"])] = r.row.qty
    return out
