"""The org tree as data: nodes (group → company → region → …), each under one parent, a
legal entity flagged (a company that owns a ledger) (DESIGN.md §1).

A node's *path* is the ids from its root down to it, joined by "/" — exactly the
`org_path` a site hangs under — so node ids are unique across the tree (a path segment
names one node). The tree is one small document (engine.domain.documents): moving a node
changes one parent id, and the paths of everything below follow. Sites keep their
`org_path` in the catalog (every shard filters roll-ups by it), so a move also records a
*rebase* (old path → new path) that the org desk applies to those sites and then clears;
a crash in between leaves the rebase recorded, and the next call finishes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from engine.domain.catalog import MAX_ORG_DEPTH, org_covers
from engine.domain.commands import check_id
from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

MAX_ORG_NODES = 10_000  # one document of ~100 bytes a node: well under MAX_DOCUMENT_BYTES
MAX_PENDING_REBASES = 64  # moves whose sites are still being re-parented
FORMAT = 1
REASON_ORG_NODE_PARENT = "ORG_NODE_PARENT"
REASON_ORG_CYCLE = "ORG_CYCLE"
REASON_ORG_TOO_DEEP = "ORG_TOO_DEEP"
REASON_ORG_TREE_FULL = "ORG_TREE_FULL"


@dataclass(frozen=True, slots=True)
class OrgNode:
    node_id: str
    parent_id: str = ""  # "": a root
    name: str = ""
    legal_entity: bool = False  # a company: owns a ledger (cost layers, vouchers)


@dataclass(frozen=True, slots=True)
class Rebase:
    """Sites under `old_path` are to hang under `new_path` (a node moved)."""

    old_path: str
    new_path: str


@dataclass(frozen=True, slots=True)
class OrgTree:
    nodes: dict[str, OrgNode] = field(default_factory=dict)
    rebases: tuple[Rebase, ...] = ()

    def path(self, node_id: str) -> str:
        """The node's path from its root; bounded by the depth limit (a cycle cannot be stored)."""
        ids: list[str] = []
        current = node_id
        while current:
            node = self.nodes.get(current)
            if node is None:
                raise NotFound("org_node", current)
            ids.append(current)
            if len(ids) > MAX_ORG_DEPTH:
                raise FailedPrecondition(REASON_ORG_TOO_DEEP, f"org node {node_id} is deeper than {MAX_ORG_DEPTH}")
            current = node.parent_id
        return "/".join(reversed(ids))

    def under(self, org_prefix: str) -> list[tuple[OrgNode, str]]:
        """Every node at or below `org_prefix` ("" = all) with its path, in path order."""
        found = ((node, self.path(node.node_id)) for node in self.nodes.values())
        return sorted(((n, p) for n, p in found if org_covers(p, org_prefix)), key=lambda np: np[1])

    def subtree(self, node_id: str) -> list[str]:
        """The node and every node below it (breadth first)."""
        children: dict[str, list[str]] = {}
        for node in self.nodes.values():
            children.setdefault(node.parent_id, []).append(node.node_id)
        out, i = [node_id], 0
        while i < len(out):  # bounded: each node is appended once (the tree has no cycle)
            out.extend(sorted(children.get(out[i], ())))
            i += 1
        return out

    def height(self, node_id: str) -> int:
        """Levels from the node down to its deepest descendant (1 for a leaf)."""
        depth = {node_id: 1}
        for nid in self.subtree(node_id)[1:]:
            depth[nid] = depth[self.nodes[nid].parent_id] + 1
        return max(depth.values())


def validate_node(node: OrgNode) -> None:
    out: list[FieldViolation] = []
    check_id(node.node_id, "node_id", out)
    check_id(node.parent_id, "parent_id", out, required=False)
    if node.parent_id and node.parent_id == node.node_id:
        out.append(FieldViolation("parent_id", "a node cannot be its own parent"))
    if len(node.name) > 256:
        out.append(FieldViolation("name", "must be at most 256 characters"))
    if out:
        raise InvalidArgument(out)


