"""Typed domain errors cross Ray process boundaries: each one pickles by its fields (§12)."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from engine.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InsufficientStock,
    Internal,
    InvalidArgument,
    InvariantViolation,
    NotFound,
    Overloaded,
    PermissionDenied,
    RequestConflict,
    Unavailable,
    invalid,
)

EXAMPLES: list[DomainError] = [
    DomainError("something went wrong", detail="x", count=3),
    InvalidArgument((FieldViolation("qty", "must be > 0"), FieldViolation("lines[0].owner", "bad owner"))),
    invalid("hold_id", "must not be empty"),
    NotFound("hold", "h-1"),
    FailedPrecondition("TRANSITION_NOT_ALLOWED", "damaged cannot become available", {"from_status": "damaged"}),
    FailedPrecondition("HOLD_EXPIRED", "hold 'h' is expired"),
    InsufficientStock("SKU-1", "S1", requested=7, available=2),
    RequestConflict("req-1"),
    RequestConflict("h-1", "hold id"),
    PermissionDenied("token lacks inventory.write"),
    Overloaded("shard queue", 10_000),
    Unavailable("shard 3 is recovering"),
    DeadlineExceeded(),
    DeadlineExceeded("deadline passed in the gateway"),
    Internal(),
    Internal("shard 2 raised KeyError"),
]

# The attributes each error type promises to carry (beyond message and fields).
ATTRIBUTES: dict[type[DomainError], tuple[str, ...]] = {
    DomainError: (),
    InvalidArgument: ("violations",),
    NotFound: ("resource_type", "resource_name"),
    FailedPrecondition: ("reason", "metadata"),
    InsufficientStock: ("reason", "metadata", "sku", "site", "requested", "available"),
    RequestConflict: ("request_id", "what"),
    PermissionDenied: (),
    Overloaded: ("what", "limit"),
    Unavailable: (),
    DeadlineExceeded: (),
    Internal: (),
}


def all_subclasses(cls: type[Any]) -> set[type[Any]]:
    found: set[type[Any]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def round_trip(err: DomainError, protocol: int) -> DomainError:
    copied = pickle.loads(pickle.dumps(err, protocol=protocol))
    assert isinstance(copied, DomainError)
    return copied


def test_every_domain_error_type_has_an_example() -> None:
    domain_types = {c for c in all_subclasses(DomainError) if c.__module__ == "engine.domain.errors"}
    assert domain_types | {DomainError} == {type(e) for e in EXAMPLES}
    assert set(ATTRIBUTES) == {type(e) for e in EXAMPLES}


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("err", EXAMPLES, ids=lambda e: f"{type(e).__name__}")
def test_domain_error_round_trips_through_pickle(err: DomainError, protocol: int) -> None:
    copied = round_trip(err, protocol)
    assert type(copied) is type(err)
    assert copied == err
    assert copied is not err
    assert (copied.message, copied.fields, copied.code, str(copied)) == (err.message, err.fields, err.code, str(err))
    for name in ATTRIBUTES[type(err)]:
        assert getattr(copied, name) == getattr(err, name), name


@pytest.mark.parametrize("err", EXAMPLES, ids=lambda e: f"{type(e).__name__}")
def test_domain_error_copies_equal_the_original(err: DomainError) -> None:
    assert copy.copy(err) == err
    assert copy.deepcopy(err) == err
    assert hash(copy.deepcopy(err)) == hash(err)


def test_insufficient_stock_keeps_its_numbers_as_integers() -> None:
    copied = round_trip(InsufficientStock("SKU-1", "S1", 7, 2), pickle.HIGHEST_PROTOCOL)
    assert isinstance(copied, InsufficientStock)
    assert (copied.requested, copied.available) == (7, 2)
    assert copied.reason == "INSUFFICIENT_STOCK"
    assert copied.metadata == {"sku": "SKU-1", "site": "S1", "requested": "7", "available": "2"}
    assert isinstance(copied, FailedPrecondition)


def test_invalid_argument_keeps_its_violations_in_order() -> None:
    err = InvalidArgument([FieldViolation("b", "second"), FieldViolation("a", "first")])
    copied = round_trip(err, pickle.HIGHEST_PROTOCOL)
    assert isinstance(copied, InvalidArgument)
    assert copied.violations == (FieldViolation("b", "second"), FieldViolation("a", "first"))
    assert copied.message == "b: second; a: first"


def test_errors_inside_a_cached_answer_round_trip() -> None:
    window = {"req-1": (1_000, InsufficientStock("SKU-1", "S1", 3, 0)), "req-2": (2_000, NotFound("lot", "L9"))}
    assert pickle.loads(pickle.dumps(window)) == window


def test_errors_differ_by_type_and_fields() -> None:
    assert NotFound("hold", "h1") != NotFound("hold", "h2")
    assert NotFound("hold", "h1") != NotFound("lot", "h1")
    assert RequestConflict("x") != RequestConflict("x", "hold id")
    assert FailedPrecondition("A", "m") != FailedPrecondition("B", "m")
    assert InsufficientStock("s", "t", 1, 0) != FailedPrecondition(
        "INSUFFICIENT_STOCK",
        "s@t: requested 1, available 0",
        {"sku": "s", "site": "t", "requested": "1", "available": "0"},
    )


def test_codes_map_to_grpc_status_names() -> None:
    assert {type(e): e.code for e in EXAMPLES} == {
        DomainError: "UNKNOWN",
        InvalidArgument: "INVALID_ARGUMENT",
        NotFound: "NOT_FOUND",
        FailedPrecondition: "FAILED_PRECONDITION",
        InsufficientStock: "FAILED_PRECONDITION",
        RequestConflict: "ALREADY_EXISTS",
        PermissionDenied: "PERMISSION_DENIED",
        Overloaded: "RESOURCE_EXHAUSTED",
        Unavailable: "UNAVAILABLE",
        DeadlineExceeded: "DEADLINE_EXCEEDED",
        Internal: "INTERNAL",
    }


def test_invariant_violation_is_not_a_domain_error() -> None:
    # A bug is never an answer to bad input: it must not be mapped to a gRPC status code.
    assert not issubclass(InvariantViolation, DomainError)
