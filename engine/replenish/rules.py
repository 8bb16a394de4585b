"""Rules as data: an ordered list of adjustment rules, each a pure function of (suggestion, context).

A rules file (JSON, `schema` 1) lists rules in priority order; each names a template, the pairs
it matches (skus, categories, sites, suppliers: empty = any), an optional active date range and
its parameters:

    {"schema": 1, "rules": [
      {"id": "summer-clearance", "template": "clearance", "match": {"categories": ["garden"]},
       "active_from": "2026-09-01", "active_until": "2026-10-31", "params": {"factor": 0.0}},
      {"id": "cash", "template": "payment_terms", "params": {"credit_limit": "25000"}}
    ]}

`load_rules` validates the whole file at load and raises one `InvalidArgument` whose field
violations name the file, the rule (index and id) and the field. Applying a rule never raises:
it returns the new suggestion and one `RuleLine` (before → after, why). Hard limits (caps) only
ever lower `qty_cap`, so an earlier, higher-priority rule's limit is never loosened by a later
one; `enforce_limits` finally reconciles the caps with MOQ and order multiple (the cap wins:
the quantity is rounded down to the multiple, and to 0 when the cap is below the MOQ).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.domain.errors import FieldViolation, InvalidArgument
from engine.replenish.model import RuleLine, Suggestion

RULES_SCHEMA = 1
MAX_RULES = 500  # per file: rules are a short priority list, not a table of every sku
MAX_LIST = 10_000  # skus/categories/... one rule's match or params may list


@dataclass(frozen=True, slots=True)
class Match:
    """Which pairs a rule applies to: each non-empty set must contain the pair's value."""

    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    suppliers: frozenset[str] = frozenset()

    def covers(self, ctx: RuleContext) -> bool:
        return (
            (not self.skus or ctx.sku in self.skus)
            and (not self.categories or ctx.category in self.categories)
            and (not self.sites or ctx.site in self.sites)
            and (not self.suppliers or ctx.supplier_id in self.suppliers)
        )


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What rules may read besides the suggestion: the pair's business context."""

    sku: str
    site: str
    supplier_id: str
    category: str = ""
    today: date | None = None
    unit_price: Decimal | None = None  # selling price, for margin
    open_payables: Decimal = Decimal(0)  # owed to the supplier already, for payment terms
    budget_remaining: Decimal | None = None  # of the site's purchasing budget, for budget_cap
    substitute_available: tuple[tuple[str, int], ...] = ()  # (sku, free qty) of substitutes at the site
    shelf_life_days: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    template: str
    params: Mapping[str, Any]  # validated by the template's parser: typed values (Decimal, int, frozenset, ...)
    match: Match = Match()
    active_from: date | None = None
    active_until: date | None = None
    source: str = ""  # the file it came from

    def applies(self, ctx: RuleContext) -> bool:
        day = ctx.today
        if day is not None and (
            (self.active_from is not None and day < self.active_from)
            or (self.active_until is not None and day > self.active_until)
        ):
            return False
        return self.match.covers(ctx)


# ---------------------------------------------------------------- helpers shared by the policy and the templates


def _line(rule_id: str, template: str, before: Suggestion, after: Suggestion, why: str) -> RuleLine:
    return RuleLine(rule_id, template, "qty", str(before.qty), str(after.qty), why)


def _with(s: Suggestion, line: RuleLine, **changes: Any) -> Suggestion:
    return replace(s, trace=(*s.trace, line), **changes)


def _cap(s: Suggestion, cap: int) -> int:
    cap = max(cap, 0)
    return cap if s.qty_cap is None else min(cap, s.qty_cap)


def _apply_cap(s: Suggestion, rule_id: str, template: str, cap: int, why: str) -> Suggestion:
    new_cap = _cap(s, cap)
    qty = min(s.qty, new_cap)
    after = replace(s, qty=qty, qty_cap=new_cap, reason=s.reason if qty or not s.qty else f"{template}: {why}")
    return _with(after, _line(rule_id, template, s, after, why))