def put_node(tree: OrgTree, node: OrgNode) -> OrgTree:
    """Create a node or change its name and flag. Its parent is changed by move_node only:
    a put naming another parent is refused, so a typo cannot silently move a subtree."""
    validate_node(node)
    known = tree.nodes.get(node.node_id)
    if known is not None and known.parent_id != node.parent_id:
        raise FailedPrecondition(
            REASON_ORG_NODE_PARENT,
            f"org node {node.node_id} is under {known.parent_id or '(root)'}: move it with MoveOrgNode",
            {"parent_id": known.parent_id},
        )
    if known is None and len(tree.nodes) >= MAX_ORG_NODES:
        raise FailedPrecondition(REASON_ORG_TREE_FULL, f"the org tree holds at most {MAX_ORG_NODES} nodes")
    depth = 1 + (len(tree.path(node.parent_id).split("/")) if node.parent_id else 0)
    if depth > MAX_ORG_DEPTH:
        raise FailedPrecondition(REASON_ORG_TOO_DEEP, f"org paths have at most {MAX_ORG_DEPTH} levels")
    return replace(tree, nodes={**tree.nodes, node.node_id: node})


def move_node(tree: OrgTree, node_id: str, new_parent_id: str) -> tuple[OrgTree, Rebase | None]:
    """Re-parent a node (and so everything below it); the rebase its sites need, if any."""
    validate_node(OrgNode(node_id, new_parent_id))
    node = tree.nodes.get(node_id)
    if node is None:
        raise NotFound("org_node", node_id)
    if node.parent_id == new_parent_id:
        return tree, None  # already there: a retried move changes nothing
    if new_parent_id and new_parent_id in tree.subtree(node_id):
        raise FailedPrecondition(REASON_ORG_CYCLE, f"{new_parent_id} is below {node_id}: the tree would loop")
    parent_depth = len(tree.path(new_parent_id).split("/")) if new_parent_id else 0
    if parent_depth + tree.height(node_id) > MAX_ORG_DEPTH:
        raise FailedPrecondition(REASON_ORG_TOO_DEEP, f"org paths have at most {MAX_ORG_DEPTH} levels")
    if len(tree.rebases) >= MAX_PENDING_REBASES:
        raise FailedPrecondition(REASON_ORG_TREE_FULL, "too many moves still re-parenting their sites")
    old_path = tree.path(node_id)
    moved = replace(tree, nodes={**tree.nodes, node_id: replace(node, parent_id=new_parent_id)})
    rebase = Rebase(old_path, moved.path(node_id))
    return replace(moved, rebases=(*tree.rebases, rebase)), rebase


def rebased(org_path: str, rebase: Rebase) -> str:
    """A site's org path after the move (unchanged when the site is not below it)."""
    if not org_covers(org_path, rebase.old_path) or not rebase.old_path:
        return org_path
    return rebase.new_path + org_path[len(rebase.old_path) :]


def without_rebase(tree: OrgTree, done: Rebase) -> OrgTree:
    rest = list(tree.rebases)
    if done in rest:
        rest.remove(done)
    return replace(tree, rebases=tuple(rest))


# ---- as a document (JSON) ----


def tree_to_doc(tree: OrgTree) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "nodes": [
            {"node_id": n.node_id, "parent_id": n.parent_id, "name": n.name, "legal_entity": n.legal_entity}
            for n in sorted(tree.nodes.values(), key=lambda n: n.node_id)
        ],
        "rebases": [{"old_path": r.old_path, "new_path": r.new_path} for r in tree.rebases],
    }


def tree_from_doc(doc: dict[str, Any]) -> OrgTree:
    if doc.get("format") != FORMAT:
        raise ValueError(f"org tree document format {doc.get('format')!r} is not {FORMAT}")
    nodes: Iterable[dict[str, Any]] = doc["nodes"]
    return OrgTree(
        {n["node_id"]: OrgNode(**n) for n in nodes},
        tuple(Rebase(**r) for r in doc["rebases"]),
    )
