"""The holds, suggestions and voucher panels' forms: what each accepts, and every bad value
named by its field before any engine call (the pages answer 400 with it)."""

from __future__ import annotations

import time

import pytest
from starlette.datastructures import QueryParams

from engine.console.forms import (
    FormProblem,
    parse_hold_release,
    parse_holds,
    parse_pair,
    parse_suggestion_decision,
    parse_suggestions,
    parse_voucher_action,
    parse_vouchers,
)
from engine.console.i18n import LABELS
from engine.console.views.holds import state_name


def test_holds_filter_by_pair_state_and_expiry_window() -> None:
    before = time.time_ns() // 1_000_000
    form = parse_holds(QueryParams("sku=GLU&site=BOS&state=active&expiring_within_h=2&page=abc"))
    assert (form.sku, form.site, form.state, form.page_token) == ("GLU", "BOS", "active", "abc")
    assert before + 2 * 3_600_000 <= form.expiring_before_ms <= time.time_ns() // 1_000_000 + 2 * 3_600_000
    assert parse_holds(QueryParams("")).expiring_before_ms == 0
    assert state_name(1) == "active"
    assert all(f"hold_{s}" in LABELS["zh"] for s in ("active", "committed", "released", "expired", "partial"))


def test_suggestion_decisions_need_what_the_engine_needs() -> None:
    base = {"sku": "SUG", "site": "SUP1", "version": "3"}
    accept = parse_suggestion_decision({**base, "decision": "accept"})
    assert (accept.decision, accept.version, accept.qty) == ("accept", 3, 0)
    override = parse_suggestion_decision({**base, "decision": "override", "qty": "70", "reason": "promo"})
    assert (override.qty, override.reason) == (70, "promo")
    assert parse_suggestions(QueryParams("flagged=1&state=open")).flagged_only
    assert parse_pair(QueryParams("sku=A&site=B")) == ("A", "B")


def test_vouchers_open_on_the_pending_pool() -> None:
    assert parse_vouchers(QueryParams("")).state == "review"  # the pool: pending + annotated
    assert parse_vouchers(QueryParams("state=pending")).state == "pending"
    assert parse_vouchers(QueryParams("state=")).state == ""  # "All"
    assert parse_vouchers(QueryParams("state=posted&company=acme/east")).company == "acme/east"
    assert parse_voucher_action({"voucher_id": "receipt:000:19:0", "action": "approve"}) == (
        "receipt:000:19:0",
        "approve",
        "",
    )


@pytest.mark.parametrize(
    ("parse", "values", "field"),
    [
        (parse_holds, {"state": "partial"}, "state"),  # a whole hold's state, never a filter
        (parse_holds, {"expiring_within_h": "-1"}, "expiring_within_h"),
        (parse_holds, {"site": "two words"}, "site"),
        (parse_hold_release, {"hold_id": ""}, "hold_id"),
        (parse_suggestions, {"state": "maybe"}, "state"),
        (parse_suggestions, {"flagged": "yes"}, "flagged"),
        (parse_pair, {"sku": "A"}, "site"),
        (parse_suggestion_decision, {"sku": "A", "site": "B", "decision": "accept"}, "version"),
        (parse_suggestion_decision, {"sku": "A", "site": "B", "version": "1", "decision": "maybe"}, "decision"),
        (parse_suggestion_decision, {"sku": "A", "site": "B", "version": "1", "decision": "reject"}, "reason"),
        (
            parse_suggestion_decision,
            {"sku": "A", "site": "B", "version": "1", "decision": "override", "reason": "x"},
            "qty",
        ),
        (parse_vouchers, {"state": "lost"}, "state"),
        (parse_vouchers, {"company": "acme east"}, "company"),
        (parse_voucher_action, {"voucher_id": "v<1>", "action": "approve"}, "voucher_id"),
        (parse_voucher_action, {"voucher_id": "v1", "action": "post"}, "action"),
        (parse_voucher_action, {"voucher_id": "v1", "action": "reject"}, "text"),
        (parse_voucher_action, {"voucher_id": "v1", "action": "annotate"}, "text"),
    ],
)
def test_bad_panel_values_name_their_field(parse: object, values: dict[str, str], field: str) -> None:
    with pytest.raises(FormProblem) as raised:
        parse(QueryParams(values) if parse in (parse_holds, parse_suggestions, parse_vouchers, parse_pair) else values)  # type: ignore[operator]
    assert raised.value.field == field