def rounded(qty: int, moq: int, multiple: int) -> int:
    """MOQ then multiple, rounding up; a MOQ that is not a multiple is rounded up first (Dolibarr #38783)."""
    if qty <= 0:
        return 0
    floor = math.ceil(moq / multiple) * multiple
    return max(math.ceil(qty / multiple) * multiple, floor)


def round_to_terms(s: Suggestion, rule_id: str, why: str) -> Suggestion:
    qty = rounded(s.qty, s.panel.moq, s.panel.multiple)
    after = replace(s, qty=qty)
    detail = f"{why}: MOQ {s.panel.moq}, multiple {s.panel.multiple}"
    return _with(after, _line(rule_id, "moq_rounding", s, after, detail))


def shelf_life_cap(
    s: Suggestion, shelf_life_days: int, min_remaining_days: int, rule_id: str = "policy.shelf_life"
) -> Suggestion:
    """q ≤ d̂·F·(L̄ + shelf life − days it must keep) − IP: no more than sells before it expires.

    The position (on hand and arrivals counted) sells first and goes on selling during the lead
    time, then this lot has its sellable days: what the position and the order exceed is waste."""
    sellable_days = max(shelf_life_days - min_remaining_days, 0)
    horizon = s.panel.lead_time_mean + sellable_days
    sells = s.panel.base_rate * s.panel.factor_multiplier  # expected sales: the buffer is a reserve, not sales
    cap = math.floor(sells * horizon - s.inventory_position)
    why = (
        f"sells {sells:.2f}/day × (lead {s.panel.lead_time_mean:.1f} + sellable {sellable_days}) days "
        f"− position {s.inventory_position} → cap {max(cap, 0)}"
    )
    return _apply_cap(s, rule_id, "shelf_life_cap", cap, why)


