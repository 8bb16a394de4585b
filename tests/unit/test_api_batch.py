"""A batch's per-command error says what the unary status says, and the batch bounds hold.

The client rebuilds a command's error into the rich status a unary call carries, then
raises from it exactly as for a unary call; so every DomainError must survive
DomainError → Status → CommandError → Status → DomainError unchanged.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from engine.api import convert
from engine.api.autobatch import BatchPolicy
from engine.api.batch import MAX_BATCH_COMMANDS, REASON_BATCH_TOO_LARGE, BatchRunner
from engine.api.errors import from_rpc_status, is_retryable, retry_delay_s, rich_status, to_rpc_status
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.errors import DomainError, Overloaded, Unavailable
from tests.unit.test_api_errors import EVERY_ERROR


def through_a_batch(err: DomainError) -> DomainError:
    command_error = convert.command_error_from_status(to_rpc_status(err, retry_delay_ms=250))
    # The batch reply goes over the wire as bytes too.
    command_error = pb.CommandError.FromString(command_error.SerializeToString())
    back = from_rpc_status(convert.status_from_command_error(command_error))
    assert isinstance(back, DomainError)
    return back


@pytest.mark.parametrize(
    ("err", "code"), EVERY_ERROR, ids=lambda x: type(x).__name__ if isinstance(x, Exception) else ""
)
def test_every_domain_error_survives_a_batch(err: DomainError, code: grpc.StatusCode) -> None:
    back = through_a_batch(err)
    assert type(back) is type(err)
    assert back == err
    assert back.fields == err.fields
    assert convert.command_error_from_status(to_rpc_status(err)).code == code.value[0]


@pytest.mark.parametrize("err", [Overloaded("queue", 10), Unavailable("recovering")])
def test_a_retry_hint_survives_a_batch(err: DomainError) -> None:
    status = convert.status_from_command_error(
        convert.command_error_from_status(to_rpc_status(err, retry_delay_ms=250))
    )
    assert retry_delay_s(status) == pytest.approx(0.25)
    assert is_retryable(status)


def test_errors_read_as_plain_fields() -> None:
    insufficient = next(e for e, _ in EVERY_ERROR if type(e).__name__ == "InsufficientStock")
    flat = convert.command_error_from_status(to_rpc_status(insufficient))
    assert (flat.reason, flat.domain) == ("INSUFFICIENT_STOCK", "lotwise.dev")
    assert flat.metadata["requested"] == "5"
    assert flat.metadata["available"] == "2"
    invalid = next(e for e, _ in EVERY_ERROR if type(e).__name__ == "InvalidArgument")
    assert [v.field for v in convert.command_error_from_status(to_rpc_status(invalid)).field_violations] == [
        "qty",
        "lines[1].sku",
    ]


def test_an_oversize_batch_is_refused_for_good() -> None:
    runner = BatchRunner({}, retry_delay_ms=100, max_commands=2)
    get = pb.Command(get_hold=pb.GetHoldRequest(hold_id="h"))
    assert runner.check(pb.CommandBatch(commands=[get, get])) is None
    refusal = runner.check(pb.CommandBatch(commands=[get, get, get]))
    assert refusal is not None
    assert refusal.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rich_status(refusal.code, refusal.details, refusal.trailing_metadata)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == REASON_BATCH_TOO_LARGE
    assert dict(info.metadata) == {"what": "batch commands", "limit": "2", "size": "3"}
    assert not is_retryable(status)  # the same batch would fail the same way


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_commands"):
        BatchPolicy(max_batch_commands=MAX_BATCH_COMMANDS + 1)
    with pytest.raises(ValueError, match="max_pending_commands"):
        BatchPolicy(max_batch_commands=10, max_pending_commands=5)
    with pytest.raises(ValueError, match="batch bounds"):
        BatchRunner({}, retry_delay_ms=100, max_commands=0)
