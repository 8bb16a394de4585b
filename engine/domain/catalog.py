"""The catalog: which skus and sites exist, and the org tree sites hang under."""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain.commands import check_id
from engine.domain.errors import FieldViolation, InvalidArgument

MAX_ORG_DEPTH = 16
MAX_SUBSTITUTES = 16  # per sku: bounds the reads a freshness refusal costs the gateway

# A (sku, site) pair: the key of one cell (DESIGN §1).
Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Sku:
    sku: str
    name: str = ""
    unit: str = "ea"
    opened_shelf_life_days: int = 0  # 0: opening does not shorten the shelf life
    opened_shelf_life_hours: int = 0  # when > 0, wins over the days (engine.domain.freshness)
    substitutes: tuple[str, ...] = ()  # skus that may serve instead, in order of preference


@dataclass(frozen=True, slots=True)
class Site:
    site: str
    org_path: str = ""  # the org node, e.g. "medline/east/boston"; sites hang under it
    kind: str = "warehouse"  # central_warehouse, front_warehouse, store, cabinet, ...
    name: str = ""


def org_covers(org_path: str, org_prefix: str) -> bool:
    """An org node covers itself and everything below it."""
    return not org_prefix or org_path == org_prefix or org_path.startswith(org_prefix + "/")


def validate_sku(sku: Sku) -> None:
    out: list[FieldViolation] = []
    check_id(sku.sku, "sku", out)
    if len(sku.name) > 256:
        out.append(FieldViolation("name", "must be at most 256 characters"))
    if not sku.unit or len(sku.unit) > 16:
        out.append(FieldViolation("unit", "must be 1..16 characters"))
    if not 0 <= sku.opened_shelf_life_days <= 36_500:
        out.append(FieldViolation("opened_shelf_life_days", "must be in 0..36500"))
    if not 0 <= sku.opened_shelf_life_hours <= 876_000:
        out.append(FieldViolation("opened_shelf_life_hours", "must be in 0..876000"))
    if len(sku.substitutes) > MAX_SUBSTITUTES:
        out.append(FieldViolation("substitutes", f"must list at most {MAX_SUBSTITUTES} skus"))
    for i, other in enumerate(sku.substitutes):
        check_id(other, f"substitutes[{i}]", out)
        if other == sku.sku:
            out.append(FieldViolation(f"substitutes[{i}]", "an sku cannot substitute itself"))
    if len(set(sku.substitutes)) != len(sku.substitutes):
        out.append(FieldViolation("substitutes", "must not list an sku twice"))
    if out:
        raise InvalidArgument(out)


def validate_site(site: Site) -> None:
    out: list[FieldViolation] = []
    check_id(site.site, "site", out)
    segments = site.org_path.split("/") if site.org_path else []
    if len(segments) > MAX_ORG_DEPTH or any(not s for s in segments):
        out.append(FieldViolation("org_path", f"must be a path of 1..{MAX_ORG_DEPTH} non-empty nodes"))
    for s in segments:
        check_id(s, "org_path", out)
    if not site.kind or len(site.kind) > 32:
        out.append(FieldViolation("kind", "must be 1..32 characters"))
    if len(site.name) > 256:
        out.append(FieldViolation("name", "must be at most 256 characters"))
    if out:
        raise InvalidArgument(out)
