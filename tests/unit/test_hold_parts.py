"""A many-line hold travels as one HoldParts op per shard (engine.domain.hold_parts): the
shard applies its parts exactly as the commands one by one, the journal records the plain
commands, the op and its answers pickle as plain rows, and the coordinator sends one op
per shard touched — and follows a part whose pair moved meanwhile."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters.memory.backend import shared_in_memory_backend
from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import (
    Commit,
    Committed,
    Receive,
    Release,
    Reserve,
    ReserveLine,
    SaleLine,
    Sell,
    Strategy,
    sale_parts,
)
from engine.domain.errors import DomainError, FailedPrecondition, InsufficientStock, InvariantViolation, NotFound
from engine.domain.hold_parts import CheckPart, HoldParts, PartAnswers, ReadPart
from engine.domain.inventory import CommitLine
from engine.domain.model import Finance, HoldState
from engine.domain.shard import CellMoved, HandOff, PutSite, PutSku, ReadHold, ShardCore, journaled, op_weight
from engine.runtime.gateway import Gateway
from engine.runtime.host import ShardHost, rebuild
from engine.runtime.types import AggregateState, HoldLine

NOW_MS = 1_800_000_000_000
DAY_MS = 86_400_000
SKUS = tuple(f"k{i:02d}" for i in range(40))


def core() -> ShardCore:
    shard = ShardCore("s0")
    shard.apply_batch([*(PutSku(Sku(s)) for s in SKUS), PutSite(Site("w1"))], NOW_MS)
    for i, sku in enumerate(SKUS[:39]):  # the last sku has no stock: its part is refused
        shard.apply(Receive(f"r{i}", sku, "w1", "L1", 10, status="available", expires_at_ms=NOW_MS + DAY_MS), NOW_MS)
    shard.drain()
    return shard


def reserves(hold_id: str = "H1", request_id: str = "o1", qty: int = 3) -> list[Reserve]:
    finance = Finance(currency="EUR", unit_price="2.50")
    return [
        Reserve(request_id, sku, "w1", hold_id, (ReserveLine(qty, Strategy.FEFO, bin_prefix=""),), 60_000, "d", finance)
        for sku in SKUS
    ]


def comparable(result: object) -> object:
    return (type(result).__name__, result.message) if isinstance(result, DomainError) else result


def test_parts_apply_as_their_commands_one_by_one() -> None:
    parts, single = core(), core()
    cmds = [*reserves()[:20], reserves()[39], *reserves()[20:39], reserves()[0]]  # a refusal, a retry
    (answers,) = parts.apply_batch([HoldParts.of(cmds)], NOW_MS)
    one_by_one = single.apply_batch(cmds, NOW_MS)
    assert [comparable(a) for a in answers] == [comparable(a) for a in one_by_one]
    assert isinstance(answers[20], InsufficientStock)
    assert parts.drain() == single.drain()
    assert parts.state_hash() == single.state_hash()
    commits = [Commit("c1", sku, "w1", "H1", 2 if i % 2 else None, "d") for i, sku in enumerate(SKUS[:39])]
    (done,) = parts.apply_batch([HoldParts.of(commits)], NOW_MS + 1)
    assert [comparable(a) for a in done] == [comparable(a) for a in single.apply_batch(commits, NOW_MS + 1)]
    assert parts.drain() == single.drain()
    assert parts.state_hash() == single.state_hash()


def test_read_parts_answer_each_view_and_are_never_journaled() -> None:
    shard = core()
    shard.apply_batch([HoldParts.of(reserves()[:2])], NOW_MS)
    reads = HoldParts.of([ReadPart(SKUS[0], "w1", "H1"), ReadPart(SKUS[5], "w1", "H1"), ReadPart("nope", "w1", "H1")])
    (views,) = shard.apply_batch([reads], NOW_MS)
    alone = shard.apply_batch([ReadHold(SKUS[0], "w1", "H1"), ReadHold(SKUS[5], "w1", "H1")], NOW_MS)
    assert list(views[:2]) == alone
    assert views[1] is None
    assert isinstance(views[2], NotFound)
    assert journaled(reads) == ()
    assert journaled(HoldParts.of(reserves())) == tuple(reserves())
    assert op_weight([HoldParts.of(reserves()), PutSite(Site("w2"))]) == len(SKUS) + 1


def test_parts_and_their_answers_travel_as_plain_rows() -> None:
    aborts = [Release("o1#undo", sku, "w1", "H1", "d", abort=True) for sku in SKUS[:3]]
    for op in (HoldParts.of(reserves()), HoldParts.of(aborts), HoldParts.of([ReadPart("a", "w1", "H")])):
        copy = pickle.loads(pickle.dumps(op))
        assert copy == op
        assert copy.commands == op.commands
        raw = pickle.dumps(op, protocol=0)
        assert not [name for name in (b"Reserve\n", b"ReserveLine\n", b"Release\n") if name in raw]
    shard = core()
    (answers,) = shard.apply_batch([HoldParts.of(reserves())], NOW_MS)
    assert isinstance(answers, PartAnswers)
    copy = pickle.loads(pickle.dumps(answers))
    assert [comparable(a) for a in copy] == [comparable(a) for a in answers]
    raw = pickle.dumps(answers, protocol=0)
    assert not [name for name in (b"HoldView\n", b"Allocation\n", b"Reserved\n") if name in raw]


def test_parts_of_another_hold_or_kind_are_a_bug() -> None:
    with pytest.raises(InvariantViolation):
        HoldParts.of([*reserves()[:2], *reserves("H2")[2:3]])
    with pytest.raises(InvariantViolation):
        HoldParts.of([reserves()[0], Commit("c", SKUS[1], "w1", "H1")])


async def test_a_host_journals_parts_as_commands_that_replay_to_the_same_state() -> None:
    backend = shared_in_memory_backend()
    host = ShardHost("s0", clock=ManualClock(NOW_MS), backend=backend, sweep_interval_ms=0)
    await host.start()
    try:
        await host.apply([*(PutSku(Sku(s)) for s in SKUS), PutSite(Site("w1"))])
        receipts = [Receive(f"r{i}", s, "w1", "L1", 10, status="available") for i, s in enumerate(SKUS)]
        await host.apply(receipts)
        await host.apply([HoldParts.of(reserves())])
        await host.apply([HoldParts.of([ReadPart(s, "w1", "H1") for s in SKUS])])
        await host.apply([HoldParts.of([Commit("c1", s, "w1", "H1") for s in SKUS])])
        store = await backend()
        entries = [entry async for _, entry in store.journal.read("s0", 0)]
        assert [type(op) for op in entries[-2].ops] == [Reserve] * len(SKUS)
        assert [type(op) for op in entries[-1].ops] == [Commit] * len(SKUS)
        rebuilt, batch_seq, _ = await rebuild("s0", host.statuses, host.limits, store.journal, store.snapshots)
        assert (batch_seq, rebuilt.state_hash()) == (host.batch_seq, host.core.state_hash())
    finally:
        await host.stop()


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = bootstrap.local_gateway(shards=3, clock=ManualClock(NOW_MS), sweep_interval_ms=0)
    for sku in SKUS:
        await gw.put_sku(Sku(sku))
    await gw.put_site(Site("w1"))
    for i, sku in enumerate(SKUS):
        await gw.execute(Receive(f"r{i}", sku, "w1", "L1", 10, status="available", expires_at_ms=NOW_MS + DAY_MS))
    yield gw
    await gw.close()


def ops_sent(gw: Gateway) -> int:
    return sum(b.ops_sent for b in gw.router._batchers.values())


async def test_a_many_line_hold_costs_one_op_per_shard_touched(gateway: Gateway) -> None:
    lines = [HoldLine(sku, "w1", ReserveLine(2)) for sku in SKUS]
    shards = {gateway.directory.shard_for(sku, "w1") for sku in SKUS}
    before = ops_sent(gateway)
    hold = await gateway.reserve("o1", "H1", lines, 60_000)
    assert hold.held_qty == 80
    assert ops_sent(gateway) - before == len(shards) + 1  # and the hold's header
    before = ops_sent(gateway)
    done = await gateway.commit("c1", "H1")
    assert (done.committed_qty, done.state) == (80, AggregateState.COMMITTED)
    assert ops_sent(gateway) - before == 2 * len(shards)  # the pre-check's reads, then the commits


async def test_a_refused_line_still_leaves_nothing_held(gateway: Gateway) -> None:
    lines = [HoldLine(sku, "w1", ReserveLine(11 if sku == SKUS[17] else 2)) for sku in SKUS]
    with pytest.raises(InsufficientStock):
        await gateway.reserve("o2", "H2", lines, 60_000)
    for sku in SKUS:
        assert (await gateway.get_availability(sku, "w1")).available == 10
    assert (await gateway.get_hold("H2")).state is AggregateState.RELEASED


async def test_a_part_whose_pair_moved_meanwhile_is_followed(gateway: Gateway) -> None:
    lines = [HoldLine(sku, "w1", ReserveLine(1)) for sku in SKUS[:6]]
    await gateway.reserve("o3", "H3", lines, 60_000)
    stale = gateway.directory
    await gateway.pin(SKUS[2], "w1")
    gateway.router.directory = stale  # as a gateway that has not heard of the pin yet
    done = await gateway.commit("c3", "H3")
    assert (done.committed_qty, done.state) == (6, AggregateState.COMMITTED)
    again = await gateway.reserve("o4", "H4", [HoldLine(SKUS[2], "w1", ReserveLine(9))], 60_000)
    assert again.held_qty == 9  # the pinned cell's stock: 10 less the committed unit


def test_check_parts_answer_as_the_cells_would_refuse_and_are_never_journaled() -> None:
    shard = core()
    shard.apply_batch([HoldParts.of(reserves(qty=3)[:3])], NOW_MS)
    shard.apply_batch([Commit("c0", SKUS[2], "w1", "H1")], NOW_MS)  # one part resolved already
    shard.drain()
    checks = HoldParts.of(
        [
            CheckPart(SKUS[0], "w1", "H1", HoldState.COMMITTED, 3),
            CheckPart(SKUS[1], "w1", "H1", HoldState.COMMITTED, 4),  # more than it holds
            CheckPart(SKUS[2], "w1", "H1", HoldState.COMMITTED),  # a retry finishes it
            CheckPart(SKUS[3], "w1", "H1", HoldState.COMMITTED),  # no part there
        ]
    )
    (answers,) = shard.apply_batch([checks], NOW_MS)
    assert [(active, type(refusal).__name__) for active, refusal in answers] == [
        (True, "NoneType"),
        (True, "FailedPrecondition"),
        (False, "NoneType"),
        (False, "NotFound"),
    ]
    assert answers[1][1].reason == "COMMIT_EXCEEDS_HOLD"
    assert journaled(checks) == ()
    assert shard.drain() == []
    copy = pickle.loads(pickle.dumps(checks))
    assert copy.commands == checks.commands
    release = HoldParts.of([CheckPart(SKUS[2], "w1", "H1", HoldState.RELEASED)])
    ((active, refusal),) = shard.apply_batch([release], NOW_MS)[0]
    assert (active, refusal.reason) == (False, "HOLD_NOT_ACTIVE")


# ---- a commit (release) whose parts all live on one shard: one all-or-nothing op ----


def held_core() -> ShardCore:
    shard = core()
    shard.apply_batch([HoldParts.of(reserves(qty=3)[:3])], NOW_MS)
    shard.drain()
    return shard


def test_an_all_or_nothing_commit_that_one_part_refuses_applies_none_and_journals_nothing() -> None:
    shard = held_core()
    before = shard.state_hash()
    commits = HoldParts.of(
        [Commit("c1", SKUS[0], "w1", "H1", 3), Commit("c1", SKUS[1], "w1", "H1", 4), Commit("c1", SKUS[2], "w1", "H1")],
        all_or_nothing=True,
    )
    (answers,) = shard.apply_batch([commits], NOW_MS)
    assert [getattr(a, "reason", None) for a in answers] == ["COMMIT_EXCEEDS_HOLD"] * 3  # the part that refuses
    assert answers[0].metadata["sku"] == SKUS[1]
    assert commits.vetoed
    assert journaled(commits) == ()
    assert shard.drain() == []
    assert shard.state_hash() == before  # the first part, which alone would pass, was not committed


def test_an_all_or_nothing_commit_applies_as_its_commands_and_is_journaled_as_them() -> None:
    parts, single = held_core(), held_core()
    cmds = [Commit("c1", SKUS[0], "w1", "H1", 2), Commit("c1", SKUS[1], "w1", "H1"), Commit("c1", SKUS[2], "w1", "H1")]
    commits = HoldParts.of(cmds, all_or_nothing=True)
    (answers,) = parts.apply_batch([commits], NOW_MS)
    assert [comparable(a) for a in answers] == [comparable(a) for a in single.apply_batch(cmds, NOW_MS)]
    assert not commits.vetoed
    assert journaled(commits) == tuple(cmds)
    assert parts.drain() == single.drain()
    # A retry: no part is active any more, so nothing is vetoed and the cells answer it.
    retry = HoldParts.of(cmds, all_or_nothing=True)
    (again,) = parts.apply_batch([retry], NOW_MS)
    assert [comparable(a) for a in again] == [comparable(a) for a in answers]
    assert parts.drain() == []


def test_only_a_commit_or_release_goes_all_or_nothing_and_the_mark_travels() -> None:
    with pytest.raises(InvariantViolation):
        HoldParts.of(reserves()[:2], all_or_nothing=True)
    releases = HoldParts.of([Release("x", s, "w1", "H1") for s in SKUS[:2]], all_or_nothing=True)
    travelled = pickle.loads(pickle.dumps(releases))
    assert travelled == releases
    assert travelled.all_or_nothing
    assert travelled != HoldParts.of([Release("x", s, "w1", "H1") for s in SKUS[:2]])


def one_shard_skus(gw: Gateway, n: int) -> list[str]:
    by_shard: dict[str, list[str]] = {}
    for sku in SKUS[:39]:
        by_shard.setdefault(gw.directory.shard_for(sku, "w1"), []).append(sku)
    return next(skus[:n] for skus in by_shard.values() if len(skus) >= n)


async def test_a_commit_of_pairs_on_one_shard_is_one_op_and_a_refused_one_changes_nothing(gateway: Gateway) -> None:
    skus = one_shard_skus(gateway, 3)
    await gateway.reserve("o5", "H5", [HoldLine(s, "w1", ReserveLine(2)) for s in skus], 60_000)
    before = ops_sent(gateway)
    with pytest.raises(FailedPrecondition) as refused:
        await gateway.commit("c5", "H5", [CommitLine(skus[0], "w1", 2), CommitLine(skus[1], "w1", 3)])
    assert refused.value.reason == "COMMIT_EXCEEDS_HOLD"
    assert ops_sent(gateway) - before == 1  # checked and refused on the shard, in one op
    hold = await gateway.get_hold("H5")
    assert (hold.state, hold.held_qty, hold.committed_qty) == (AggregateState.ACTIVE, 6, 0)
    before = ops_sent(gateway)
    done = await gateway.commit("c6", "H5", [CommitLine(skus[0], "w1", 2), CommitLine(skus[1], "w1", 1)])
    assert (done.committed_qty, done.released_qty, done.state) == (3, 3, AggregateState.COMMITTED)
    assert ops_sent(gateway) - before == 1  # no pre-check read first
    assert [(await gateway.get_availability(s, "w1")).available for s in skus] == [8, 9, 10]


async def test_a_host_journals_nothing_of_a_vetoed_commit_and_replays_to_the_same_state() -> None:
    backend = shared_in_memory_backend()
    host = ShardHost("s0", clock=ManualClock(NOW_MS), backend=backend, sweep_interval_ms=0)
    await host.start()
    try:
        await host.apply([*(PutSku(Sku(s)) for s in SKUS[:3]), PutSite(Site("w1"))])
        await host.apply([Receive(f"r{i}", s, "w1", "L1", 10, status="available") for i, s in enumerate(SKUS[:3])])
        await host.apply([HoldParts.of(reserves()[:3])])
        seq = host.batch_seq
        vetoed = [Commit("c1", SKUS[0], "w1", "H1", 1), Commit("c1", SKUS[1], "w1", "H1", 9)]
        (answers,) = await host.apply([HoldParts.of(vetoed, all_or_nothing=True)])
        assert all(getattr(a, "reason", None) == "COMMIT_EXCEEDS_HOLD" for a in answers)
        assert host.batch_seq == seq  # nothing to journal
        await host.apply([HoldParts.of([Commit("c2", s, "w1", "H1") for s in SKUS[:3]], all_or_nothing=True)])
        store = await backend()
        rebuilt, batch_seq, _ = await rebuild("s0", host.statuses, host.limits, store.journal, store.snapshots)
        assert (batch_seq, rebuilt.state_hash()) == (host.batch_seq, host.core.state_hash())
    finally:
        await host.stop()


# ---- a one-shard sale (kind SELL) ----


def sale_of(request_id: str, skus: tuple[str, ...], qty: int = 3) -> HoldParts:
    sale = Sell(request_id, tuple(SaleLine(sku, "w1", ReserveLine(qty)) for sku in skus), "receipt")
    return HoldParts.sale(request_id, sale_parts(sale))


def test_a_sale_reserves_then_commits_every_part_in_one_op_journaled_as_its_commands() -> None:
    shard = core()
    op = sale_of("s1", SKUS[:2])
    (answers,) = shard.apply_batch([op], NOW_MS)
    assert [type(a) for a in answers] == [Committed, Committed]
    assert [a.hold.committed_qty for a in answers] == [3, 3]
    assert [type(c) for c in journaled(op)] == [Reserve, Reserve, Commit, Commit]
    assert [c.request_id for c in journaled(op)] == ["s1#sale", "s1#sale", "s1#sold", "s1#sold"]
    assert op_weight([op]) == 4  # its reserves and commits (a group commit's bound)
    replayed = core()
    replayed.apply_batch(list(journaled(op)), NOW_MS)
    assert replayed.drain() == shard.drain()
    assert replayed.state_hash() == shard.state_hash()
    (again,) = shard.apply_batch([sale_of("s1", SKUS[:2])], NOW_MS + 1)  # a retry: the cells' windows
    assert [comparable(a) for a in again] == [comparable(a) for a in answers]
    assert shard.drain() == []


def test_a_sale_one_part_refuses_holds_nothing_and_lets_go_only_of_what_it_held() -> None:
    shard, replayed = core(), core()
    op = sale_of("s2", (SKUS[0], SKUS[39]))  # the last sku has no stock
    (answers,) = shard.apply_batch([op], NOW_MS)
    assert all(isinstance(a, InsufficientStock) for a in answers)
    assert [(type(c), c.sku) for c in journaled(op)] == [(Reserve, SKUS[0]), (Reserve, SKUS[39]), (Release, SKUS[0])]
    assert shard.cells[(SKUS[0], "w1")].ledger.active == {}
    replayed.apply_batch(list(journaled(op)), NOW_MS)
    assert replayed.state_hash() == shard.state_hash()
    (again,) = shard.apply_batch([sale_of("s2", (SKUS[0], SKUS[39]))], NOW_MS + 1)
    assert all(isinstance(a, InsufficientStock) for a in again)  # the retry: the same reason


def test_a_sale_of_a_pair_that_moved_applies_nothing_and_says_where() -> None:
    shard = core()
    shard.apply(HandOff(SKUS[1], "w1", "pin-x"), NOW_MS)
    shard.drain()
    before = shard.state_hash()
    op = sale_of("s3", SKUS[:2])
    (answer,) = shard.apply_batch([op], NOW_MS)
    assert isinstance(answer, CellMoved)
    assert answer.to_shard == "pin-x"
    assert journaled(op) == []
    assert shard.state_hash() == before


def test_a_sale_travels_as_plain_rows_and_only_a_sales_parts_make_one() -> None:
    op = sale_of("s4", SKUS[:3])
    back = pickle.loads(pickle.dumps(op))
    assert back == op
    assert back.sale_parts() == op.sale_parts()
    sale = Sell("s4", (SaleLine(SKUS[0], "w1", ReserveLine(1)),))
    with pytest.raises(InvariantViolation):
        HoldParts.sale("other", sale_parts(sale))  # parts of another request id


async def test_a_host_journals_a_sale_as_the_commands_it_applied_and_replays_to_the_same_state() -> None:
    backend = shared_in_memory_backend()
    host = ShardHost("s0", clock=ManualClock(NOW_MS), backend=backend, sweep_interval_ms=0)
    await host.start()
    try:
        await host.apply([*(PutSku(Sku(s)) for s in SKUS[:3]), PutSite(Site("w1"))])
        await host.apply([Receive(f"r{i}", s, "w1", "L1", 10, status="available") for i, s in enumerate(SKUS[:2])])
        await host.apply([sale_of("s1", SKUS[:2])])
        await host.apply([sale_of("s2", SKUS[:3])])  # the third has no stock: refused, rolled back
        store = await backend()
        entries = [entry async for _, entry in store.journal.read("s0", 0)]
        assert [type(op).__name__ for op in entries[-1].ops] == ["Reserve"] * 3 + ["Release"] * 2
        rebuilt, batch_seq, _ = await rebuild("s0", host.statuses, host.limits, store.journal, store.snapshots)
        assert (batch_seq, rebuilt.state_hash()) == (host.batch_seq, host.core.state_hash())
    finally:
        await host.stop()
