"""Typed domain errors (DESIGN.md §12).

Every error declares its data as typed attributes (and names them in `FIELDS`), so the
API layer can turn it into a gRPC status with google.rpc details without parsing
messages. Errors cross process boundaries (Ray results, snapshots of the idempotency
window), so each one rebuilds from its constructor's arguments (`__reduce__`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every expected, typed refusal. A refused command changes nothing.

    A subclass declares its fields as annotated attributes set in its constructor and
    lists them in `FIELDS`; `fields` is then exactly those, by name. The base type itself
    carries free-form `details` instead (errors of peers the API does not know)."""

    code: ClassVar[str] = "UNKNOWN"
    FIELDS: ClassVar[tuple[str, ...]] = ()  # the declared fields: equality, ErrorInfo metadata
    message: str
    details: dict[str, Any]

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def fields(self) -> dict[str, Any]:
        """The error's data by name: the declared fields, or the base type's details."""
        if self.FIELDS:
            return {name: getattr(self, name) for name in self.FIELDS}
        return dict(self.details)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DomainError)
            and type(other) is type(self)
            and other.message == self.message
            and other.fields == self.fields
        )

    def __hash__(self) -> int:
        return hash((type(self), self.message))


def _rebuild(cls: type[DomainError], message: str, details: dict[str, Any]) -> DomainError:
    err = cls.__new__(cls)
    DomainError.__init__(err, message, **details)
    return err


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    """The request is malformed: maps to INVALID_ARGUMENT with field violations."""

    code = "INVALID_ARGUMENT"
    FIELDS = ("violations",)
    violations: tuple[FieldViolation, ...]

    def __init__(self, violations: tuple[FieldViolation, ...] | list[FieldViolation]) -> None:
        self.violations = tuple(violations)
        message = "; ".join(f"{v.field}: {v.description}" for v in self.violations) or "invalid argument"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (InvalidArgument, (self.violations,))


def invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument((FieldViolation(field, description),))


class NotFound(DomainError):
    """An sku, site, lot or hold that does not exist: maps to NOT_FOUND."""

    code = "NOT_FOUND"
    FIELDS = ("resource_type", "resource_name")
    resource_type: str
    resource_name: str

    def __init__(self, resource_type: str, resource_name: str) -> None:
        super().__init__(f"{resource_type} {resource_name!r} not found")
        self.resource_type = resource_type
        self.resource_name = resource_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (NotFound, (self.resource_type, self.resource_name))


class FailedPrecondition(DomainError):
    """The state does not allow the command: maps to FAILED_PRECONDITION + ErrorInfo."""

    code = "FAILED_PRECONDITION"
    FIELDS = ("reason", "metadata")
    reason: str
    metadata: dict[str, str]

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.message, self.metadata))


class InsufficientStock(FailedPrecondition):
    """Not enough free stock matched the constraints. Carries what was available (its
    `fields` stay FailedPrecondition's: the numbers travel in `metadata` as strings)."""

    sku: str
    site: str
    requested: int
    available: int

    def __init__(self, sku: str, site: str, requested: int, available: int) -> None:
        FailedPrecondition.__init__(
            self,
            "INSUFFICIENT_STOCK",
            f"{sku}@{site}: requested {requested}, available {available}",
            {"sku": sku, "site": site, "requested": str(requested), "available": str(available)},
        )
        self.sku, self.site, self.requested, self.available = sku, site, requested, available

    def __reduce__(self) -> tuple[Any, ...]:
        return (InsufficientStock, (self.sku, self.site, self.requested, self.available))


class RequestConflict(DomainError):
    """A request (or hold) id reused with a different payload: maps to ALREADY_EXISTS.

    `differs` names what is not the same as the first use, comma-separated — the command's
    fields that differ, "request_id" when a hold id comes back under another request id,
    or "idempotency_window" when the same request comes back after its answer was forgotten —
    so the caller learns what to fix instead of "a different payload". A plain string: it
    travels as it is in ErrorInfo metadata and in the snapshots' remembered refusals."""

    code = "ALREADY_EXISTS"
    FIELDS = ("request_id", "what", "differs")
    request_id: str
    what: str
    differs: str

    def __init__(self, request_id: str, what: str = "request id", differs: str = "") -> None:
        super().__init__(_conflict_message(request_id, what, differs))
        self.request_id = request_id
        self.what = what
        self.differs = differs

    def __reduce__(self) -> tuple[Any, ...]:
        return (RequestConflict, (self.request_id, self.what, self.differs))


def _conflict_message(request_id: str, what: str, differs: str) -> str:
    used = f"{what} {request_id!r} was already used"
    if differs == "idempotency_window":
        return (
            f"{used} by this same request id, longer ago than the idempotency window remembers "
            f"answers: look the {what} up instead of sending it again, or give a new {what}"
        )
    if differs == "request_id":
        return f"{used} under another request id: retry with the first request id, or give a new {what}"
    if differs:
        return f"{used} with a different {differs.replace(',', ', ')}: retry with the same values, or give a new {what}"
    return f"{used} with a different payload: retry with the same values, or give a new {what}"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PermissionDenied, (self.message,))


class InvariantViolation(Exception):
    """A bug, never an answer to bad input. Raised, not asserted, so `-O` keeps it."""


class Overloaded(DomainError):
    """A bounded queue is full: maps to RESOURCE_EXHAUSTED; the caller should back off."""

    code = "RESOURCE_EXHAUSTED"
    FIELDS = ("what", "limit")
    what: str
    limit: int

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} is full ({limit}); retry with backoff")
        self.what = what
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:
        return (Overloaded, (self.what, self.limit))


class Unavailable(DomainError):
    """A shard is starting or recovering: maps to UNAVAILABLE; retry with the same request id."""

    code = "UNAVAILABLE"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unavailable, (self.message,))


class DeadlineExceeded(DomainError):
    """The caller's deadline passed before the command was dispatched: nothing was applied."""

    code = "DEADLINE_EXCEEDED"

    def __init__(self, message: str = "deadline passed before the command was dispatched") -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (DeadlineExceeded, (self.message,))


class Internal(DomainError):
    """A bug met while serving a command (logged with its traceback on the server side)."""

    code = "INTERNAL"

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Internal, (self.message,))
