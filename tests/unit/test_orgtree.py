"""The org tree as data (engine.domain.orgtree) and the org desk over an in-memory
document store and catalog (engine.runtime.gateway.orgtree)."""

from __future__ import annotations

import pytest

from adapters.memory.documents import InMemoryDocuments
from engine.domain.catalog import MAX_ORG_DEPTH, Site, org_covers
from engine.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.domain.orgtree import (
    OrgNode,
    OrgTree,
    Rebase,
    move_node,
    put_node,
    rebased,
    tree_from_doc,
    tree_to_doc,
)
from engine.runtime.gateway.orgtree import ORG_TREE_KEY, OrgDesk


def tree_of(*nodes: OrgNode) -> OrgTree:
    tree = OrgTree()
    for node in nodes:
        tree = put_node(tree, node)
    return tree


ACME = tree_of(
    OrgNode("acme", legal_entity=True),
    OrgNode("east", "acme"),
    OrgNode("west", "acme"),
    OrgNode("boston", "east"),
)


def test_paths_are_the_ids_from_the_root() -> None:
    assert ACME.path("boston") == "acme/east/boston"
    assert [p for _, p in ACME.under("acme/east")] == ["acme/east", "acme/east/boston"]
    assert [p for _, p in ACME.under("")] == ["acme", "acme/east", "acme/east/boston", "acme/west"]
    assert ACME.nodes["acme"].legal_entity


def test_put_refuses_an_unknown_parent_a_silent_move_and_bad_ids() -> None:
    with pytest.raises(NotFound):
        put_node(ACME, OrgNode("x", "nowhere"))
    with pytest.raises(FailedPrecondition) as err:
        put_node(ACME, OrgNode("boston", "west"))
    assert err.value.reason == "ORG_NODE_PARENT"
    with pytest.raises(InvalidArgument):
        put_node(ACME, OrgNode("a/b", "acme"))
    renamed = put_node(ACME, OrgNode("boston", "east", "Boston"))
    assert renamed.nodes["boston"].name == "Boston"
    assert put_node(renamed, OrgNode("boston", "east", "Boston")) == renamed  # a retry changes nothing


def test_depth_is_bounded_on_put_and_on_move() -> None:
    chain = OrgTree()
    for i in range(MAX_ORG_DEPTH):
        chain = put_node(chain, OrgNode(f"n{i}", f"n{i - 1}" if i else ""))
    with pytest.raises(FailedPrecondition) as err:
        put_node(chain, OrgNode("deeper", f"n{MAX_ORG_DEPTH - 1}"))
    assert err.value.reason == "ORG_TOO_DEEP"
    side = put_node(put_node(chain, OrgNode("r")), OrgNode("r2", "r"))
    with pytest.raises(FailedPrecondition):
        move_node(side, "n0", "r2")  # the chain would be 2 levels deeper than allowed


def test_move_reparents_a_subtree_and_records_the_rebase() -> None:
    moved, rebase = move_node(ACME, "east", "west")
    assert rebase == Rebase("acme/east", "acme/west/east")
    assert moved.path("boston") == "acme/west/east/boston"
    assert moved.rebases == (rebase,)
    assert move_node(moved, "east", "west") == (moved, None)  # a retried move changes nothing
    with pytest.raises(FailedPrecondition) as err:
        move_node(ACME, "acme", "boston")
    assert err.value.reason == "ORG_CYCLE"
    rooted, _ = move_node(ACME, "east", "")
    assert rooted.path("boston") == "east/boston"


@pytest.mark.parametrize(
    ("org_path", "expected"),
    [
        ("acme/east", "acme/west/east"),
        ("acme/east/boston", "acme/west/east/boston"),
        ("acme/eastern", "acme/eastern"),  # a sibling whose name starts alike is not below
        ("acme", "acme"),
        ("", ""),
    ],
)
def test_rebased_moves_only_what_is_below(org_path: str, expected: str) -> None:
    assert rebased(org_path, Rebase("acme/east", "acme/west/east")) == expected


def test_the_document_round_trips() -> None:
    moved, _ = move_node(ACME, "east", "west")
    assert tree_from_doc(tree_to_doc(moved)) == moved


class FakeCatalog:
    def __init__(self, *sites: Site) -> None:
        self.sites = {s.site: s for s in sites}
        self.fail_after: int | None = None

    async def list_sites(self, org_prefix: str = "") -> list[Site]:
        return [s for s in self.sites.values() if org_covers(s.org_path, org_prefix)]

    async def put_site(self, site: Site, deadline: float | None = None) -> None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise ConnectionError("the catalog went away")
            self.fail_after -= 1
        self.sites[site.site] = site


async def test_the_desk_moves_sites_and_finishes_an_interrupted_move() -> None:
    documents = InMemoryDocuments()
    catalog = FakeCatalog(Site("BOS", "acme/east/boston"), Site("NYC", "acme/east"), Site("LA", "acme/west"))
    desk = OrgDesk(documents, catalog)
    for node in (OrgNode("acme"), OrgNode("east", "acme"), OrgNode("west", "acme"), OrgNode("boston", "east")):
        await desk.put(node)
    catalog.fail_after = 1  # the move's second PutSite fails
    with pytest.raises(ConnectionError):
        await desk.move("east", "west")
    stored = await documents.get(ORG_TREE_KEY)
    assert stored is not None
    assert stored.value["rebases"]  # the move is recorded, unfinished
    catalog.fail_after = None
    assert [p for _, p in await desk.list("acme/west")] == ["acme/west", "acme/west/east", "acme/west/east/boston"]
    assert {s.site: s.org_path for s in catalog.sites.values()} == {
        "BOS": "acme/west/east/boston",
        "NYC": "acme/west/east",
        "LA": "acme/west",
    }
    assert (await desk.tree()).rebases == ()
