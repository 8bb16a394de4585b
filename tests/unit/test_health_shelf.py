"""Shelf counts and proposed adjustments: lists for the sales rep, never a silent change."""

from __future__ import annotations

import pytest

from engine.domain.errors import FailedPrecondition, InvalidArgument
from engine.health.proposals import Proposal, approve, from_record, reject, to_record
from engine.health.shelf import ShelfCount, ShelfRules, check_counts, evaluate

RULES = ShelfRules(confidence_threshold=0.9, low_facing_qty=3, low_facing_by_sku={"BIG": 1})


def test_lists_from_confident_counts_only() -> None:
    counts = (
        ShelfCount("ST-1", "A/1", "MILK", 0, 0.95),  # out of stock
        ShelfCount("ST-1", "A/2", "BREAD", 2, 0.99),  # low facing
        ShelfCount("ST-1", "A/3", "BIG", 2, 0.99),  # the sku's own minimum is 1: fine
        ShelfCount("ST-1", "A/4", "EGGS", 0, 0.5),  # not sure: reported, never listed
        ShelfCount("ST-1", "A/5", "JAM", 6, 0.97),  # as the books say
    )
    books = {
        ("ST-1", "A/1", "MILK"): 4,
        ("ST-1", "A/2", "BREAD"): 2,
        ("ST-1", "A/4", "EGGS"): 9,
        ("ST-1", "A/5", "JAM"): 6,
    }
    result = evaluate(counts, books, RULES)
    assert [x.count.sku for x in result.out_of_stock] == ["MILK"]
    assert [x.count.sku for x in result.low_facing] == ["BREAD"]
    assert [(x.count.sku, x.diff) for x in result.to_propose] == [("MILK", -4), ("BIG", 2)]
    assert [(x.count.sku, x.diff) for x in result.unconfirmed] == [("EGGS", -9)]


def test_bad_counts_are_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_counts((ShelfCount("", "A", "X", -1, 1.5),))
    assert {v.field for v in err.value.violations} == {"counts[0]", "counts[0].counted", "counts[0].confidence"}
    with pytest.raises(InvalidArgument):
        check_counts(())


def proposal() -> Proposal:
    return Proposal("p1", "S1", "SKU", "L1", "", "available", -2, 10, 12, "reconciliation:snap-1", "ana", 100)


def test_a_proposal_needs_another_person_and_is_decided_once() -> None:
    p = proposal()
    with pytest.raises(FailedPrecondition) as err:
        approve(p, "ana", 200)
    assert err.value.reason == "SAME_PERSON"
    ok = approve(p, "bob", 200, "recounted")
    assert (ok.state, ok.decided_by, ok.adjust_request_id) == ("approved", "bob", "adj:p1")
    with pytest.raises(FailedPrecondition) as err2:
        reject(ok, "carol", 300)
    assert err2.value.reason == "PROPOSAL_DECIDED"
    assert reject(p, "ana", 300).state == "rejected"  # the proposer may withdraw it
    assert from_record(to_record(ok)) == ok
