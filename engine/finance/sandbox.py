"""The review sandbox: pending → (annotated) → approved → posted, or rejected.

Approval is never by the voucher's preparer (审核人 ≠ 制单人): the follower prepares as
"system:finance", a person who records a supplier invoice prepares that one. A posted
voucher is immutable: it is corrected by a reversal, a new voucher. Every transition is a
pure function returning the next version; a refused one raises FailedPrecondition with a
reason and changes nothing."""

from __future__ import annotations

from dataclasses import replace

from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from engine.finance.vouchers import Note, Voucher, VoucherState

MAX_NOTE_CHARS = 2_000
MAX_NOTES = 100
REASON_POSTED = "VOUCHER_POSTED"
REASON_REJECTED = "VOUCHER_REJECTED"
REASON_NOT_APPROVED = "VOUCHER_NOT_APPROVED"
REASON_SELF_APPROVAL = "VOUCHER_SELF_APPROVAL"
REASON_TOO_MANY_NOTES = "VOUCHER_TOO_MANY_NOTES"

_OPEN = (VoucherState.PENDING, VoucherState.ANNOTATED)


def _check_text(value: str, field: str) -> None:
    if not value.strip():
        raise InvalidArgument([FieldViolation(field, "is required")])
    if len(value) > MAX_NOTE_CHARS:
        raise InvalidArgument([FieldViolation(field, f"must be at most {MAX_NOTE_CHARS} characters")])


def _not_final(voucher: Voucher) -> None:
    if voucher.state == VoucherState.POSTED:
        raise FailedPrecondition(
            REASON_POSTED, f"voucher {voucher.voucher_id} is posted: it cannot change; reverse it with a new voucher"
        )
    if voucher.state == VoucherState.REJECTED:
        raise FailedPrecondition(REASON_REJECTED, f"voucher {voucher.voucher_id} was rejected: {voucher.reason}")


def annotate(voucher: Voucher, author: str, note: str, at_ms: int) -> Voucher:
    _check_text(note, "note")
    _not_final(voucher)
    if len(voucher.notes) >= MAX_NOTES:
        raise FailedPrecondition(REASON_TOO_MANY_NOTES, f"voucher {voucher.voucher_id} has {MAX_NOTES} notes already")
    state = VoucherState.ANNOTATED if voucher.state == VoucherState.PENDING else voucher.state
    return replace(voucher, state=state, notes=(*voucher.notes, Note(author, at_ms, note)), version=voucher.version + 1)


def approve(voucher: Voucher, reviewer: str) -> Voucher:
    _not_final(voucher)
    if voucher.state == VoucherState.APPROVED:
        return voucher  # approving twice is the same approval
    if reviewer == voucher.preparer:
        raise FailedPrecondition(
            REASON_SELF_APPROVAL, f"{reviewer} prepared voucher {voucher.voucher_id}: another person must approve it"
        )
    return replace(voucher, state=VoucherState.APPROVED, reviewer=reviewer, version=voucher.version + 1)


def reject(voucher: Voucher, reviewer: str, reason: str) -> Voucher:
    _check_text(reason, "reason")
    _not_final(voucher)
    return replace(voucher, state=VoucherState.REJECTED, reviewer=reviewer, reason=reason, version=voucher.version + 1)


def post(voucher: Voucher, at_ms: int) -> Voucher:
    if voucher.state == VoucherState.POSTED:
        return voucher  # posting twice is the same posting
    _not_final(voucher)
    if voucher.state in _OPEN:
        raise FailedPrecondition(
            REASON_NOT_APPROVED, f"voucher {voucher.voucher_id} is {voucher.state}: approve it first"
        )
    return replace(voucher, state=VoucherState.POSTED, posted_at_ms=at_ms, version=voucher.version + 1)
