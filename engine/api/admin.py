"""The Admin gRPC servicer: verify, shard stats, snapshots, pins, dead letters, bulk import
(operators only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.importer import ChunkApplier, ImportGateway, serve_import
from engine.api.servicer import _rpc
from engine.domain.commands import check_id
from engine.domain.deadletter_desk import MAX_REPLAY, DeadLetterDesk
from engine.domain.deadletters import DEFAULT_LIST_LIMIT, StoredDeadLetter, code_violations, list_violations
from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from engine.domain.grants import Action
from engine.domain.orgtree import OrgNode
from engine.runtime.gateway.orgtree import OrgDesk
from engine.runtime.types import ShardCheck

if TYPE_CHECKING:
    from engine.api.transfers import Guard

ADMIN_SERVICE_NAME = apb.DESCRIPTOR.services_by_name["Admin"].full_name  # "lotwise.v1.Admin"
REASON_INGESTION_OFF = "INGESTION_OFF"
REASON_ORG_TREE_OFF = "ORG_TREE_OFF"
# A list page stops growing past this many bytes, well under the server's 4 MiB message
# limit (ServerOptions.max_message_bytes): letters carry headers and reasons of any size.
LIST_PAGE_MAX_BYTES = 2 * 1024 * 1024


class AdminGateway(ImportGateway, Protocol):
    async def verify(self) -> list[ShardCheck]: ...

    async def shard_stats(self) -> list[dict[str, Any]]: ...

    async def snapshot(self) -> dict[str, int]: ...

    async def pin(self, sku: str, site: str) -> str: ...


def check_to_pb(check: ShardCheck) -> apb.ShardCheck:
    return apb.ShardCheck(
        shard=check.shard,
        batch_seq=check.batch_seq,
        live_hash=check.live_hash,
        rebuilt_hash=check.rebuilt_hash,
        ok=check.ok,
        error=check.error,
        replayed_batches=check.replayed_batches,
    )


def stat_to_pb(stat: dict[str, Any]) -> apb.ShardStat:
    return apb.ShardStat(**{field: stat[field] for field in apb.ShardStat.DESCRIPTOR.fields_by_name})


def dead_letter_to_pb(stored: StoredDeadLetter, *, with_payload: bool = True) -> apb.DeadLetter:
    letter = stored.letter
    return apb.DeadLetter(
        seq=stored.seq,
        key=letter.key,
        subject=letter.subject,
        code=letter.code.value,
        reason=letter.reason,
        event_id=letter.event_id,
        event_type=letter.event_type,
        deliveries=letter.deliveries,
        failed_at_ms=letter.failed_at_ms,
        payload=letter.payload if with_payload else b"",
        headers=dict(letter.headers),
        payload_size=len(letter.payload),
    )


def org_node_to_pb(node: OrgNode, path: str) -> apb.OrgNode:
    return apb.OrgNode(
        node_id=node.node_id, parent_id=node.parent_id, name=node.name, legal_entity=node.legal_entity, path=path
    )


class AdminServicer(apb_grpc.AdminServicer):
    def __init__(
        self,
        gateway: AdminGateway,
        *,
        retry_delay_ms: int,
        dead_letters: DeadLetterDesk | None = None,
        org: tuple[OrgDesk, Guard] | None = None,
    ) -> None:
        self.gateway = gateway
        self.retry_delay_ms = retry_delay_ms  # read by _rpc when it answers a DomainError
        self.dead_letters = dead_letters  # None: this engine does not ingest from NATS
        self.org = org  # the org tree's desk and the admin check (engine-wide `admin`)

    @_rpc
    async def Verify(self, request: apb.VerifyRequest, context: grpc.aio.ServicerContext) -> apb.VerifyResponse:
        checks = await self.gateway.verify()
        return apb.VerifyResponse(ok=all(c.ok for c in checks), shards=[check_to_pb(c) for c in checks])

    @_rpc
    async def ShardStats(
        self, request: apb.ShardStatsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ShardStatsResponse:
        return apb.ShardStatsResponse(shards=[stat_to_pb(s) for s in await self.gateway.shard_stats()])

    @_rpc
    async def Snapshot(self, request: apb.SnapshotRequest, context: grpc.aio.ServicerContext) -> apb.SnapshotResponse:
        return apb.SnapshotResponse(batch_seq=await self.gateway.snapshot())

    @_rpc
    async def PinPair(self, request: apb.PinPairRequest, context: grpc.aio.ServicerContext) -> apb.PinPairResponse:
        out: list[FieldViolation] = []
        check_id(request.sku, "sku", out)
        check_id(request.site, "site", out)
        if out:
            raise InvalidArgument(out)
        return apb.PinPairResponse(shard=await self.gateway.pin(request.sku, request.site))

    # ---- the org tree ----

    def _org(self, resource: str) -> OrgDesk:
        if self.org is None:
            raise FailedPrecondition(REASON_ORG_TREE_OFF, "this engine keeps no org tree (no document store)")
        desk, guard = self.org
        guard.require_global(Action.ADMIN, resource)
        return desk

    @_rpc
    async def PutOrgNode(
        self, request: apb.PutOrgNodeRequest, context: grpc.aio.ServicerContext
    ) -> apb.PutOrgNodeResponse:
        n = request.node
        node = OrgNode(n.node_id, n.parent_id, n.name, n.legal_entity)
        path = await self._org(f"org:{node.node_id}").put(node)
        return apb.PutOrgNodeResponse(node=org_node_to_pb(node, path))

    @_rpc
    async def MoveOrgNode(
        self, request: apb.MoveOrgNodeRequest, context: grpc.aio.ServicerContext
    ) -> apb.MoveOrgNodeResponse:
        desk = self._org(f"org:{request.node_id}")
        path, sites = await desk.move(request.node_id, request.new_parent_id)
        node = (await desk.tree()).nodes[request.node_id]
        return apb.MoveOrgNodeResponse(node=org_node_to_pb(node, path), sites_moved=sites)

    @_rpc
    async def ListOrgNodes(
        self, request: apb.ListOrgNodesRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListOrgNodesResponse:
        nodes = await self._org(f"org:{request.org_prefix or '*'}").list(request.org_prefix)
        return apb.ListOrgNodesResponse(nodes=[org_node_to_pb(node, path) for node, path in nodes])

    # ---- dead letters ----

    def _desk(self) -> DeadLetterDesk:
        if self.dead_letters is None:
            raise FailedPrecondition(
                REASON_INGESTION_OFF, "ingestion is off on this engine: there is no dead-letter store to ask"
            )
        return self.dead_letters

    @_rpc
    async def ListDeadLetters(
        self, request: apb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListDeadLettersResponse:
        limit = request.limit or DEFAULT_LIST_LIMIT
        violations = list_violations(request.after_seq, limit, request.code)
        if violations:
            raise InvalidArgument(violations)
        desk = self._desk()
        letters = await desk.list(after_seq=request.after_seq, limit=limit, code=request.code)
        reply = apb.ListDeadLettersResponse(total=await desk.count())
        size = 0
        for stored in letters:
            msg = dead_letter_to_pb(stored, with_payload=False)
            size += msg.ByteSize()
            if reply.letters and size > LIST_PAGE_MAX_BYTES:
                break  # the rest come with the next page
            reply.letters.append(msg)
        cut = len(reply.letters) < len(letters)
        if reply.letters and (cut or len(letters) == limit):
            reply.next_after_seq = reply.letters[-1].seq
        return reply

    @_rpc
    async def GetDeadLetter(
        self, request: apb.GetDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> apb.GetDeadLetterResponse:
        if request.seq <= 0:
            raise InvalidArgument([FieldViolation("seq", f"must be ≥ 1 (got {request.seq})")])
        stored = await self._desk().show(request.seq)
        return apb.GetDeadLetterResponse(letter=dead_letter_to_pb(stored))

    @_rpc
    async def ReplayDeadLetters(
        self, request: apb.ReplayDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> apb.ReplayDeadLettersResponse:
        seqs = list(request.seqs)
        out = code_violations(request.code)
        if request.all and seqs:
            out.append(FieldViolation("all", "give either seqs or all, not both"))
        elif not request.all and not seqs:
            out.append(FieldViolation("seqs", "give the seqs to replay, or set all"))
        if seqs and request.code:
            out.append(FieldViolation("code", "filters a replay of all letters; not with seqs"))
        if len(seqs) > MAX_REPLAY:
            out.append(FieldViolation("seqs", f"at most {MAX_REPLAY} per call (got {len(seqs)})"))
        out.extend(FieldViolation(f"seqs[{i}]", f"must be ≥ 1 (got {seq})") for i, seq in enumerate(seqs) if seq <= 0)
        if out:
            raise InvalidArgument(out)
        result = await self._desk().replay(None if request.all else seqs, code=request.code)
        return apb.ReplayDeadLettersResponse(
            replayed=result.replayed,
            failed=[apb.ReplayFailure(seq=seq, error=error) for seq, error in result.failed],
        )

    # ---- bulk import ----

    async def Import(self, request_iterator: AsyncIterator[apb.ImportChunk], context: grpc.aio.ServicerContext) -> None:
        await serve_import(ChunkApplier(self.gateway), request_iterator, context, retry_delay_ms=self.retry_delay_ms)
