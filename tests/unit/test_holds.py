"""A hold's refusal rules (engine.domain.holds): what the cell and the gateway's
pre-checks both raise, so a refusal reads the same wherever it is found."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable
from engine.domain.holds import (
    MAX_LINES,
    MAX_TTL_MS,
    check_line_count,
    check_resolvable,
    check_ttl,
    commit_plan,
    hold_aborted,
    hold_not_found,
    is_hold_aborted,
    require_active,
    require_within_hold,
)
from engine.domain.model import HoldState, HoldView


@dataclass(frozen=True)
class Line:
    sku: str
    site: str
    qty: int


def part(state: HoldState, held: int = 5) -> HoldView:
    return HoldView("H", "strip", "ward1", state, (), held, 0, 0, 0, 60_000)


def test_an_active_hold_passes_and_the_others_name_their_state() -> None:
    require_active("H", HoldState.ACTIVE)
    with pytest.raises(FailedPrecondition) as expired:
        require_active("H", HoldState.EXPIRED)
    assert (expired.value.reason, str(expired.value)) == ("HOLD_EXPIRED", "hold 'H' is expired")
    assert expired.value.metadata == {"hold_id": "H", "state": "expired"}
    for state in (HoldState.COMMITTED, HoldState.RELEASED):
        with pytest.raises(FailedPrecondition) as done:
            require_active("H", state)
        assert (done.value.reason, done.value.metadata["state"]) == ("HOLD_NOT_ACTIVE", state.value)


def test_a_refusal_about_one_cell_of_several_names_the_cell() -> None:
    with pytest.raises(FailedPrecondition) as err:
        require_active("H", HoldState.RELEASED, ("strip", "ward1"))
    assert str(err.value) == "hold 'H' is released at strip@ward1"
    assert err.value.metadata == {"hold_id": "H", "sku": "strip", "site": "ward1", "state": "released"}
    assert hold_not_found("H", ("strip", "ward1")).resource_name == "H at strip@ward1"
    assert hold_not_found("H").resource_name == "H"


def test_a_commit_takes_at_most_what_is_held() -> None:
    require_within_hold("H", 6, 6)
    require_within_hold("H", 6, 0)
    with pytest.raises(FailedPrecondition) as err:
        require_within_hold("H", 6, 7)
    assert (err.value.reason, str(err.value)) == ("COMMIT_EXCEEDS_HOLD", "hold 'H' holds 6; cannot commit 7")
    assert err.value.metadata == {"hold_id": "H", "held": "6", "requested": "7"}
    with pytest.raises(FailedPrecondition) as there:
        require_within_hold("H", 6, 7, ("strip", "ward1"))
    assert str(there.value) == "hold 'H' holds 6 at strip@ward1; cannot commit 7"
    assert there.value.metadata == {"hold_id": "H", "sku": "strip", "site": "ward1", "held": "6", "requested": "7"}


def test_a_part_is_resolvable_when_active_or_already_resolved_alike() -> None:
    at = ("strip", "ward1")
    check_resolvable("H", at, part(HoldState.ACTIVE), HoldState.COMMITTED, 5)
    check_resolvable("H", at, part(HoldState.ACTIVE), HoldState.RELEASED, None)
    check_resolvable("H", at, part(HoldState.COMMITTED, 0), HoldState.COMMITTED, 5)  # a retry finishes
    with pytest.raises(NotFound):
        check_resolvable("H", at, None, HoldState.COMMITTED, None)
    with pytest.raises(FailedPrecondition) as other:
        check_resolvable("H", at, part(HoldState.RELEASED, 0), HoldState.COMMITTED, None)
    assert other.value.reason == "HOLD_NOT_ACTIVE"
    with pytest.raises(FailedPrecondition) as expired:
        check_resolvable("H", at, part(HoldState.EXPIRED, 0), HoldState.RELEASED, None)
    assert expired.value.reason == "HOLD_EXPIRED"
    with pytest.raises(FailedPrecondition) as over:
        check_resolvable("H", at, part(HoldState.ACTIVE, 5), HoldState.COMMITTED, 6)
    assert over.value.reason == "COMMIT_EXCEEDS_HOLD"


def test_an_aborted_hold_is_told_apart_from_other_refusals() -> None:
    aborted = hold_aborted("H")
    assert (aborted.reason, aborted.metadata) == ("HOLD_ABORTED", {"hold_id": "H"})
    assert is_hold_aborted(aborted)
    assert not is_hold_aborted(FailedPrecondition("HOLD_EXPIRED", "hold 'H' is expired"))
    assert not is_hold_aborted(Unavailable("shard down"))


def test_ttl_and_line_count_bounds() -> None:
    out: list[FieldViolation] = []
    check_ttl(1, out)
    check_ttl(MAX_TTL_MS, out)
    check_line_count(1, out)
    check_line_count(MAX_LINES, out)
    check_line_count(0, out, required=False)
    assert out == []
    check_ttl(0, out)
    check_ttl(MAX_TTL_MS + 1, out)
    check_line_count(0, out)
    check_line_count(MAX_LINES + 1, out, required=False)
    assert [(v.field, v.description) for v in out] == [
        ("ttl_ms", f"must be in 1..{MAX_TTL_MS}"),
        ("ttl_ms", f"must be in 1..{MAX_TTL_MS}"),
        ("lines", "must not be empty"),
        ("lines", f"must have at most {MAX_LINES} lines"),
    ]


def test_a_commit_plan_covers_every_pair_of_the_hold() -> None:
    pairs = (("strip", "ward1"), ("strip", "ward2"), ("cath", "ward1"))
    plan = commit_plan(pairs, [Line("strip", "ward2", 3)])
    assert plan == {("strip", "ward1"): 0, ("strip", "ward2"): 3, ("cath", "ward1"): 0}
    with pytest.raises(InvalidArgument) as err:
        commit_plan(pairs, [Line("strip", "ward1", 1), Line("gauze", "ward1", 1), Line("strip", "ward1", 2)])
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("lines[1]", "gauze@ward1 is not part of the hold"),
        ("lines[2]", "strip@ward1 is listed twice"),
    ]
