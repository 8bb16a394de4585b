"""DomainError ↔ gRPC status with google.rpc details (DESIGN.md §12).

The server turns every typed refusal into a status code plus machine-readable details
(`google.rpc.BadRequest`, `ErrorInfo`, `ResourceInfo`, `RetryInfo`), carried in the
`grpc-status-details-bin` trailer. The client parses those details back into the very
same exception types, so code written against `Gateway.local()` and code written against
a remote server handle errors identically.

Every detail we send also carries an `ErrorInfo` (domain "lotwise.dev") whose `reason`
is a stable UPPER_SNAKE identifier: clients switch on the reason, never on the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

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

ERROR_DOMAIN = "lotwise.dev"
DETAILS_METADATA_KEY = "grpc-status-details-bin"
DEFAULT_RETRY_DELAY_MS = 100  # what RetryInfo suggests when overloaded or recovering

REASON_INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"
REASON_REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
REASON_OVERLOADED = "OVERLOADED"
REASON_UNAVAILABLE = "UNAVAILABLE"
REASON_DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
REASON_PERMISSION_DENIED = "PERMISSION_DENIED"
REASON_INTERNAL = "INTERNAL"
# ErrorInfo OVERLOADED's "bound": which bound refused. A queue behind the door (a shard's
# micro-batch queue, a hold index) is "queue"; the door's own are in engine.api.admission.
BOUND_QUEUE = "queue"

# The statuses a client may retry with the same request id: the server either did not
# apply the request or will answer the retry with the first answer (idempotency).
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})

_E = TypeVar("_E", bound=DomainError)


class RemoteError(Exception):
    """A gRPC status the domain has no type for (UNIMPLEMENTED, UNAUTHENTICATED, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


# ---- server side: DomainError → google.rpc.Status ----


def to_rpc_status(err: DomainError, *, retry_delay_ms: int = DEFAULT_RETRY_DELAY_MS) -> status_pb2.Status:
    """The rich status that describes `err`: its code, message and typed details."""
    code = _status_code(err)
    details: list[Message] = []
    match err:
        case InvalidArgument():
            details.append(_bad_request(err.violations))
        case FailedPrecondition():  # InsufficientStock too: its metadata has requested/available
            details.append(_error_info(err.reason, err.metadata))
        case NotFound():
            details.append(
                error_details_pb2.ResourceInfo(
                    resource_type=err.resource_type, resource_name=err.resource_name, description=err.message
                )
            )
            details.append(_error_info(_not_found_reason(err.resource_type), _str_fields(err)))
        case RequestConflict():
            details.append(_error_info(_conflict_reason(err.what), _str_fields(err)))
        case PermissionDenied():  # AccessDenied names the action and the resource
            details.append(_error_info(REASON_PERMISSION_DENIED, _str_fields(err)))
        case Overloaded():
            details.append(_error_info(REASON_OVERLOADED, {"bound": BOUND_QUEUE, **_str_fields(err)}))
            details.append(_retry_info(retry_delay_ms))
        case Unavailable():
            details.append(_error_info(REASON_UNAVAILABLE, _str_fields(err)))
            details.append(_retry_info(retry_delay_ms))
        case DeadlineExceeded():
            details.append(_error_info(REASON_DEADLINE_EXCEEDED, {}))
        case Internal():
            details.append(_error_info(REASON_INTERNAL, {}))
    return _status(code, err.message, details)


def to_grpc_status(err: DomainError, *, retry_delay_ms: int = DEFAULT_RETRY_DELAY_MS) -> grpc.Status:
    """What `context.abort_with_status` takes: code, message and the details trailer."""
    return rpc_status.to_status(to_rpc_status(err, retry_delay_ms=retry_delay_ms))


def overload_status(what: str, limit: int, *, bound: str, retry_delay_ms: int, **metadata: str) -> grpc.Status:
    """RESOURCE_EXHAUSTED for a call shed at the door (engine.api.admission): ErrorInfo
    OVERLOADED names the bound (and its limit), RetryInfo says when to try again. The
    client rebuilds it as Overloaded(what, limit), as it does a full shard queue."""
    err = Overloaded(what, limit)
    info = _error_info(REASON_OVERLOADED, {**_str_fields(err), "bound": bound, **metadata})
    return rpc_status.to_status(
        _status(grpc.StatusCode.RESOURCE_EXHAUSTED, err.message, [info, _retry_info(retry_delay_ms)])
    )


def internal_status(incident_id: str) -> grpc.Status:
    """INTERNAL for a bug: a reference the operator can grep the logs for, no traceback."""
    message = f"internal error (incident {incident_id})"
    return rpc_status.to_status(
        _status(grpc.StatusCode.INTERNAL, message, [_error_info(REASON_INTERNAL, {"incident_id": incident_id})])
    )


def _status_code(err: DomainError) -> grpc.StatusCode:
    # Each DomainError names its gRPC code; an unknown name is a bug worth surfacing as UNKNOWN.
    return grpc.StatusCode.__members__.get(err.code, grpc.StatusCode.UNKNOWN)


def _status(code: grpc.StatusCode, message: str, details: Iterable[Message]) -> status_pb2.Status:
    packed = []
    for detail in details:
        any_ = any_pb2.Any()
        any_.Pack(detail)
        packed.append(any_)
    return status_pb2.Status(code=code.value[0], message=message, details=packed)


def _bad_request(violations: Iterable[FieldViolation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in violations
        ]
    )


def _error_info(reason: str, metadata: dict[str, str]) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=ERROR_DOMAIN, metadata={k: str(v) for k, v in metadata.items()}
    )


