"""Expiry rules as data: validation at load, the most specific rule, decisions and crossings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.domain.model import MS_PER_DAY
from engine.health.expiry_rules import (
    SCHEMA,
    ExpiryRule,
    RulesError,
    StockSlice,
    decide,
    default_rules,
    next_crossing_ms,
    parse_rules,
    promotion_task_id,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000
TERMINAL = frozenset({"expired", "damaged"})


def rules_doc(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schema": SCHEMA,
        "expired_status": "expired",
        "categories": [
            {"sku_prefix": "MED-", "category": "medical"},
            {"sku_prefix": "MED-IMP-", "category": "implant"},
        ],
        "rules": [
            {"category": "medical", "near_expiry_days": 30, "suggested_action": "offer to the wards"},
            {"category": "medical", "site": "FW-BOS", "near_expiry_days": 45, "near_status": "promo_locked"},
            {"category": "*", "near_expiry_days": 7},
        ],
    }
    doc.update(over)
    return doc


def row(
    expires_at_ms: int, *, qty: int = 10, held: int = 0, status: str = "available", sku: str = "MED-1"
) -> StockSlice:
    return StockSlice(sku, "FW-BOS", "L1", "A/1", status, "own", qty, held, expires_at_ms)


def test_the_most_specific_rule_wins() -> None:
    rules = parse_rules(rules_doc())
    assert rules.category_of("MED-IMP-9") == "implant"  # the longest prefix
    assert rules.category_of("MED-9") == "medical"
    assert rules.category_of("FOOD-1") == "*"
    assert rules.rule_for("MED-1", "FW-BOS").near_expiry_days == 45  # type: ignore[union-attr]
    assert rules.rule_for("MED-1", "CW-1").near_expiry_days == 30  # type: ignore[union-attr]
    assert rules.rule_for("MED-IMP-1", "CW-1").near_expiry_days == 7  # type: ignore[union-attr]
    assert rules.max_window_days == 45


def test_every_problem_is_reported_with_where_it_is() -> None:
    bad = rules_doc(
        schema="nope",
        extra=1,
        categories=[{"sku_prefix": ""}],
        rules=[
            {"near_expiry_days": -1},
            {"category": "medical", "near_expiry_days": "30", "colour": "red"},
            {"near_expiry_days": 3},
            {"near_expiry_days": 3, "near_status": "nowhere"},
        ],
    )
    with pytest.raises(RulesError) as err:
        parse_rules(bad, known_statuses=frozenset({"available", "expired", "promo_locked"}))
    text = str(err.value)
    for where in (
        "schema:",
        "unknown keys ['extra']",
        "categories[0]",
        "rules[0].near_expiry_days",
        "rules[1].near_expiry_days",
        "rules[1]: unknown keys ['colour']",
        "rules[2]: a second rule",
        "rules[3].near_status: 'nowhere'",
    ):
        assert where in text, where
    with pytest.raises(RulesError):
        parse_rules([])
    with pytest.raises(RulesError):
        parse_rules({"schema": SCHEMA, "rules": []})
    with pytest.raises(RulesError, match=r"rules\[0\].expired_status: must name a status"):
        parse_rules({"schema": SCHEMA, "rules": [{"near_expiry_days": 1}]})


def test_the_shipped_example_file_loads() -> None:
    rules = parse_rules(json.loads((ROOT / "engine/health/data/expiry_rules.example.json").read_text()))
    assert rules.rule_for("MED-STENT-1", "FW-BOS") is not None


def test_outside_the_window_nothing_happens() -> None:
    rule = ExpiryRule("*", "", 30, "expired")
    assert decide(row(T0 + 31 * MS_PER_DAY), rule, T0, TERMINAL) == (None, None)


def test_inside_the_window_a_promotion_task_with_a_stable_id() -> None:
    rule = ExpiryRule("*", "", 30, "expired", suggested_action="mark down 20%")
    task, move = decide(row(T0 + 30 * MS_PER_DAY), rule, T0, TERMINAL)
    assert move is None
    assert task is not None
    assert task.task_id == promotion_task_id("FW-BOS", "MED-1", "L1") == "promo:FW-BOS:MED-1:L1"
    assert (task.qty, task.days_left, task.suggested_action) == (10, 30.0, "mark down 20%")
    again, _ = decide(row(T0 + 30 * MS_PER_DAY), rule, T0 + 3_600_000, TERMINAL)
    assert again is not None
    assert again.task_id == task.task_id


def test_a_near_status_moves_the_free_units() -> None:
    rule = ExpiryRule("*", "", 30, "expired", near_status="promo_locked")
    _, move = decide(row(T0 + MS_PER_DAY, qty=10, held=3), rule, T0, TERMINAL)
    assert move is not None
    assert (move.qty, move.to_status, move.why) == (7, "promo_locked", "near_expiry")
    _, none = decide(row(T0 + MS_PER_DAY, status="promo_locked"), rule, T0, TERMINAL)
    assert none is None


def test_at_expiry_the_whole_row_moves_to_expired_held_units_too() -> None:
    """The watch books it with ExpireLots, which cuts the holds on the expired units."""
    rule = ExpiryRule("*", "", 30, "expired")
    task, move = decide(row(T0, qty=10, held=4), rule, T0, TERMINAL)
    assert task is None
    assert move is not None
    assert (move.qty, move.to_status, move.why) == (10, "expired", "expiry")
    assert decide(row(T0, status="expired"), rule, T0, TERMINAL) == (None, None)
    _, held = decide(row(T0, qty=4, held=4), rule, T0, TERMINAL)
    assert held is not None
    assert held.qty == 4
    assert decide(row(0), rule, T0, TERMINAL) == (None, None)  # never expires


def test_next_crossing() -> None:
    rule = ExpiryRule("*", "", 30, "expired")
    exp = T0 + 40 * MS_PER_DAY
    assert next_crossing_ms(exp, rule, T0) == exp - 30 * MS_PER_DAY
    assert next_crossing_ms(exp, rule, exp - 30 * MS_PER_DAY) == exp
    assert next_crossing_ms(exp, rule, exp) is None
    assert next_crossing_ms(0, rule, T0) is None


def test_default_rules() -> None:
    notice = ExpiryRule("*", "", 30, "expired", "promote, or move to the site that uses it first")
    assert default_rules().rule_for("ANY", "ANY") == notice
