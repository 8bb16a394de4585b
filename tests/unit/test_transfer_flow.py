"""The transfer approval flow as data and the transfer document (engine.domain.transfer_flow)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest

from engine.domain.errors import FailedPrecondition, InvalidArgument, RequestConflict
from engine.domain.transfer_flow import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    FlowError,
    ReceiptLine,
    RoleNotAllowed,
    Step,
    Transfer,
    TransferLine,
    TransferLot,
    after_receipt,
    all_arrived,
    cancellable,
    decide,
    default_flow,
    digest_of,
    in_query,
    list_order,
    page_token_of,
    parse_flow,
    parse_query,
    plan_receipt,
    repeated_step,
    state_times,
    step_event,
    step_index,
    transfer_from_doc,
    transfer_to_doc,
    validate_create,
    validate_receipt,
    with_step,
)

FLOW = default_flow()
RAW: dict[str, Any] = json.loads(resources.files("engine.domain").joinpath("transfer_flow.json").read_text())


def transfer(qty: int, state: str = "requested", by: str = "sam") -> Transfer:
    return Transfer("T1", "DC", "BOS", (TransferLine("GLU", qty),), by, state=state)


def test_a_small_transfer_needs_one_approval_a_large_one_two() -> None:
    assert decide(FLOW, transfer(500), "approve", "maya", ["site_manager"]).next_state == "approved"
    first = decide(FLOW, transfer(501), "approve", "maya", ["site_manager"])
    assert first.next_state == "pending_regional"
    second = decide(FLOW, transfer(501, "pending_regional"), "approve", "rita", ["regional_manager"])
    assert second.next_state == "approved"
    assert decide(FLOW, transfer(10), "reject", "maya", ["site_manager"]).next_state == "rejected"


def test_self_approval_is_refused_unless_the_flow_allows_it() -> None:
    with pytest.raises(FailedPrecondition) as err:
        decide(FLOW, transfer(10, by="maya"), "approve", "maya", ["site_manager"])
    assert err.value.reason == "SELF_APPROVAL"
    assert err.value.metadata == {"requested_by": "maya", "actor": "maya", "action": "approve"}
    raw = copy.deepcopy(RAW)
    raw["transitions"][0]["allow_self_approval"] = True
    assert (
        decide(parse_flow(raw), transfer(10, by="maya"), "approve", "maya", ["site_manager"]).next_state == "approved"
    )


def test_a_role_the_step_does_not_name_is_denied_with_the_roles_that_may() -> None:
    with pytest.raises(RoleNotAllowed) as err:
        decide(FLOW, transfer(10), "approve", "rita", ["regional_manager"])
    assert err.value.fields == {"action": "approve", "state": "requested", "roles": "site_manager"}


@pytest.mark.parametrize("state", ["approved", "shipped", "received", "rejected", "cancelled"])
def test_no_approval_outside_the_tables_states(state: str) -> None:
    with pytest.raises(FailedPrecondition) as err:
        decide(FLOW, transfer(10, state), "approve", "maya", ["site_manager"])
    assert err.value.reason == "TRANSFER_STATE"


def test_any_role_matches_every_caller() -> None:
    raw = {
        "format": 1,
        "transitions": [{"state": "requested", "action": "approve", "next_state": "approved", "role": "*"}],
    }
    assert decide(parse_flow(raw), transfer(1), "approve", "anyone", []).next_state == "approved"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda r: r.update(format=2), "format"),
        (lambda r: r.update(hold_ttl_ms=0), "hold_ttl_ms"),
        (lambda r: r.update(transitions=[]), "transitions"),
        (lambda r: r["transitions"][0].update(action="ship"), "transitions[0].action"),
        (lambda r: r["transitions"][0].update(colour="red"), "transitions[0].colour"),
        (lambda r: r["transitions"][0].update(role=""), "transitions[0].role"),
        (lambda r: r["transitions"][0].update(next_state="shipped"), "transitions[0].next_state"),
        (lambda r: r["transitions"][3].update(next_state="approved"), "transitions[3].next_state"),
        (lambda r: r["transitions"][0].update(state="approved"), "transitions[0].state"),
        (lambda r: r["transitions"][0].update(max_qty=-1), "transitions[0].max_qty"),
        (lambda r: r["transitions"][0].update(allow_self_approval="yes"), "transitions[0].allow_self_approval"),
        (lambda r: r.update(transitions=r["transitions"][3:]), "transitions"),  # nothing reaches approved
    ],
)
def test_a_bad_flow_is_refused_at_load_naming_the_key(change: Any, key: str) -> None:
    raw = copy.deepcopy(RAW)
    change(raw)
    with pytest.raises(FlowError) as err:
        parse_flow(raw)
    assert err.value.key == key


def test_create_is_validated() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_create("T/1", "DC", "DC", [TransferLine("GLU", 0)], "")
    fields = {v.field for v in err.value.violations}
    assert fields == {"transfer_id", "to_site", "lines[0].qty"}
    validate_create("T1", "DC", "BOS", [TransferLine("GLU", 1, "L1")], "")


def test_a_retry_is_recognized_and_a_reused_id_refused() -> None:
    digest = digest_of({"action": "approve", "note": ""})
    done = with_step(transfer(10), Step("approve", "approved", "maya", 5, "r1", digest))
    assert repeated_step(done, "r1", digest)
    assert not repeated_step(done, "r2", digest)
    with pytest.raises(RequestConflict):
        repeated_step(done, "r1", digest_of({"action": "reject", "note": ""}))


def test_cancel_is_refused_once_shipped() -> None:
    cancellable(transfer(10, "approved"))
    with pytest.raises(FailedPrecondition) as err:
        cancellable(transfer(10, "shipped"))
    assert err.value.reason == "TRANSFER_SHIPPED"


SHIPPED = Transfer(
    "T1",
    "DC",
    "BOS",
    (TransferLine("GLU", 120),),
    "sam",
    state="shipped",
    lots=(TransferLot("GLU", "L-late", 20, 400), TransferLot("GLU", "L-early", 100, 200)),
)


def test_a_receipt_without_lot_takes_the_earliest_expiry_first() -> None:
    takes = plan_receipt(SHIPPED, [ReceiptLine("GLU", 110, damaged_qty=5)], final=False)
    assert [(t.lot_id, t.qty, t.kind) for t in takes] == [
        ("L-early", 100, "received"),
        ("L-late", 10, "received"),
        ("L-late", 5, "damage"),
    ]
    lots = after_receipt(SHIPPED, takes)
    assert [lot.in_transit for lot in lots] == [5, 0]
    assert not all_arrived(lots)


def test_a_final_receipt_records_the_rest_as_short() -> None:
    takes = plan_receipt(SHIPPED, [ReceiptLine("GLU", 100, lot_id="L-early")], final=True)
    assert [(t.lot_id, t.qty, t.kind) for t in takes] == [("L-early", 100, "received"), ("L-late", 20, "short")]
    lots = after_receipt(SHIPPED, takes)
    assert all_arrived(lots)
    assert lots[0].short_qty == 20


def test_receiving_more_than_is_in_transit_is_refused_whole() -> None:
    with pytest.raises(FailedPrecondition) as err:
        plan_receipt(SHIPPED, [ReceiptLine("GLU", 10), ReceiptLine("GLU", 111)], final=False)
    assert err.value.reason == "RECEIPT_EXCEEDS_TRANSIT"
    assert err.value.metadata == {"line": "1", "excess_qty": "1"}
    with pytest.raises(InvalidArgument):
        validate_receipt([ReceiptLine("GLU", 0)], final=False)
    with pytest.raises(InvalidArgument):
        validate_receipt([], final=False)
    validate_receipt([], final=True)


def test_time_in_each_state_comes_from_the_steps() -> None:
    t = transfer(10)
    for action, state, at in (
        ("create", "requested", 0),
        ("approve", "approved", 100),
        ("ship", "shipped", 400),
        ("receive", "shipped", 500),  # a partial receipt: still shipped
        ("receive", "received", 900),
    ):
        t = with_step(t, Step(action, state, "x", at, f"r{at}", ""))
    times = [(s.state, s.entered_at_ms, s.left_at_ms, s.duration_ms) for s in state_times(t, now_ms=1_000)]
    assert times == [
        ("requested", 0, 100, 100),
        ("approved", 100, 400, 300),
        ("shipped", 400, 900, 500),
        ("received", 900, 0, 100),
    ]


def test_the_document_round_trips() -> None:
    t = with_step(SHIPPED, Step("ship", "shipped", "sam", 5, "r", "d", "note"))
    assert transfer_from_doc(json.loads(json.dumps(transfer_to_doc(t)))) == t


# ---- listing ----


def _created(transfer_id: str, at_ms: int, src: str = "DC", dst: str = "BOS", state: str = "requested") -> Transfer:
    step = Step("create", "requested", "ana", at_ms, "r", "d")
    return replace(Transfer(transfer_id, src, dst, (TransferLine("GLU", 1),), "ana"), steps=(step,), state=state)


def test_a_query_filters_by_site_at_either_end_state_and_creation_time() -> None:
    a, b = _created("A", 100), _created("B", 200, src="NYC", state="shipped")
    c = _created("C", 300, src="NYC", dst="LA")
    query = parse_query("BOS", "", 0, 0, 0, "")
    assert [t.transfer_id for t in (a, b, c) if in_query(t, query)] == ["A", "B"]
    assert [t for t in (a, b, c) if in_query(t, parse_query("", "shipped", 0, 0, 0, ""))] == [b]
    window = parse_query("", "", 200, 300, 0, "")  # at or after 200, before 300
    assert [t for t in (a, b, c) if in_query(t, window)] == [b]
    assert query.page_size == DEFAULT_PAGE_SIZE


def test_a_page_token_resumes_after_the_last_transfer_even_with_equal_times() -> None:
    first, twin = _created("x:1", 100), _created("x:2", 100)  # ids holding ':' survive the token
    after_first = parse_query("", "", 0, 0, 1, page_token_of(first))
    assert after_first.after == (100, "x:1")
    assert sorted([twin, first], key=list_order) == [first, twin]
    assert [t.transfer_id for t in (first, twin) if in_query(t, after_first)] == ["x:2"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "", 0, 0, MAX_PAGE_SIZE + 1, ""), "page_size"),
        (("", "", 0, 0, -1, ""), "page_size"),
        (("", "", 0, 0, 0, "garbage"), "page_token"),
        (("", "", 0, 0, 0, "12:"), "page_token"),
        (("", "", 500, 400, 0, ""), "created_before_ms"),
        (("", "", -1, 0, 0, ""), "created_after_ms"),
        (("S" * 200, "", 0, 0, 0, ""), "site"),
    ],
)
def test_a_bad_query_names_the_field(args: tuple[str, str, int, int, int, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_query(*args)
    assert field in {v.field for v in err.value.violations}


def test_each_step_gives_one_stable_event_naming_where_it_led() -> None:
    created = _created("T", 100)
    approve = Step("approve", "pending_regional", "maya", 200, "a", "d", "ok")
    t = replace(created, steps=(*created.steps, approve), state="pending_regional")
    event = step_event(t, 1)
    assert (event.kind, event.previous_state, event.state, event.actor, event.note) == (
        "transfer_approved",
        "requested",
        "pending_regional",
        "maya",
        "ok",
    )
    assert event.event_id == "transfer:T:1"
    assert event == step_event(t, 1)
    assert step_event(t, 0).previous_state == ""
    assert step_index(t, "a") == 1