def _retry_info(delay_ms: int) -> error_details_pb2.RetryInfo:
    return error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=delay_ms // 1000, nanos=(delay_ms % 1000) * 1_000_000)
    )


def _str_fields(err: DomainError) -> dict[str, str]:
    """An error's scalar fields as ErrorInfo metadata (which maps string → string)."""
    return {k: str(v) for k, v in err.fields.items() if isinstance(v, str | int | float | bool)}


def _not_found_reason(resource_type: str) -> str:
    return f"{resource_type.upper().replace(' ', '_')}_NOT_FOUND" if resource_type else "NOT_FOUND"


def _conflict_reason(what: str) -> str:
    # "request id" → REQUEST_ID_REUSED, "hold id" → HOLD_ID_REUSED.
    return f"{what.upper().replace(' ', '_')}_REUSED" if what else REASON_REQUEST_ID_REUSED


# ---- client side: gRPC status → DomainError ----


def rich_status(
    code: grpc.StatusCode, message: str | None, trailing_metadata: Iterable[tuple[str, Any]] | None
) -> status_pb2.Status:
    """The google.rpc.Status a call ended with; a bare one when the server sent no details
    (transport errors: deadline, connection refused, message too large, ...)."""
    for key, value in trailing_metadata or ():
        if key == DETAILS_METADATA_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except DecodeError:
                break  # a garbled trailer must not hide the status code itself
            if status.code == code.value[0]:
                return status
            break
    return status_pb2.Status(code=code.value[0], message=message or "")


def status_of_rpc_error(err: grpc.RpcError) -> status_pb2.Status:
    """The rich status of a failed call (grpc.aio.AioRpcError or a sync grpc.Call)."""
    call: Any = err
    return rich_status(call.code(), call.details(), call.trailing_metadata())


def from_rpc_error(err: grpc.RpcError) -> DomainError | RemoteError:
    """The typed exception a failed call stands for."""
    return from_rpc_status(status_of_rpc_error(err))


