"""A hold's refusal rules, in one place (DESIGN.md §4–5, §7).

The cell owns these rules: it applies them to its own part of a hold. A hold that spans
several cells is resolved by the gateway, which must refuse a commit or release before
sending any part a cell would refuse (a commit cannot be undone); it pre-checks with the
very same functions, so every reason string and message exists once. `at` names the
cell a refusal is about when the caller speaks for several (the gateway); a cell leaves
it out, since it speaks only for itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from engine.domain.model import HoldState, HoldView

if TYPE_CHECKING:  # the catalog validates with the command checks, which import this module
    from engine.domain.catalog import Pair

MAX_TTL_MS = 7 * 86_400_000
MAX_LINES = 256  # lines of one multi-line hold; bounds a request's fan-out

HOLD_ABORTED = "HOLD_ABORTED"
HOLD_EXPIRED = "HOLD_EXPIRED"
HOLD_NOT_ACTIVE = "HOLD_NOT_ACTIVE"
COMMIT_EXCEEDS_HOLD = "COMMIT_EXCEEDS_HOLD"


class PairQty(Protocol):
    """How much of one pair's share of a hold to commit (a commit line)."""

    @property
    def sku(self) -> str: ...

    @property
    def site(self) -> str: ...

    @property
    def qty(self) -> int: ...


# ---- shape (InvalidArgument: checked before any state is read) ----


def check_ttl(ttl_ms: int, out: list[FieldViolation]) -> None:
    if not 0 < ttl_ms <= MAX_TTL_MS:
        out.append(FieldViolation("ttl_ms", f"must be in 1..{MAX_TTL_MS}"))


def check_line_count(count: int, out: list[FieldViolation], *, required: bool = True) -> None:
    """A hold has at least one line (when `required`) and at most MAX_LINES."""
    if required and not count:
        out.append(FieldViolation("lines", "must not be empty"))
    if count > MAX_LINES:
        out.append(FieldViolation("lines", f"must have at most {MAX_LINES} lines"))


def commit_plan(pairs: Sequence[Pair], lines: Sequence[PairQty]) -> dict[Pair, int]:
    """The qty to commit at each pair of a hold; raise InvalidArgument for a line that
    names a pair outside the hold or a pair twice. Pairs not listed commit nothing: their
    share is released in the same step."""
    out: list[FieldViolation] = []
    plan: dict[Pair, int] = {}
    for i, line in enumerate(lines):
        pair = (line.sku, line.site)
        if pair not in pairs:
            out.append(FieldViolation(f"lines[{i}]", f"{line.sku}@{line.site} is not part of the hold"))
        elif pair in plan:
            out.append(FieldViolation(f"lines[{i}]", f"{line.sku}@{line.site} is listed twice"))
        plan[pair] = line.qty
    if out:
        raise InvalidArgument(out)
    return {pair: plan.get(pair, 0) for pair in pairs}


# ---- state (refusals of a hold part as it stands) ----


def _at(at: Pair | None) -> str:
    return "" if at is None else f" at {at[0]}@{at[1]}"


def _at_fields(at: Pair | None) -> dict[str, str]:
    return {} if at is None else {"sku": at[0], "site": at[1]}


def hold_not_found(hold_id: str, at: Pair | None = None) -> NotFound:
    return NotFound("hold", f"{hold_id}{_at(at)}")


def require_active(hold_id: str, state: HoldState, at: Pair | None = None) -> None:
    """Only an active hold can be committed or released."""
    if state is HoldState.ACTIVE:
        return
    raise FailedPrecondition(
        HOLD_EXPIRED if state is HoldState.EXPIRED else HOLD_NOT_ACTIVE,
        f"hold {hold_id!r} is {state.value}{_at(at)}",
        {"hold_id": hold_id, **_at_fields(at), "state": state.value},
    )


def require_within_hold(hold_id: str, held: int, requested: int, at: Pair | None = None) -> None:
    """A commit takes at most what the hold holds (less is a partial commit)."""
    if requested <= held:
        return
    raise FailedPrecondition(
        COMMIT_EXCEEDS_HOLD,
        f"hold {hold_id!r} holds {held}{_at(at)}; cannot commit {requested}",
        {"hold_id": hold_id, **_at_fields(at), "held": str(held), "requested": str(requested)},
    )


def check_resolvable(hold_id: str, at: Pair, part: HoldView | None, done: HoldState, qty: int | None) -> None:
    """Refuse resolving (to `done`) the part of a hold at one cell as that cell would;
    `qty` is what a commit takes there (None: all that is held, or a release)."""
    if part is None:
        raise hold_not_found(hold_id, at)
    if part.state is done:
        return  # an earlier attempt of this very resolution got this far: finish it
    require_active(hold_id, part.state, at)
    if qty is not None:
        require_within_hold(hold_id, part.held_qty, qty, at)


def hold_aborted(hold_id: str) -> FailedPrecondition:
    """The answer of a reserve whose hold was rolled back (see Release.abort)."""
    return FailedPrecondition(
        HOLD_ABORTED,
        f"hold {hold_id!r} was rolled back because another of its lines failed; "
        "place it again with a new request id and hold id",
        {"hold_id": hold_id},
    )


def is_hold_aborted(error: BaseException) -> bool:
    return isinstance(error, FailedPrecondition) and error.reason == HOLD_ABORTED
