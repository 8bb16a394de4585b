"""DomainError ↔ gRPC status with google.rpc details, and proto → domain validation.

The round trip goes through the bytes a client really receives: the status is packed
into the `grpc-status-details-bin` trailer by grpc_status, then parsed back.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from engine.api import convert
from engine.api.errors import (
    DETAILS_METADATA_KEY,
    ERROR_DOMAIN,
    RemoteError,
    from_rpc_status,
    internal_status,
    is_retryable,
    retry_delay_s,
    rich_status,
    to_grpc_status,
    to_rpc_status,
)
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.cell import Dimension
from engine.domain.commands import Strategy
from engine.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InsufficientStock,
    Internal,
    InvalidArgument,
    NotFound,
    Overloaded,
    PermissionDenied,
    RequestConflict,
    Unavailable,
)
from engine.domain.shard import CellMoved
from engine.domain.statuses import DEFAULT_DICTIONARY

EVERY_ERROR: list[tuple[DomainError, grpc.StatusCode]] = [
    (
        InvalidArgument([FieldViolation("qty", "must be > 0"), FieldViolation("lines[1].sku", "must not be empty")]),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (NotFound("sku", "SKU-404"), grpc.StatusCode.NOT_FOUND),
    (NotFound("hold", "H-1"), grpc.StatusCode.NOT_FOUND),
    (
        FailedPrecondition("COMMIT_EXCEEDS_HOLD", "hold 'H' holds 2; cannot commit 5", {"held": "2", "requested": "5"}),
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    (InsufficientStock("SKU-1", "S1", requested=5, available=2), grpc.StatusCode.FAILED_PRECONDITION),
    (RequestConflict("req-1"), grpc.StatusCode.ALREADY_EXISTS),
    (RequestConflict("H-1", "hold id"), grpc.StatusCode.ALREADY_EXISTS),
    (PermissionDenied("token may not adjust stock"), grpc.StatusCode.PERMISSION_DENIED),
    (Overloaded("queue of shard shard-0", 10_000), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable("shard shard-1 is recovering"), grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded(), grpc.StatusCode.DEADLINE_EXCEEDED),
    (Internal("Reserve failed on shard shard-0"), grpc.StatusCode.INTERNAL),
]


def over_the_wire(status: grpc.Status) -> status_pb2.Status:
    """What a client parses out of a call that ended with `status`."""
    return rich_status(status.code, status.details, status.trailing_metadata)


def details_of(status: status_pb2.Status) -> dict[type, Any]:
    out: dict[type, Any] = {}
    for any_ in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.ResourceInfo,
            error_details_pb2.RetryInfo,
        ):
            if any_.Is(kind.DESCRIPTOR):
                msg = kind()
                any_.Unpack(msg)
                out[kind] = msg
    return out


@pytest.mark.parametrize(
    ("err", "code"), EVERY_ERROR, ids=lambda x: type(x).__name__ if isinstance(x, Exception) else ""
)
def test_every_domain_error_round_trips_with_its_code(err: DomainError, code: grpc.StatusCode) -> None:
    status = to_grpc_status(err)
    assert status.code is code
    assert status.details == err.message
    back = from_rpc_status(over_the_wire(status))
    assert type(back) is type(err)
    assert back == err  # same message and the same fields
    assert back.fields == err.fields


def test_invalid_argument_carries_field_violations() -> None:
    err = InvalidArgument([FieldViolation("qty", "must be > 0"), FieldViolation("lines[0].owner", "bad")])
    bad = details_of(to_rpc_status(err))[error_details_pb2.BadRequest]
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("qty", "must be > 0"),
        ("lines[0].owner", "bad"),
    ]


def test_insufficient_stock_carries_reason_domain_and_quantities() -> None:
    status = to_rpc_status(InsufficientStock("SKU-1", "S1", requested=5, available=2))
    info = details_of(status)[error_details_pb2.ErrorInfo]
    assert info.reason == "INSUFFICIENT_STOCK"
    assert info.domain == ERROR_DOMAIN
    assert dict(info.metadata) == {"sku": "SKU-1", "site": "S1", "requested": "5", "available": "2"}
    back = from_rpc_status(status)
    assert isinstance(back, InsufficientStock)
    assert (back.requested, back.available, back.sku, back.site) == (5, 2, "SKU-1", "S1")


def test_failed_precondition_keeps_reason_and_metadata() -> None:
    err = FailedPrecondition("HOLD_EXPIRED", "hold 'H' is expired", {"hold_id": "H", "state": "expired"})
    info = details_of(to_rpc_status(err))[error_details_pb2.ErrorInfo]
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "HOLD_EXPIRED",
        ERROR_DOMAIN,
        {"hold_id": "H", "state": "expired"},
    )


def test_not_found_carries_resource_info() -> None:
    details = details_of(to_rpc_status(NotFound("site", "S-404")))
    resource = details[error_details_pb2.ResourceInfo]
    assert (resource.resource_type, resource.resource_name) == ("site", "S-404")
    assert details[error_details_pb2.ErrorInfo].reason == "SITE_NOT_FOUND"


def test_request_conflict_reasons() -> None:
    request = details_of(to_rpc_status(RequestConflict("req-1", differs="qty")))[error_details_pb2.ErrorInfo]
    assert request.reason == "REQUEST_ID_REUSED"
    assert dict(request.metadata) == {"request_id": "req-1", "what": "request id", "differs": "qty"}
    hold = details_of(to_rpc_status(RequestConflict("H-1", "hold id")))[error_details_pb2.ErrorInfo]
    assert hold.reason == "HOLD_ID_REUSED"


@pytest.mark.parametrize("err", [Overloaded("queue", 10), Unavailable("recovering")])
def test_overload_and_recovery_suggest_a_retry_delay(err: DomainError) -> None:
    status = to_rpc_status(err, retry_delay_ms=1_250)
    assert retry_delay_s(status) == pytest.approx(1.25)
    assert is_retryable(status)


@pytest.mark.parametrize(
    "err",
    [InvalidArgument([FieldViolation("qty", "x")]), NotFound("sku", "x"), DeadlineExceeded(), Internal("x")],
)
def test_refusals_are_not_retryable(err: DomainError) -> None:
    assert not is_retryable(to_rpc_status(err))
    assert retry_delay_s(to_rpc_status(err)) is None


def test_a_subclass_maps_to_its_base_code() -> None:
    """A shard's CellMoved is an Unavailable: the client sees Unavailable, the message kept."""
    err = CellMoved("SKU-1", "S1", "pin-0000abcd")
    status = to_rpc_status(err)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    info = details_of(status)[error_details_pb2.ErrorInfo]
    assert info.metadata["to_shard"] == "pin-0000abcd"
    back = from_rpc_status(status)
    assert type(back) is Unavailable
    assert back.message == err.message