def from_rpc_status(status: status_pb2.Status) -> DomainError | RemoteError:
    code = _code_of(status.code)
    message = status.message
    details = _unpack(status)
    info = details.get(error_details_pb2.ErrorInfo)
    meta: dict[str, str] = dict(info.metadata) if info is not None else {}
    match code:
        case grpc.StatusCode.INVALID_ARGUMENT:
            return _invalid_argument(message, details.get(error_details_pb2.BadRequest))
        case grpc.StatusCode.FAILED_PRECONDITION:
            return _failed_precondition(message, info)
        case grpc.StatusCode.NOT_FOUND:
            resource = details.get(error_details_pb2.ResourceInfo)
            if resource is None:
                return _verbatim(NotFound("", ""), message)
            return NotFound(resource.resource_type, resource.resource_name)
        case grpc.StatusCode.ALREADY_EXISTS:
            if "request_id" not in meta:
                return _verbatim(RequestConflict(""), message)
            return RequestConflict(meta["request_id"], meta.get("what", "request id"), meta.get("differs", ""))
        case grpc.StatusCode.PERMISSION_DENIED:
            return PermissionDenied(message)
        case grpc.StatusCode.RESOURCE_EXHAUSTED:
            if "what" in meta and meta.get("limit", "").isdigit():
                return Overloaded(meta["what"], int(meta["limit"]))
            # The transport's own limit (max concurrent RPCs, message size): no fields.
            return _verbatim(Overloaded("server", 0), message)
        case grpc.StatusCode.UNAVAILABLE:
            return Unavailable(message)
        case grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(message)
        case grpc.StatusCode.INTERNAL:
            return Internal(message)
    return RemoteError(code, message)


def retry_delay_s(status: status_pb2.Status) -> float | None:
    """The server's RetryInfo hint, in seconds, if it sent one."""
    info = _unpack(status).get(error_details_pb2.RetryInfo)
    if info is None:
        return None
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


def is_retryable(status: status_pb2.Status) -> bool:
    """UNAVAILABLE always; RESOURCE_EXHAUSTED unless it is a request that can never fit.

    An over-size message is RESOURCE_EXHAUSTED too, but it fails the same way every time;
    the server marks overload it wants retried with RetryInfo.
    """
    code = _code_of(status.code)
    if code not in RETRYABLE_CODES:
        return False
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay_s(status) is None:
        return "larger than max" not in status.message
    return True


def _invalid_argument(message: str, bad: error_details_pb2.BadRequest | None) -> InvalidArgument:
    if bad is None or not bad.field_violations:
        return _verbatim(InvalidArgument(()), message)
    return InvalidArgument([FieldViolation(v.field, v.description) for v in bad.field_violations])


def _failed_precondition(message: str, info: error_details_pb2.ErrorInfo | None) -> FailedPrecondition:
    if info is None:
        return FailedPrecondition("FAILED_PRECONDITION", message, {})
    meta = dict(info.metadata)
    if info.reason == REASON_INSUFFICIENT_STOCK:
        try:
            return InsufficientStock(meta["sku"], meta["site"], int(meta["requested"]), int(meta["available"]))
        except (KeyError, ValueError):
            pass  # a peer that sent less than we expect: keep the reason and metadata as they are
    return FailedPrecondition(info.reason, message, meta)


def _verbatim(err: _E, message: str) -> _E:
    """`err` with the server's message kept verbatim (no constructor rewording)."""
    err.message = message
    err.args = (message,)
    return err


def _code_of(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def _unpack(status: status_pb2.Status) -> dict[type[Message], Any]:
    """The details we understand, by type; the first of each type wins, unknown ones are skipped."""
    kinds = (
        error_details_pb2.BadRequest,
        error_details_pb2.ErrorInfo,
        error_details_pb2.ResourceInfo,
        error_details_pb2.RetryInfo,
    )
    out: dict[type[Message], Any] = {}
    for any_ in status.details:
        for kind in kinds:
            # Unpack answers whether the Any held that type (Is() is mistyped in the stubs).
            msg = kind()
            if any_.Unpack(msg):
                out.setdefault(kind, msg)
                break
    return out
