"""Expiry rules as data (issue 15 item 1; DESIGN.md §14): per category and site, a
near-expiry window that raises a promotion task (and optionally moves the stock to a
status, e.g. `promo_locked`), and at expiry a move to `expired`.

A rules file is JSON, validated whole at load (`parse_rules`): every problem is reported
with where it is (`rules[2].near_expiry_days: ...`), and nothing of a bad file is used.

    {"schema": "lotwise.expiry_rules/1", "expired_status": "expired",
     "categories": [{"sku_prefix": "MED-", "category": "medical"}],
     "rules": [{"category": "medical", "site": "", "near_expiry_days": 30,
                "suggested_action": "offer to the front warehouse's wards first",
                "near_status": ""},
               {"category": "*", "near_expiry_days": 7, "suggested_action": "mark down"}]}

A sku's category is that of the longest `sku_prefix` it starts with ("*" when none). The
rule of (category, site) is the most specific one: (category, site), (category, any site),
("*", site), ("*", any site). A pure function (`decide`) turns one stock row and its rule
into actions, with stable ids, and `next_crossing_ms` says when that row next needs a look.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.domain.model import MS_PER_DAY, NO_EXPIRY_MS

SCHEMA = "lotwise.expiry_rules/1"
ANY = "*"
MAX_RULES = 10_000
MAX_WINDOW_DAYS = 3_650


class RulesError(ValueError):
    """A rules file that cannot be used: every problem, each naming where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ExpiryRule:
    category: str  # "*" = any category
    site: str  # "" = any site
    near_expiry_days: int
    expired_status: str  # where expired stock moves (a status of the dictionary, named by the data)
    suggested_action: str = "promote"
    near_status: str = ""  # move near-expiry stock here ("" = leave it where it is)


@dataclass(frozen=True, slots=True)
class ExpiryRules:
    version: str
    categories: tuple[tuple[str, str], ...]  # (sku_prefix, category), longest prefix first
    rules: Mapping[tuple[str, str], ExpiryRule]  # (category, site) → rule

    def category_of(self, sku: str) -> str:
        for prefix, category in self.categories:
            if sku.startswith(prefix):
                return category
        return ANY

    def rule_for(self, sku: str, site: str) -> ExpiryRule | None:
        category = self.category_of(sku)
        for key in ((category, site), (category, ""), (ANY, site), (ANY, "")):
            rule = self.rules.get(key)
            if rule is not None:
                return rule
        return None

    @property
    def max_window_days(self) -> int:
        return max((r.near_expiry_days for r in self.rules.values()), default=0)


DEFAULT_RULES_FILE = Path(__file__).parent / "data" / "expiry_rules.json"


def default_rules() -> ExpiryRules:
    """Without a file of the operator's: 30 days' notice for promotions, expired stock to
    the expired status (engine/health/data/expiry_rules.json)."""
    return parse_rules(json.loads(DEFAULT_RULES_FILE.read_text()))


