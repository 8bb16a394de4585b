"""History and dead letters as the caller may see them (engine/api/authz.py): the sites filter
is put into the history query before it runs; bin-only grants, lot traces and dead letters
need more. The history store is a recording fake; the gateway is the in-process engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from engine.api.auth import PRINCIPAL, AuthMetrics, Authorizer, Principal
from engine.api.authz import AdminOnly, AuthorizingGateway, ScopedHistory
from engine.bootstrap import local_gateway
from engine.domain.catalog import Site
from engine.domain.grants import AccessDenied, parse_policy
from engine.domain.history import BalanceQuery, MovementQuery, TraceQuery, TurnoverQuery

POLICY = parse_policy(
    {
        "roles": {"reader": ["read"], "admin": ["read", "admin"]},
        "grants": [
            {"subject": "regional", "role": "reader", "org": "acme/east"},
            {"subject": "clerk", "role": "reader", "site": "BOS", "bin": "A/1"},
            {"subject": "root", "role": "admin", "org": ""},
        ],
    },
    "v1",
)


class RecordingHistory:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        async def record(q: Any) -> list[Any]:
            self.seen.append(q)
            return []

        return record


class RecordingDesk:
    async def list(self, **kw: Any) -> list[Any]:
        return ["letter"]


@pytest_asyncio.fixture
async def views() -> AsyncIterator[tuple[AuthorizingGateway, ScopedHistory, RecordingHistory, Authorizer]]:
    gateway = local_gateway(shards=2, sweep_interval_ms=0)
    for site in (Site("BOS", "acme/east/b"), Site("NYC", "acme/east/n"), Site("LA", "acme/west/l")):
        await gateway.put_site(site)
    authorizer = Authorizer(lambda: POLICY, AuthMetrics(CollectorRegistry()))
    guarded = AuthorizingGateway(gateway, authorizer)
    store = RecordingHistory()
    yield guarded, ScopedHistory(store, guarded, authorizer), store, authorizer
    await gateway.close()


def act_as(authorizer: Authorizer, subject: str) -> None:
    principal = Principal(subject)
    PRINCIPAL.set(Principal(subject, (), 0.0, authorizer.permissions(principal)))


async def test_history_queries_get_the_callers_sites(views: Any) -> None:
    _, history, store, authorizer = views
    act_as(authorizer, "regional")
    await history.balance_as_of(BalanceQuery(as_of_ms=1))
    await history.turnover(TurnoverQuery(from_ms=0, to_ms=1, sites=("NYC",)))
    assert [q.sites for q in store.seen] == [("BOS", "NYC"), ("NYC",)]
    with pytest.raises(AccessDenied):
        await history.balance_as_of(BalanceQuery(as_of_ms=1, sites=("NYC", "LA")))
    with pytest.raises(AccessDenied):
        await history.movements(MovementQuery())  # every site: more than the grant
    await history.movements(MovementQuery(site="BOS"))
    with pytest.raises(AccessDenied):
        await history.lot_trace(TraceQuery(lot_id="L1", sku="S"))  # traces cross sites


async def test_bin_grants_do_not_open_history_and_admins_see_it_all(views: Any) -> None:
    _, history, store, authorizer = views
    act_as(authorizer, "clerk")
    with pytest.raises(AccessDenied):
        await history.balance_as_of(BalanceQuery(as_of_ms=1))
    act_as(authorizer, "root")
    await history.balance_as_of(BalanceQuery(as_of_ms=1))
    await history.lot_trace(TraceQuery(lot_id="L1", sku="S"))
    assert store.seen[0].sites == ()  # untouched: everything


async def test_dead_letters_are_for_engine_wide_admins(views: Any) -> None:
    guarded, _, _, authorizer = views
    desk = AdminOnly(RecordingDesk(), guarded, "dead-letters")
    act_as(authorizer, "regional")
    with pytest.raises(AccessDenied) as denied:
        await desk.list(limit=10)
    assert (denied.value.action, denied.value.resource) == ("admin", "dead-letters:list")
    act_as(authorizer, "root")
    assert await desk.list(limit=10) == ["letter"]