def test_internal_status_leaks_nothing_but_an_incident_id() -> None:
    status = over_the_wire(internal_status("abc123"))
    assert status.code == grpc.StatusCode.INTERNAL.value[0]
    assert status.message == "internal error (incident abc123)"
    assert details_of(status)[error_details_pb2.ErrorInfo].metadata["incident_id"] == "abc123"
    assert isinstance(from_rpc_status(status), Internal)


# ---- statuses the transport makes (no rich details) ----


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, Overloaded),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPrecondition),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, RequestConflict),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.INTERNAL, Internal),
    ],
)
def test_bare_transport_statuses_become_typed_errors(code: grpc.StatusCode, expected: type[DomainError]) -> None:
    back = from_rpc_status(rich_status(code, "transport said so", None))
    assert type(back) is expected
    assert back.message == "transport said so"


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.CANCELLED]
)
def test_codes_without_a_domain_type_become_remote_errors(code: grpc.StatusCode) -> None:
    back = from_rpc_status(rich_status(code, "nope", None))
    assert isinstance(back, RemoteError)
    assert (back.code, back.message) == (code, "nope")


def test_concurrency_limit_is_retryable_but_an_oversize_message_is_not() -> None:
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert is_retryable(rich_status(exhausted, "Concurrent RPC limit exceeded!", None))
    assert not is_retryable(rich_status(exhausted, "Received message larger than max (5000 vs. 100)", None))
    assert is_retryable(rich_status(grpc.StatusCode.UNAVAILABLE, "Connection refused", None))