def _text(raw: Mapping[str, Any], key: str, where: str, problems: list[str], default: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or len(value) > 256:
        problems.append(f"{where}.{key}: must be a string of at most 256 characters")
        return default
    return value


def _rule(raw: Any, where: str, problems: list[str], expired_default: str) -> ExpiryRule | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object")
        return None
    unknown = set(raw) - {"category", "site", "near_expiry_days", "suggested_action", "near_status", "expired_status"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    days = raw.get("near_expiry_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_WINDOW_DAYS:
        problems.append(f"{where}.near_expiry_days: must be an integer 0..{MAX_WINDOW_DAYS}")
        days = 0
    category = _text(raw, "category", where, problems, ANY) or ANY
    expired_status = _text(raw, "expired_status", where, problems, expired_default)
    if not expired_status:
        problems.append(f"{where}.expired_status: must name a status (here or at the top of the file)")
    return ExpiryRule(
        category=category,
        site=_text(raw, "site", where, problems),
        near_expiry_days=days,
        suggested_action=_text(raw, "suggested_action", where, problems, "promote") or "promote",
        near_status=_text(raw, "near_status", where, problems),
        expired_status=expired_status,
    )


def _categories(raw: Any, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list):
        problems.append("categories: must be a list")
        return ()
    out: dict[str, str] = {}
    for i, entry in enumerate(raw):
        where = f"categories[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"sku_prefix", "category"}:
            problems.append(f"{where}: must be an object with sku_prefix and category")
            continue
        prefix, category = entry["sku_prefix"], entry["category"]
        if not isinstance(prefix, str) or not prefix or not isinstance(category, str) or not category:
            problems.append(f"{where}: sku_prefix and category must be non-empty strings")
        elif prefix in out:
            problems.append(f"{where}.sku_prefix: {prefix!r} is listed twice")
        else:
            out[prefix] = category
    return tuple(sorted(out.items(), key=lambda pc: (-len(pc[0]), pc[0])))


def parse_rules(raw: Any, known_statuses: frozenset[str] | None = None) -> ExpiryRules:
    """The rules of a decoded JSON document; RulesError listing every problem.
    `known_statuses` (the status dictionary's names) checks the statuses rules name."""
    if not isinstance(raw, dict):
        raise RulesError(["the rules file must be a JSON object"])
    problems: list[str] = []
    if raw.get("schema") != SCHEMA:
        problems.append(f"schema: must be {SCHEMA!r}")
    unknown = set(raw) - {"schema", "version", "expired_status", "categories", "rules"}
    if unknown:
        problems.append(f"unknown keys {sorted(unknown)}")
    categories = _categories(raw.get("categories", []), problems)
    entries = raw.get("rules")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_RULES:
        problems.append(f"rules: must be a list of 1..{MAX_RULES} rules")
        entries = []
    expired_default = raw.get("expired_status", "")
    if not isinstance(expired_default, str):
        problems.append("expired_status: must be a status name")
        expired_default = ""
    rules: dict[tuple[str, str], ExpiryRule] = {}
    for i, entry in enumerate(entries):
        rule = _rule(entry, f"rules[{i}]", problems, expired_default)
        if rule is None:
            continue
        if (rule.category, rule.site) in rules:
            problems.append(f"rules[{i}]: a second rule for category {rule.category!r} at site {rule.site!r}")
        for name in ("near_status", "expired_status"):
            status = getattr(rule, name)
            if status and known_statuses is not None and status not in known_statuses:
                problems.append(f"rules[{i}].{name}: {status!r} is not in the status dictionary")
        rules[(rule.category, rule.site)] = rule
    if problems:
        raise RulesError(problems)
    return ExpiryRules(str(raw.get("version", "1")), categories, rules)


# ---- decisions (pure) ----


@dataclass(frozen=True, slots=True)
class StockSlice:
    """One (lot, bin, status, owner) row of a pair, as QueryStock answers it."""

    sku: str
    site: str
    lot_id: str
    bin: str
    status: str
    owner: str
    qty: int
    held: int
    expires_at_ms: int  # the effective expiry (opened shelf life included); 0: never


@dataclass(frozen=True, slots=True)
class PromotionTask:
    """Raised once per lot and site: `task_id` is stable, so deciding again is harmless."""

    task_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    days_left: float
    expires_at_ms: int
    suggested_action: str


@dataclass(frozen=True, slots=True)
class StatusMove:
    """Move `qty` of one row to `to_status`: at expiry through the cell's ExpireLots (the
    lot's journaled expire movements, holds cut), else through ChangeStatus (free units)."""

    request_id: str
    row: StockSlice
    qty: int
    to_status: str
    why: str  # "near_expiry" | "expiry"


def promotion_task_id(site: str, sku: str, lot_id: str) -> str:
    return f"promo:{site}:{sku}:{lot_id}"


def decide(
    row: StockSlice, rule: ExpiryRule, now_ms: int, terminal: frozenset[str]
) -> tuple[PromotionTask | None, StatusMove | None]:
    """What the rule does to this row now. `terminal` are statuses left alone (the
    expired status itself, scrap-bound ones). At expiry the whole row moves, held units
    too: the watch books it with the cell's ExpireLots, which cuts the holds on expired
    units (they can no longer be promised) — only a status move (a rule's own expired
    status, an opened lot past its opened shelf life) takes the free units alone. Near
    expiry, only free units move (their holds still stand)."""
    if row.expires_at_ms == NO_EXPIRY_MS or row.qty <= 0 or row.status in terminal:
        return None, None
    free = row.qty - max(row.held, 0)
    if now_ms >= row.expires_at_ms:
        if row.status == rule.expired_status:
            return None, None
        return None, StatusMove(_move_id("expiry", row, row.qty), row, row.qty, rule.expired_status, "expiry")
    if now_ms < row.expires_at_ms - rule.near_expiry_days * MS_PER_DAY:
        return None, None
    days_left = round((row.expires_at_ms - now_ms) / MS_PER_DAY, 2)
    task = PromotionTask(
        promotion_task_id(row.site, row.sku, row.lot_id),
        row.sku,
        row.site,
        row.lot_id,
        row.qty,
        days_left,
        row.expires_at_ms,
        rule.suggested_action,
    )
    move = None
    if rule.near_status and row.status != rule.near_status and free > 0 and row.status not in terminal:
        move = StatusMove(_move_id("near", row, free), row, free, rule.near_status, "near_expiry")
    return task, move


def _move_id(why: str, row: StockSlice, qty: int) -> str:
    """A request id (letters, digits, `:-`) stable for the same move of the same row, so a
    retried or repeated decision is answered from the cell's idempotency window."""
    raw = "\x1f".join((why, row.site, row.sku, row.lot_id, row.bin, row.status, row.owner, str(qty)))
    return f"health:{why}:{hashlib.sha256(raw.encode()).hexdigest()[:32]}"


def next_crossing_ms(expires_at_ms: int, rule: ExpiryRule, now_ms: int) -> int | None:
    """When a lot expiring at `expires_at_ms` next crosses one of the rule's limits."""
    if expires_at_ms == NO_EXPIRY_MS:
        return None
    near = expires_at_ms - rule.near_expiry_days * MS_PER_DAY
    if now_ms < near:
        return near
    if now_ms < expires_at_ms:
        return expires_at_ms
    return None
