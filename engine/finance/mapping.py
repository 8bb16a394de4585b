"""Account mapping as data: which account a voucher line books to.

A rules file (TOML) holds an ordered list of `[[rule]]` tables. Each names the account and
matches on any of the facts below (absent or "*" = any); the first rule that matches a
line wins, so specific rules go first and a catch-all per role last. Rules are checked
when loaded: an unknown field, kind or role, or a rule without an account, is an error
naming the file, the rule and the field. `explain` tells, rule by rule, why each one did
or did not match a line (`lotwise finance explain`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from engine.domain.errors import FieldViolation, InvalidArgument

# Voucher kinds and the line roles each books (vouchers.py emits exactly these).
KIND_ROLES: dict[str, tuple[str, ...]] = {
    "receipt": ("inventory", "grni", "cogs"),
    "supplier_invoice": ("grni", "input_tax", "ap", "price_variance"),
    "sale": ("cogs", "inventory", "ar", "revenue", "output_tax"),
    "gift": ("promotion_expense", "inventory", "output_tax"),
    "return": ("cogs", "inventory", "ar", "revenue", "output_tax"),
    "scrap": ("scrap_expense", "inventory"),
    "count_gain": ("inventory", "count_variance"),
    "count_loss": ("count_variance", "inventory"),
    "transfer_out": ("transit", "intercompany_receivable", "inventory", "cogs"),
    "transfer_in": ("inventory", "cogs", "transit", "intercompany_payable"),
    "landed_cost": ("inventory", "landed_cost_clearing", "cogs"),
}
ROLES = tuple(sorted({role for roles in KIND_ROLES.values() for role in roles}))
MATCH_FIELDS = ("kind", "role", "category", "tier", "channel", "company", "site", "movement", "tax", "currency")
ANY = "*"
MAX_RULES = 10_000
MAX_MEMO = 100_000  # remembered resolutions


class Facts(NamedTuple):
    """What a voucher line is about: the facts rules match on. A named tuple: made for every
    voucher and hashed for every line (the memo's key), which a tuple does natively."""

    kind: str
    role: str
    category: str = ""
    tier: str = ""  # customer tier, from the document's attributes
    channel: str = ""  # sales channel, ditto
    company: str = ""
    site: str = ""
    movement: str = ""  # the movement kind: receive, commit, consume, adjust, ...
    tax: str = ""  # the line's tax attribute: deemed_sale, promotion, exempt, ...
    currency: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    account: str
    account_name: str = ""
    kind: str = ANY
    role: str = ANY
    category: str = ANY
    tier: str = ANY
    channel: str = ANY
    company: str = ANY
    site: str = ANY
    movement: str = ANY
    tax: str = ANY
    currency: str = ANY

    def mismatch(self, facts: Facts) -> str:
        """ "" when the rule matches; else the first field that does not, and why."""
        for name in MATCH_FIELDS:
            want = getattr(self, name)
            have = getattr(facts, name)
            if want not in (ANY, have):
                return f"{name} is {have!r}, the rule wants {want!r}"
        return ""


@dataclass(frozen=True, slots=True)
class Match:
    rule: Rule
    index: int  # 1-based position in the file


@dataclass(frozen=True, slots=True)
class Rules:
    source: str  # the file they came from (errors and explanations name it)
    rules: tuple[Rule, ...]
    version: str = "1"
    # Facts repeat (same kind, role, category, company...): the first match is remembered.
    _memo: dict[tuple[Facts, str], Match] = field(default_factory=dict, compare=False, repr=False)

    def resolve(self, facts: Facts, role: str = "") -> Match:
        """The first rule matching `facts` (with `role` as its role, when given)."""
        key = (facts, role)
        found = self._memo.get(key)
        if found is not None:
            return found
        if role:
            facts = facts._replace(role=role)
        for i, rule in enumerate(self.rules, 1):
            if not rule.mismatch(facts):
                if len(self._memo) >= MAX_MEMO:
                    self._memo.clear()  # bounded: start over rather than grow
                found = self._memo[key] = Match(rule, i)
                return found
        raise InvalidArgument([FieldViolation("rules", f"{self.source}: no rule books {facts}")])

    def explain(self, facts: Facts) -> list[tuple[int, Rule, str]]:
        """Each rule up to the first match: (position, rule, why not — "" for the match)."""
        out: list[tuple[int, Rule, str]] = []
        for i, rule in enumerate(self.rules, 1):
            why = rule.mismatch(facts)
            out.append((i, rule, why))
            if not why:
                break
        return out


_RULE_FIELDS = {f.name for f in fields(Rule)}


def parse_rules(doc: dict[str, Any], source: str) -> Rules:
    """Rules from a parsed document; every problem is reported at once, each naming the
    file, the rule (number and name) and the field."""
    problems: list[FieldViolation] = []
    raw = doc.get("rule")
    unknown_top = sorted(set(doc) - {"rule", "version"})
    for key in unknown_top:
        problems.append(FieldViolation(key, f"{source}: unknown top-level key {key!r} (expected [[rule]], version)"))
    if not isinstance(raw, list) or not raw:
        problems.append(FieldViolation("rule", f"{source}: needs at least one [[rule]]"))
        raise InvalidArgument(problems)
    if len(raw) > MAX_RULES:
        problems.append(FieldViolation("rule", f"{source}: at most {MAX_RULES} rules"))
    rules = [rule for i, item in enumerate(raw, 1) if (rule := _rule(item, i, source, problems)) is not None]
    if problems:
        raise InvalidArgument(problems)
    return Rules(source, tuple(rules), str(doc.get("version", "1")))


def _rule(item: Any, i: int, source: str, problems: list[FieldViolation]) -> Rule | None:
    if not isinstance(item, dict):
        problems.append(FieldViolation(f"rule[{i}]", f"{source}: rule {i} must be a table"))
        return None
    label = f"{source}: rule {i} ({item.get('name', 'unnamed')})"
    before = len(problems)
    for key, value in item.items():
        if key not in _RULE_FIELDS:
            problems.append(FieldViolation(f"rule[{i}].{key}", f"{label}: unknown field {key!r}"))
        elif not isinstance(value, str) or not value.strip():
            problems.append(FieldViolation(f"rule[{i}].{key}", f"{label}: {key} must be a non-empty string"))
    if not item.get("account"):
        problems.append(FieldViolation(f"rule[{i}].account", f"{label}: every rule names an account"))
    kind, role = item.get("kind", ANY), item.get("role", ANY)
    if kind != ANY and kind not in KIND_ROLES:
        problems.append(FieldViolation(f"rule[{i}].kind", f"{label}: unknown voucher kind {kind!r}"))
    if role != ANY and role not in ROLES:
        problems.append(FieldViolation(f"rule[{i}].role", f"{label}: unknown line role {role!r}"))
    elif kind in KIND_ROLES and role != ANY and role not in KIND_ROLES[kind]:
        problems.append(FieldViolation(f"rule[{i}].role", f"{label}: a {kind} voucher has no {role!r} line"))
    if len(problems) > before:
        return None
    return Rule(name=str(item.get("name") or f"rule {i}"), **{k: v for k, v in item.items() if k != "name"})


def load_rules(path: Path) -> Rules:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgument([FieldViolation("rules", f"{path}: cannot read: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument([FieldViolation("rules", f"{path}: not TOML: {exc}")]) from None
    return parse_rules(doc, str(path))


DEFAULT_RULES_PATH = Path(__file__).with_name("rules.toml")


def default_rules() -> Rules:
    return load_rules(DEFAULT_RULES_PATH)


def unresolved(rules: Rules) -> list[Facts]:
    """Every (kind, role) a voucher can carry that no rule books with no other facts known:
    empty when the file has a catch-all for each."""
    missing: list[Facts] = []
    for kind, roles in KIND_ROLES.items():
        for role in roles:
            facts = Facts(kind, role)
            if all(rule.mismatch(facts) for rule in rules.rules):
                missing.append(facts)
    return missing
