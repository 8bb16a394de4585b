"""Bulk load on the server: Import of lotwise.v1.Admin (DESIGN.md §7).

A stream of chunks of rows (catalog rows, lot rows, and lots as columns). A catalog row is
one put through the gateway (broadcast to every shard). A chunk's lots go together to
`Gateway.receive_bulk` (engine.runtime.gateway.bulk): validated once, one shard call per
shard, each lot a Receive applied whole or not at all, with the same checks, idempotency
and refusals as its unary call. A few chunks run at once (IMPORT_MAX_CHUNKS_IN_FLIGHT), the
stream is read no faster than they finish, and replies go back in chunk order.

A chunk that carries skus or sites is a barrier: it waits for every chunk before it and
holds back every chunk after it, because the lots that follow may refer to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Protocol, TypeVar

import grpc
import structlog
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from engine.api import convert
from engine.api.errors import ERROR_DOMAIN, internal_status, to_grpc_status
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.catalog import Site, Sku
from engine.domain.commands import RECEIVE_SOURCES, Receive, Received
from engine.domain.errors import DomainError, FieldViolation, InvalidArgument, Overloaded, Unavailable
from engine.domain.statuses import DEFAULT_DICTIONARY, Role

IMPORT_MAX_CHUNK_ROWS = 4_096
IMPORT_MAX_CHUNKS_IN_FLIGHT = 8
# A row refused as Overloaded or Unavailable (a full shard queue, a shard recovering) is
# tried again with the same request id: at most this often, with a doubling pause.
IMPORT_ROW_ATTEMPTS = 4
IMPORT_RETRY_PAUSE_S = 0.05
REASON_IMPORT_CHUNK_TOO_LARGE = "IMPORT_CHUNK_TOO_LARGE"

log = structlog.get_logger("lotwise.api")
_T = TypeVar("_T")


class ImportGateway(Protocol):
    async def put_sku(self, sku: Sku, deadline: float | None = None) -> None: ...

    async def put_site(self, site: Site, deadline: float | None = None) -> None: ...

    async def receive_bulk(self, cmds: Sequence[Receive]) -> list[Received | DomainError]: ...


class ChunkTooLarge(Exception):
    """A chunk beyond IMPORT_MAX_CHUNK_ROWS: the stream ends with RESOURCE_EXHAUSTED."""

    def __init__(self, rows: int) -> None:
        super().__init__(f"an import chunk of {rows} rows is larger than max {IMPORT_MAX_CHUNK_ROWS} rows; split it")
        self.rows = rows

    def status(self) -> grpc.Status:
        # "larger than max" marks it as never retryable as is (engine.api.errors.is_retryable).
        info = error_details_pb2.ErrorInfo(
            reason=REASON_IMPORT_CHUNK_TOO_LARGE,
            domain=ERROR_DOMAIN,
            metadata={"what": "import chunk rows", "limit": str(IMPORT_MAX_CHUNK_ROWS), "size": str(self.rows)},
        )
        status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(self))
        status.details.add().Pack(info)
        return rpc_status.to_status(status)


def chunk_rows(chunk: apb.ImportChunk) -> int:
    return len(chunk.rows) + len(chunk.lots.line)


def check_chunk(chunk: apb.ImportChunk) -> None:
    """Refuse a chunk whose shape is wrong; its rows' content is each row's business."""
    rows = chunk_rows(chunk)
    if rows > IMPORT_MAX_CHUNK_ROWS:
        raise ChunkTooLarge(rows)
    if not rows:
        raise InvalidArgument([FieldViolation("rows", f"must hold 1..{IMPORT_MAX_CHUNK_ROWS} rows and lots")])


_SOURCES = {source.value: source for source in RECEIVE_SOURCES}
_RECEIPT_STATUS = DEFAULT_DICTIONARY.role(Role.RECEIPT)


def _column(values: Sequence[_T], name: str, n: int, default: _T | None = None) -> Iterable[_T]:
    """A column of n values; an optional one may be empty (every lot takes `default`)."""
    if len(values) == n:
        return values
    if not values and default is not None:
        return itertools.repeat(default, n)
    expected = f"{n} values" if default is None else f"{n} values or none"
    raise InvalidArgument([FieldViolation(f"lots.{name}", f"must hold {expected} (holds {len(values)})")])


def lots_from_pb(lots: apb.ImportLots) -> list[tuple[int, Receive | DomainError]]:
    """Each lot's line and Receive (or why it is none); raises InvalidArgument when the
    columns do not line up (the chunk is malformed, not a row)."""
    n = len(lots.line)
    columns = zip(
        lots.line,
        *(_column(getattr(lots, name), name, n) for name in ("request_id", "sku", "site", "lot_id", "qty")),
        _column(lots.bin, "bin", n, ""),
        _column(lots.status, "status", n, ""),
        _column(lots.owner, "owner", n, ""),
        *(_column(getattr(lots, name), name, n, 0) for name in ("expires_at_ms", "received_at_ms", "opened_at_ms")),
        _column(lots.doc_ref, "doc_ref", n, ""),
        _column(lots.source, "source", n, ""),
        strict=True,
    )
    out: list[tuple[int, Receive | DomainError]] = []
    for line, rid, sku, site, lot_id, qty, bin_, status, owner, expires, received, opened, doc_ref, src in columns:
        source = _SOURCES.get(src) if src else RECEIVE_SOURCES[0]
        if source is None:  # not a bucket stock can be received from
            allowed = ", ".join(s.value for s in RECEIVE_SOURCES)
            out.append((line, InvalidArgument([FieldViolation("source", f"must be one of {allowed}")])))
            continue
        state = status or _RECEIPT_STATUS
        cmd = Receive(
            rid, sku, site, lot_id, qty, bin_, state, owner or "own", expires, received, opened, doc_ref, source
        )
        out.append((line, cmd))
    return out


def refusal(line: int, err: DomainError) -> apb.ImportRefusal:
    fields = [v.field for v in err.violations] if isinstance(err, InvalidArgument) else []
    return apb.ImportRefusal(line=line, code=err.code, message=err.message, fields=fields)


class ChunkApplier:
    """Applies the rows of one chunk: catalog rows through the gateway, lots in bulk."""

    def __init__(self, gateway: ImportGateway, *, retry_pause_s: float = IMPORT_RETRY_PAUSE_S) -> None:
        self._gateway = gateway
        self._retry_pause_s = retry_pause_s

    async def apply(self, chunk: apb.ImportChunk) -> apb.ImportChunkReply:
        reply = apb.ImportChunkReply(chunk_seq=chunk.chunk_seq)
        rows: Sequence[apb.ImportRow] = chunk.rows
        # All at once, in file order: each shard's micro-batcher is first in, first out,
        # so a sku put twice ends as its last row says. Catalog rows first: the chunk's
        # lots may refer to them.
        catalog = [row for row in rows if row.WhichOneof("row") != "lot"]
        refused = [r for r in await asyncio.gather(*(self._catalog_row(row, reply) for row in catalog)) if r]
        lots = [(row.line, _receive(row.lot)) for row in rows if row.WhichOneof("row") == "lot"]
        if chunk.lots.line:
            lots += lots_from_pb(chunk.lots)
        if lots:
            refused += await self._lots(lots, reply)
        reply.refused.extend(sorted(refused, key=lambda r: r.line))
        return reply

    async def _catalog_row(self, row: apb.ImportRow, reply: apb.ImportChunkReply) -> apb.ImportRefusal | None:
        kind = row.WhichOneof("row")
        try:
            if kind == "sku":
                sku = convert.sku_from_pb(row.sku)
                await self._tries(lambda: self._gateway.put_sku(sku))
                reply.skus += 1
            elif kind == "site":
                site = convert.site_from_pb(row.site)
                await self._tries(lambda: self._gateway.put_site(site))
                reply.sites += 1
            else:
                raise InvalidArgument([FieldViolation("row", "carries no sku, site or lot")])
        except DomainError as err:
            return refusal(row.line, err)
        return None

    async def _lots(
        self, lots: list[tuple[int, Receive | DomainError]], reply: apb.ImportChunkReply
    ) -> list[apb.ImportRefusal]:
        """Receive the chunk's lots in bulk; each lot applied or refused on its own."""
        refused = [refusal(line, cmd) for line, cmd in lots if isinstance(cmd, DomainError)]
        good = [(line, cmd) for line, cmd in lots if isinstance(cmd, Receive)]
        results = await self._bulk_tries([cmd for _, cmd in good])
        for (line, cmd), result in zip(good, results, strict=True):
            if isinstance(result, DomainError):
                refused.append(refusal(line, result))
            else:
                reply.lots += 1
                reply.units += cmd.qty
        return refused

    async def _bulk_tries(self, cmds: list[Receive]) -> list[Received | DomainError]:
        """Each receipt's answer; those refused as Overloaded or Unavailable (a full queue, a
        shard that recovers) are sent again — the same request ids, so a receipt applies
        once — pausing longer each time: IMPORT_ROW_ATTEMPTS tries in all."""
        results = await self._gateway.receive_bulk(cmds)
        pause_s = self._retry_pause_s
        for _ in range(IMPORT_ROW_ATTEMPTS - 1):
            again = [i for i, result in enumerate(results) if isinstance(result, Overloaded | Unavailable)]
            if not again:
                break
            await asyncio.sleep(pause_s)
            pause_s *= 2
            retried = await self._gateway.receive_bulk([cmds[i] for i in again])
            for i, result in zip(again, retried, strict=True):
                results[i] = result
        return results

    async def _tries(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call()`, and again after a transient refusal (a full queue, a shard that
        recovers), pausing longer each time: IMPORT_ROW_ATTEMPTS tries in all."""
        try:
            return await call()
        except (Overloaded, Unavailable):
            pass
        pause_s = self._retry_pause_s
        for _ in range(IMPORT_ROW_ATTEMPTS - 2):
            await asyncio.sleep(pause_s)  # the same request id: a retry applies once
            pause_s *= 2
            with contextlib.suppress(Overloaded, Unavailable):
                return await call()
        await asyncio.sleep(pause_s)
        return await call()


def _receive(lot: pb.ReceiveRequest) -> Receive | DomainError:
    try:
        return convert.receive_from_pb(lot)
    except DomainError as err:
        return err


def has_catalog_rows(chunk: apb.ImportChunk) -> bool:
    return any(row.WhichOneof("row") != "lot" for row in chunk.rows)


async def run_import(
    chunks: AsyncIterator[apb.ImportChunk],
    applier: ChunkApplier,
    max_in_flight: int = IMPORT_MAX_CHUNKS_IN_FLIGHT,
) -> AsyncIterator[apb.ImportChunkReply]:
    """Replies to the chunks, in their order, with at most `max_in_flight` applied at once."""
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be ≥ 1")
    running: deque[asyncio.Task[apb.ImportChunkReply]] = deque()
    try:
        async for chunk in chunks:
            check_chunk(chunk)
            if has_catalog_rows(chunk):
                while running:  # a barrier: the chunks before it first
                    yield await running.popleft()
                yield await applier.apply(chunk)
                continue
            running.append(asyncio.create_task(applier.apply(chunk)))
            while running and (len(running) >= max_in_flight or running[0].done()):
                yield await running.popleft()
        while running:
            yield await running.popleft()
    finally:
        for task in running:
            task.cancel()


async def serve_import(
    applier: ChunkApplier,
    chunks: AsyncIterator[apb.ImportChunk],
    context: grpc.aio.ServicerContext,
    *,
    retry_delay_ms: int,
) -> None:
    """Write each chunk's reply to the stream; end it with a rich status on a bad chunk."""
    try:
        async for reply in run_import(chunks, applier):
            await context.write(reply)
        return
    except ChunkTooLarge as exc:
        status = exc.status()
    except DomainError as err:
        status = to_grpc_status(err, retry_delay_ms=retry_delay_ms)
    except Exception:  # a bug; asyncio.CancelledError (a BaseException) passes through
        incident_id = uuid.uuid4().hex[:16]
        log.exception("import failed", incident_id=incident_id)
        status = internal_status(incident_id)
    await context.abort_with_status(status)
