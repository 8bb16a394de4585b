"""A freshness refusal names the substitutes in stock at its site only to a caller who may
read that site's stock: a cook allowed to reserve on the kitchen shelf learns that the
opened lot is over age, not what else the store holds (engine/api/authz.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from engine.api.auth import PRINCIPAL, AuthMetrics, Authorizer, Principal
from engine.api.authz import AuthorizingGateway
from engine.bootstrap import local_gateway
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import OpenLot, Receive, ReserveLine
from engine.domain.errors import FailedPrecondition
from engine.domain.freshness import parse_substitutes
from engine.domain.grants import parse_policy
from engine.domain.model import MS_PER_HOUR
from engine.runtime.types import HoldLine

POLICY = parse_policy(
    {
        "roles": {"cook": ["reserve"], "manager": ["read", "reserve"]},
        "grants": [
            {"subject": "cook", "role": "cook", "site": "hotpot-7", "bin": "K"},
            {"subject": "manager", "role": "manager", "site": "hotpot-7"},
        ],
    },
    "v1",
)
LINE = [HoldLine("tallow", "hotpot-7", ReserveLine(1, bin_prefix="K"))]


@pytest_asyncio.fixture
async def guarded() -> AsyncIterator[AuthorizingGateway]:
    clock = ManualClock()
    gateway = local_gateway(shards=2, clock=clock, sweep_interval_ms=0)
    await gateway.put_sku(Sku("tallow", opened_shelf_life_hours=24, substitutes=("tallow-pack",)))
    await gateway.put_sku(Sku("tallow-pack"))
    await gateway.put_site(Site("hotpot-7", "chain/sh"))
    await gateway.execute(Receive("r1", "tallow", "hotpot-7", "TB-1", 4, bin="K", status="available"))
    await gateway.execute(Receive("r2", "tallow-pack", "hotpot-7", "TP-1", 12, bin="S", status="available"))
    await gateway.execute(OpenLot("o1", "tallow", "hotpot-7", "TB-1"))
    clock.advance(25 * MS_PER_HOUR)
    yield AuthorizingGateway(gateway, Authorizer(lambda: POLICY, AuthMetrics(CollectorRegistry())))
    await gateway.close()


def act_as(guarded: AuthorizingGateway, subject: str) -> None:
    authorizer = guarded._authorizer  # the one the policy came from
    PRINCIPAL.set(Principal(subject, (), 0.0, authorizer.permissions(Principal(subject))))


@pytest.mark.parametrize(("subject", "shown"), [("manager", [("tallow-pack", 12)]), ("cook", [])])
async def test_substitutes_are_shown_to_who_may_read_the_site(
    guarded: AuthorizingGateway, subject: str, shown: list[tuple[str, int]]
) -> None:
    act_as(guarded, subject)
    try:
        with pytest.raises(FailedPrecondition) as refused:
            await guarded.reserve(f"{subject}-1", f"{subject}-1", LINE, ttl_ms=60_000)
        with pytest.raises(FailedPrecondition) as sold:
            await guarded.sell(f"{subject}-2", LINE)
    finally:
        PRINCIPAL.set(None)
    for error in (refused.value, sold.value):
        assert error.reason == "FRESHNESS_EXPIRED"
        assert parse_substitutes(error.metadata["substitutes"]) == shown
        assert ("tallow-pack" in error.message) == bool(shown)