def enforce_limits(s: Suggestion) -> Suggestion:
    """Cap, MOQ and multiple together; the cap wins (rounded down to the multiple, 0 below the MOQ)."""
    moq, mult = s.panel.moq, s.panel.multiple
    qty = rounded(s.qty, moq, mult)
    why = "MOQ and multiple"
    if s.qty_cap is not None and qty > s.qty_cap:
        qty = (s.qty_cap // mult) * mult
        why = f"cap {s.qty_cap} rounded down to the multiple {mult}"
        if qty < moq or qty <= 0:
            qty = 0
            why = f"cap {s.qty_cap} is below the MOQ {moq}: no order"
    if qty == s.qty:
        return s
    reason = s.reason if qty else (s.reason or why)
    after = replace(s, qty=qty, reason=reason)
    return _with(after, _line("policy.limits", "limits", s, after, why))


# ---------------------------------------------------------------- templates


def _clearance(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    factor = float(rule.params["factor"])
    cap = math.floor(s.qty * factor)
    return _apply_cap(s, rule.id, rule.template, cap, f"clearance: order at most {factor:.0%} of the suggestion")


def _margin(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    cost, price = s.unit_cost, ctx.unit_price
    if cost is None or price is None or price <= 0:
        line = RuleLine(rule.id, rule.template, "qty", str(s.qty), str(s.qty), "margin unknown (no cost or price)")
        return _with(s, line)
    margin = float((price - cost) / price)
    minimum, factor = float(rule.params["min_margin"]), float(rule.params["factor"])
    if margin >= minimum:
        why = f"margin {margin:.1%} ≥ {minimum:.1%}: unchanged"
        return _with(s, RuleLine(rule.id, rule.template, "qty", str(s.qty), str(s.qty), why))
    after = replace(s, qty=math.floor(s.qty * factor))
    return _with(after, _line(rule.id, rule.template, s, after, f"margin {margin:.1%} < {minimum:.1%}: × {factor}"))


def _value_cap(s: Suggestion, rule: Rule, amount: Decimal, what: str) -> Suggestion:
    if s.unit_cost is None or s.unit_cost <= 0:
        return _with(s, RuleLine(rule.id, rule.template, "qty", str(s.qty), str(s.qty), f"{what}: unit cost unknown"))
    cap = int(max(amount, Decimal(0)) // s.unit_cost)
    return _apply_cap(s, rule.id, rule.template, cap, f"{what} {amount} at {s.unit_cost}/unit → at most {cap}")


def _payment_terms(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    room = rule.params["credit_limit"] - ctx.open_payables
    return _value_cap(s, rule, room, "credit left")


def _budget_cap(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    amount: Decimal = rule.params["amount"]
    if ctx.budget_remaining is not None:
        amount = min(amount, ctx.budget_remaining)
    return _value_cap(s, rule, amount, "budget")


def _shelf_life(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    shelf = rule.params.get("shelf_life_days") or ctx.shelf_life_days
    if shelf is None:
        return _with(s, RuleLine(rule.id, rule.template, "qty", str(s.qty), str(s.qty), "shelf life unknown"))
    return shelf_life_cap(s, int(shelf), int(rule.params["min_remaining_days"]), rule.id)


def _moq_rounding(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    moq = rule.params.get("moq", s.panel.moq)
    multiple = rule.params.get("multiple", s.panel.multiple)
    changed = replace(s, panel=replace(s.panel, moq=moq, multiple=multiple))
    return round_to_terms(changed, rule.id, "rounded to the rule's terms")


def _max_days_cover(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    days = int(rule.params["days"])
    cap = math.floor(s.panel.demand_rate * days - s.inventory_position)
    return _apply_cap(s, rule.id, rule.template, cap, f"position after the order covers at most {days} days")


def _supplier_calendar(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    weekdays: frozenset[int] = rule.params["weekdays"]
    if s.today.weekday() not in weekdays:
        if rule.params.get("urgent_below_safety_stock", True) and s.inventory_position < s.safety_stock:
            why = "not an order day, but the position is below safety stock: order now"
            return _with(s, RuleLine(rule.id, rule.template, "qty", str(s.qty), str(s.qty), why))
        nxt = next_order_day(s.today, weekdays)
        return _apply_cap(s, rule.id, rule.template, 0, f"not an order day: next order day {nxt.isoformat()}")
    gap = (next_order_day(s.today + timedelta(days=1), weekdays) - s.today).days
    extra = max(gap - s.panel.review_days, 0)
    if s.qty <= 0 or extra == 0:
        why = f"order day; next one in {gap} days"
        return _with(s, RuleLine(rule.id, rule.template, "qty", str(s.qty), str(s.qty), why))
    after = replace(s, qty=s.qty + math.ceil(s.panel.demand_rate * extra))
    return _with(
        after, _line(rule.id, rule.template, s, after, f"next order day in {gap} days: +{extra} days of demand")
    )


def next_order_day(start: date, weekdays: frozenset[int]) -> date:
    for offset in range(7):
        day = start + timedelta(days=offset)
        if day.weekday() in weekdays:
            return day
    raise ValueError("weekdays is empty")  # unreachable: validated at load


def _substitute_skus(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    subs: frozenset[str] = rule.params["skus"]
    share = float(rule.params.get("share", 1.0))
    free = sum(qty for sku, qty in ctx.substitute_available if sku in subs)
    after = replace(s, qty=max(s.qty - math.floor(free * share), 0))
    return _with(
        after, _line(rule.id, rule.template, s, after, f"substitutes hold {free} free: count {share:.0%} of it")
    )


def _frozen_skus(s: Suggestion, rule: Rule, ctx: RuleContext) -> Suggestion:
    skus: frozenset[str] = rule.params["skus"]
    if skus and ctx.sku not in skus:
        return s
    return _apply_cap(s, rule.id, rule.template, 0, str(rule.params.get("why") or "sku frozen: no purchase"))


# ---------------------------------------------------------------- parameter parsing (validation at load)

Parser = Callable[[Any, str, list[FieldViolation]], Any]


def _p_fraction(value: Any, where: str, out: list[FieldViolation]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        out.append(FieldViolation(where, f"must be a number within [0, 1], got {value!r}"))
        return None
    return float(value)


def _p_money(value: Any, where: str, out: list[FieldViolation]) -> Decimal | None:
    try:
        amount = Decimal(str(value)) if isinstance(value, str | int) and not isinstance(value, bool) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        out.append(FieldViolation(where, f"must be an amount ≥ 0 as a string or integer, got {value!r}"))
        return None
    return amount


def _p_days(value: Any, where: str, out: list[FieldViolation]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3650:
        out.append(FieldViolation(where, f"must be a whole number of days within [0, 3650], got {value!r}"))
        return None
    return value


def _p_count(value: Any, where: str, out: list[FieldViolation]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        out.append(FieldViolation(where, f"must be an integer ≥ 1, got {value!r}"))
        return None
    return value


def _p_names(value: Any, where: str, out: list[FieldViolation]) -> frozenset[str] | None:
    if not isinstance(value, list) or len(value) > MAX_LIST or not all(isinstance(v, str) and v for v in value):
        out.append(FieldViolation(where, f"must be a list of at most {MAX_LIST} non-empty strings"))
        return None
    return frozenset(value)


def _p_weekdays(value: Any, where: str, out: list[FieldViolation]) -> frozenset[int] | None:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 6 for v in value)
    ):
        out.append(FieldViolation(where, "must be a non-empty list of weekdays 0 (Monday) … 6 (Sunday)"))
        return None
    return frozenset(value)


def _p_bool(value: Any, where: str, out: list[FieldViolation]) -> bool | None:
    if not isinstance(value, bool):
        out.append(FieldViolation(where, f"must be true or false, got {value!r}"))
        return None
    return value


def _p_text(value: Any, where: str, out: list[FieldViolation]) -> str | None:
    if not isinstance(value, str) or len(value) > 500:
        out.append(FieldViolation(where, "must be a string of at most 500 characters"))
        return None
    return value


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    apply: Callable[[Suggestion, Rule, RuleContext], Suggestion]
    required: Mapping[str, Parser]
    optional: Mapping[str, Parser]
    summary: str


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("clearance", _clearance, {"factor": _p_fraction}, {}, "slow season: order at most factor × qty"),
        Template(
            "margin",
            _margin,
            {"min_margin": _p_fraction, "factor": _p_fraction},
            {},
            "below the margin floor: qty × factor",
        ),
        Template("payment_terms", _payment_terms, {"credit_limit": _p_money}, {}, "order value ≤ credit left"),
        Template(
            "shelf_life_cap",
            _shelf_life,
            {"min_remaining_days": _p_days},
            {"shelf_life_days": _p_days},
            "no more than sells before expiry",
        ),
        Template(
            "moq_rounding",
            _moq_rounding,
            {},
            {"moq": _p_days, "multiple": _p_count},
            "other MOQ / multiple (pallets, cases)",
        ),
        Template("max_days_cover", _max_days_cover, {"days": _p_days}, {}, "position after the order ≤ days of cover"),
        Template("budget_cap", _budget_cap, {"amount": _p_money}, {}, "order value ≤ budget"),
        Template(
            "supplier_calendar",
            _supplier_calendar,
            {"weekdays": _p_weekdays},
            {"urgent_below_safety_stock": _p_bool},
            "order on the supplier's days; cover the gap",
        ),
        Template(
            "substitute_skus",
            _substitute_skus,
            {"skus": _p_names},
            {"share": _p_fraction},
            "free stock of substitutes lowers qty",
        ),
        Template("frozen_skus", _frozen_skus, {"skus": _p_names}, {"why": _p_text}, "no purchase of these skus"),
    )
}


def apply_rules(s: Suggestion, ctx: RuleContext, rules: Sequence[Rule]) -> Suggestion:
    """Each matching, active rule in order; every one that applies adds a trace line."""
    for rule in rules:
        if rule.applies(ctx):
            s = TEMPLATES[rule.template].apply(s, rule, ctx)
    return s


# ---------------------------------------------------------------- loading


def _p_date(value: Any, where: str, out: list[FieldViolation]) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        pass
    out.append(FieldViolation(where, f"must be a date YYYY-MM-DD, got {value!r}"))
    return None


def _parse_match(raw: Any, where: str, out: list[FieldViolation]) -> Match:
    if raw is None:
        return Match()
    if not isinstance(raw, dict):
        out.append(FieldViolation(where, "must be an object"))
        return Match()
    keys = ("skus", "categories", "sites", "suppliers")
    for extra in sorted(set(raw) - set(keys)):
        out.append(FieldViolation(f"{where}.{extra}", f"unknown field; allowed: {', '.join(keys)}"))
    sets = {k: _p_names(raw[k], f"{where}.{k}", out) or frozenset() if k in raw else frozenset() for k in keys}
    return Match(**sets)


def _parse_rule(raw: Any, where: str, source: str, out: list[FieldViolation]) -> Rule | None:
    if not isinstance(raw, dict):
        out.append(FieldViolation(where, "must be an object"))
        return None
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        out.append(FieldViolation(f"{where}.id", "must be a non-empty string"))
        rule_id = "?"
    else:
        where = f"{where} ({rule_id!r})"
    allowed = {"id", "template", "match", "active_from", "active_until", "params", "note"}
    for extra in sorted(set(raw) - allowed):
        out.append(FieldViolation(f"{where}.{extra}", f"unknown field; allowed: {', '.join(sorted(allowed))}"))
    template = TEMPLATES.get(raw.get("template"))  # type: ignore[arg-type]
    if template is None:
        out.append(
            FieldViolation(f"{where}.template", f"must be one of {', '.join(TEMPLATES)}, got {raw.get('template')!r}")
        )
    match = _parse_match(raw.get("match"), f"{where}.match", out)
    start = _p_date(raw.get("active_from"), f"{where}.active_from", out)
    end = _p_date(raw.get("active_until"), f"{where}.active_until", out)
    if start and end and end < start:
        out.append(FieldViolation(f"{where}.active_until", "must not be before active_from"))
    raw_params = raw.get("params", {})
    if not isinstance(raw_params, dict):
        out.append(FieldViolation(f"{where}.params", "must be an object"))
        return None
    if template is None:
        return None
    params: dict[str, Any] = {}
    for name, parse in template.required.items():
        if name not in raw_params:
            out.append(FieldViolation(f"{where}.params.{name}", f"required by template {template.name!r}"))
        else:
            params[name] = parse(raw_params[name], f"{where}.params.{name}", out)
    for name, parse in template.optional.items():
        if name in raw_params:
            params[name] = parse(raw_params[name], f"{where}.params.{name}", out)
    known = set(template.required) | set(template.optional)
    for extra in sorted(set(raw_params) - known):
        allowed_p = ", ".join(sorted(known)) or "none"
        out.append(
            FieldViolation(f"{where}.params.{extra}", f"unknown parameter of {template.name!r}; allowed: {allowed_p}")
        )
    return Rule(rule_id, template.name, params, match, start, end, source)


def parse_rules(document: Any, source: str) -> tuple[Rule, ...]:
    """Validate a decoded rules document; every problem is reported at once, naming file, rule and field."""
    out: list[FieldViolation] = []
    if not isinstance(document, dict):
        raise InvalidArgument((FieldViolation(source, "a rules file must be a JSON object"),))
    if document.get("schema") != RULES_SCHEMA:
        out.append(FieldViolation(f"{source}: schema", f"must be {RULES_SCHEMA}, got {document.get('schema')!r}"))
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list):
        out.append(FieldViolation(f"{source}: rules", "must be a list"))
        raise InvalidArgument(out)
    if len(raw_rules) > MAX_RULES:
        out.append(FieldViolation(f"{source}: rules", f"at most {MAX_RULES} rules, got {len(raw_rules)}"))
        raise InvalidArgument(out)
    for extra in sorted(set(document) - {"schema", "rules", "note"}):
        out.append(FieldViolation(f"{source}: {extra}", "unknown field; allowed: schema, rules, note"))
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, f"{source}: rules[{i}]", source, out)
        if rule is None:
            continue
        if rule.id in seen:
            out.append(FieldViolation(f"{source}: rules[{i}] ({rule.id!r}).id", "duplicate rule id"))
        seen.add(rule.id)
        rules.append(rule)
    if out:
        raise InvalidArgument(out)
    return tuple(rules)


def loads_rules(text: str, source: str = "<rules>") -> tuple[Rule, ...]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument((FieldViolation(source, f"not valid JSON: {exc}"),)) from None
    return parse_rules(document, source)


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument((FieldViolation(str(p), f"cannot read: {exc.strerror}"),)) from None
    return loads_rules(text, p.name)
