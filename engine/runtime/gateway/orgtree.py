"""The org desk: put / move / list org nodes (engine.domain.orgtree), kept as one
revisioned document, and a move carried to the sites below the node (DESIGN.md §1, §8).

Every change reads the tree, changes it and writes it back naming the revision it read;
a write that lost a race reads again (bounded). A move is written with its rebase first,
then each site under the old path is put again under the new one (PutSite: broadcast to
every shard and journaled like any catalog change), then the rebase is cleared. Putting a
site twice is harmless, so a rebase interrupted by a crash is simply finished by the next
call; roll-ups over any node stay exact once it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from engine.domain.catalog import Site
from engine.domain.documents import DocumentStore, RevisionMismatch
from engine.domain.errors import Unavailable
from engine.domain.orgtree import (
    OrgNode,
    OrgTree,
    Rebase,
    move_node,
    put_node,
    rebased,
    tree_from_doc,
    tree_to_doc,
    without_rebase,
)

ORG_TREE_KEY = "orgtree"
MAX_WRITE_TRIES = 8  # a write that lost this many races in a row answers UNAVAILABLE (retry)


class SiteCatalog(Protocol):
    async def list_sites(self, org_prefix: str = "") -> list[Site]: ...

    async def put_site(self, site: Site, deadline: float | None = None) -> None: ...


class OrgDesk:
    def __init__(self, documents: DocumentStore, catalog: SiteCatalog) -> None:
        self._documents = documents
        self._catalog = catalog

    async def tree(self) -> OrgTree:
        await self._finish_rebases()
        return (await self._read())[0]

    async def put(self, node: OrgNode) -> str:
        """Create or rename a node; its path."""
        tree = await self._change(lambda tree: put_node(tree, node))
        return tree.path(node.node_id)

    async def move(self, node_id: str, new_parent_id: str) -> tuple[str, int]:
        """Re-parent a node; its new path and how many sites now hang under another path."""
        made: list[Rebase | None] = []

        def change(tree: OrgTree) -> OrgTree:
            moved, rebase = move_node(tree, node_id, new_parent_id)
            made[:] = [rebase]
            return moved

        tree = await self._change(change)
        moved_sites = await self._apply(made[0]) if made and made[0] is not None else 0
        return tree.path(node_id), moved_sites

    async def list(self, org_prefix: str = "") -> list[tuple[OrgNode, str]]:
        return (await self.tree()).under(org_prefix)

    # ---- the document ----

    async def _read(self) -> tuple[OrgTree, int]:
        stored = await self._documents.get(ORG_TREE_KEY)
        return (OrgTree(), 0) if stored is None else (tree_from_doc(stored.value), stored.revision)

    async def _change(self, change: Callable[[OrgTree], OrgTree]) -> OrgTree:
        await self._finish_rebases()
        for _ in range(MAX_WRITE_TRIES):
            tree, revision = await self._read()
            changed = change(tree)  # a refusal (DomainError) goes to the caller as it is
            if changed == tree:
                return tree  # nothing to write: a retried put or move
            try:
                await self._documents.put(ORG_TREE_KEY, tree_to_doc(changed), revision)
            except RevisionMismatch:
                continue  # another gateway wrote first: apply the change to its tree
            return changed
        raise Unavailable("the org tree is being changed by others: retry")

    # ---- moves carried to the sites ----

    async def _finish_rebases(self) -> None:
        tree, _ = await self._read()
        for rebase in tree.rebases:
            await self._apply(rebase)

    async def _apply(self, rebase: Rebase) -> int:
        sites = await self._catalog.list_sites(rebase.old_path)
        for site in sites:
            await self._catalog.put_site(replace(site, org_path=rebased(site.org_path, rebase)))
        await self._change_rebases(rebase)
        return len(sites)

    async def _change_rebases(self, done: Rebase) -> None:
        for _ in range(MAX_WRITE_TRIES):
            tree, revision = await self._read()
            if done not in tree.rebases:
                return
            try:
                await self._documents.put(ORG_TREE_KEY, tree_to_doc(without_rebase(tree, done)), revision)
            except RevisionMismatch:
                continue
            return
        raise Unavailable("the org tree is being changed by others: retry")