def test_a_trailer_with_another_code_or_garbage_is_ignored() -> None:
    trailer = to_grpc_status(NotFound("sku", "x")).trailing_metadata
    status = rich_status(grpc.StatusCode.UNAVAILABLE, "went away", trailer)
    assert (status.code, status.message, len(status.details)) == (grpc.StatusCode.UNAVAILABLE.value[0], "went away", 0)
    garbled = rich_status(grpc.StatusCode.NOT_FOUND, "gone", ((DETAILS_METADATA_KEY, b"\xff\xff\xff"),))
    assert isinstance(from_rpc_status(garbled), NotFound)


def test_unknown_detail_types_are_skipped() -> None:
    status = to_rpc_status(InsufficientStock("A", "B", 3, 1))
    debug = any_pb2.Any()
    debug.Pack(error_details_pb2.DebugInfo(detail="server internals"))
    status.details.insert(0, debug)
    assert from_rpc_status(status) == InsufficientStock("A", "B", 3, 1)


# ---- proto → domain: what only the wire can get wrong ----


def violations(err: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in err.violations}


def test_unknown_removal_strategy_names_the_line() -> None:
    lines = [pb.ReserveLine(sku="A", site="B", qty=1), pb.ReserveLine(sku="A", site="B", qty=1, strategy=42)]
    with pytest.raises(InvalidArgument) as info:
        convert.hold_lines_from_pb(lines)
    assert set(violations(info.value)) == {"lines[1].strategy"}


def test_consume_with_unknown_strategy_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.consume_from_pb(pb.ConsumeRequest(request_id="r", sku="A", site="B", qty=1, strategy=7))
    assert "strategy" in violations(info.value)


def test_nan_shelf_life_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.hold_lines_from_pb([pb.ReserveLine(sku="A", site="B", qty=1, min_shelf_life_days=math.nan)])
    assert "lines[0].min_shelf_life_days" in violations(info.value)


def test_dimensions_unknown_unspecified_and_duplicates() -> None:
    req = pb.GetAvailabilityRequest(
        sku="A", site="B", group_by=[pb.DIMENSION_BIN, pb.DIMENSION_UNSPECIFIED, 99, pb.DIMENSION_BIN]
    )
    with pytest.raises(InvalidArgument) as info:
        convert.availability_query_from_pb(req, DEFAULT_DICTIONARY)
    assert set(violations(info.value)) == {"group_by[1]", "group_by[2]", "group_by[3]"}


def test_filter_is_checked_against_the_status_dictionary() -> None:
    req = pb.QueryStockRequest(
        skus=["A", ""],
        filter=pb.SliceFilter(statuses=["available", "avialable"], owner="someone", max_shelf_life_days=math.inf),
    )
    with pytest.raises(InvalidArgument) as info:
        convert.stock_query_from_pb(req, DEFAULT_DICTIONARY)
    assert set(violations(info.value)) == {
        "skus[1]",
        "filter.statuses[1]",
        "filter.owner",
        "filter.max_shelf_life_days",
    }


def test_put_without_the_message_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.put_sku_from_pb(pb.PutSkuRequest(request_id="r"))
    assert violations(info.value) == {"sku": "is required"}
    with pytest.raises(InvalidArgument):
        convert.put_site_from_pb(pb.PutSiteRequest(request_id="r"))


def test_defaults_of_unset_proto_fields() -> None:
    receive = convert.receive_from_pb(pb.ReceiveRequest(request_id="r", sku="A", site="B", lot_id="L", qty=1))
    assert (receive.status, receive.owner) == ("receiving", "own")
    adjust = convert.adjust_from_pb(pb.AdjustRequest(request_id="r", sku="A", site="B", lot_id="L"))
    assert (adjust.status, adjust.owner, adjust.reason) == ("available", "own", "count")
    query = convert.stock_query_from_pb(pb.QueryStockRequest(), DEFAULT_DICTIONARY)
    assert (query.by_sku, query.by_site, query.limit) == (True, True, convert.DEFAULT_QUERY_LIMIT)
    explicit = convert.stock_query_from_pb(pb.QueryStockRequest(by_sku=False, limit=5), DEFAULT_DICTIONARY)
    assert (explicit.by_sku, explicit.by_site, explicit.limit) == (False, True, 5)
    assert convert.commit_lines_from_pb([]) is None


def test_enum_tables_cover_every_domain_value() -> None:
    assert set(convert.STRATEGY_TO_PB) == set(Strategy)
    assert set(convert.DIMENSION_TO_PB) == set(Dimension)
    assert convert.STRATEGY_TO_PB[Strategy.FEFO] == 0  # FEFO is the proto default
