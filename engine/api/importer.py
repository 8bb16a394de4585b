"""Bulk load on the server: Import of lotwise.v1.Admin (DESIGN.md §7).

A stream of chunks of rows (catalog rows, lot rows, and lots as columns). A catalog row is
one put through the gateway (broadcast to every shard). A chunk's lots go together, as
columns (engine.domain.receipts: no object per lot), to `Gateway.receive_columns`
(engine.runtime.gateway.bulk): validated once, one shard call per
shard, each lot a Receive applied whole or not at all, with the same checks, idempotency
and refusals as its unary call. A few chunks run at once (IMPORT_MAX_CHUNKS_IN_FLIGHT), the
stream is read no faster than they finish, and replies go back in chunk order.

A chunk that carries skus or sites is a barrier: it waits for every chunk before it and
holds back every chunk after it, because the lots that follow may refer to them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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
from engine.domain.commands import RECEIVE_SOURCES, Receive
from engine.domain.errors import DomainError, FieldViolation, InvalidArgument, Overloaded, Unavailable
from engine.domain.receipts import ReceiptColumns
from engine.domain.statuses import DEFAULT_DICTIONARY, Role

IMPORT_MAX_CHUNK_ROWS = 4_096
IMPORT_MAX_CHUNKS_IN_FLIGHT = 8
# A row refused as Overloaded or Unavailable (a full shard queue, a shard being taken over
# or recovering) is tried again with the same request id — so it applies once — with a
# pause that doubles from IMPORT_RETRY_PAUSE_S up to IMPORT_RETRY_PAUSE_MAX_S, for as long
# as the import's outage has lasted less than IMPORT_RETRY_WINDOW_S. The window outlasts
# the slowest way back measured here (bench/README.md "Fail-over"): a take-over by the
# standby, 0.2–2 s; without a standby, Ray's restart and a recovery from snapshot and
# journal, 4–23 s at load average 15–26; a failed journal append (its ack waits 5 s) and
# the rebuild after it. A shard gone for longer is not coming back soon: its rows are
# reported UNAVAILABLE by line, and a re-run (idempotent) completes them.
IMPORT_RETRY_WINDOW_S = 30.0
IMPORT_RETRY_PAUSE_S = 0.05
IMPORT_RETRY_PAUSE_MAX_S = 1.0
REASON_IMPORT_CHUNK_TOO_LARGE = "IMPORT_CHUNK_TOO_LARGE"

log = structlog.get_logger("lotwise.api")
_T = TypeVar("_T")


class ImportGateway(Protocol):
    async def put_sku(self, sku: Sku, deadline: float | None = None) -> None: ...

    async def put_site(self, site: Site, deadline: float | None = None) -> None: ...

    async def receive_columns(self, receipts: ReceiptColumns) -> list[DomainError | None]: ...


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


def _column(values: Sequence[_T], name: str, n: int, default: _T | None = None) -> list[_T]:
    """A column of n values; an optional one may be empty (every lot takes `default`)."""
    if len(values) == n:
        return list(values)
    if not values and default is not None:
        return [default] * n
    expected = f"{n} values" if default is None else f"{n} values or none"
    raise InvalidArgument([FieldViolation(f"lots.{name}", f"must hold {expected} (holds {len(values)})")])


def _filled(values: Sequence[str], name: str, n: int, default: str) -> list[str]:
    """An optional text column whose blank values mean `default`."""
    column = _column(values, name, n, default)
    return [value or default for value in column] if "" in column else column


Lots = tuple[list[int], ReceiptColumns, list[tuple[int, DomainError]]]


def lots_from_pb(lots: apb.ImportLots) -> Lots:
    """The lots' lines and receipts, as columns (no object per lot), and the lots refused
    before any check (a source stock cannot be received from) by line; raises
    InvalidArgument when the columns do not line up (the chunk is malformed, not a row)."""
    n = len(lots.line)
    lines = list(lots.line)
    ids, skus, sites, lot_ids, qty = (_column(getattr(lots, name), name, n) for name in _REQUIRED)
    times = [_column(getattr(lots, name), name, n, 0) for name in ("expires_at_ms", "received_at_ms", "opened_at_ms")]
    texts = (
        _column(lots.bin, "bin", n, ""),
        _filled(lots.status, "status", n, _RECEIPT_STATUS),
        _filled(lots.owner, "owner", n, "own"),
    )
    sources = [_SOURCES.get(src) for src in _filled(lots.source, "source", n, RECEIVE_SOURCES[0].value)]
    doc_refs = _column(lots.doc_ref, "doc_ref", n, "")
    receipts = ReceiptColumns(ids, skus, sites, lot_ids, qty, *texts, *times, doc_refs, sources, [None] * n)
    if None not in sources:
        return lines, receipts, []
    # Not a bucket stock can be received from: refused alone, the others go on.
    allowed = ", ".join(s.value for s in RECEIVE_SOURCES)
    bad = InvalidArgument([FieldViolation("source", f"must be one of {allowed}")])
    good = [row for row, source in enumerate(sources) if source is not None]
    refused: list[tuple[int, DomainError]] = [
        (line, bad) for line, source in zip(lines, sources, strict=True) if source is None
    ]
    return [lines[row] for row in good], receipts.take(good), refused


_REQUIRED = ("request_id", "sku", "site", "lot_id", "qty")


def refusal(line: int, err: DomainError) -> apb.ImportRefusal:
    fields = [v.field for v in err.violations] if isinstance(err, InvalidArgument) else []
    return apb.ImportRefusal(line=line, code=err.code, message=err.message, fields=fields)


class Outage:
    """How long transient refusals have gone on, across the chunks of one import.

    The retry window is the outage's, not each chunk's: chunks in flight wait out one
    take-over together, and once a shard has been gone for the whole window the chunks
    after it are tried once each and reported (a dead shard costs an import one window,
    not one per chunk). An answer without a transient refusal ends the outage."""

    def __init__(self, window_s: float = IMPORT_RETRY_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._since: float | None = None

    def refused(self) -> None:
        if self._since is None:
            self._since = self._clock()

    def answered(self) -> None:
        self._since = None

    def deadline(self) -> float:
        """When retrying that starts now must stop: the window's end from the outage's
        start (from now when there is none) — so no row waits more than the window, even
        while other chunks' answers end the outage and it starts again."""
        return (self._clock() if self._since is None else self._since) + self.window_s

    def left_s(self, deadline: float) -> float:
        """Seconds of retrying left before `deadline` and the outage's window (≤ 0: none)."""
        since = self._clock() if self._since is None else self._since
        return min(deadline, since + self.window_s) - self._clock()


def _transient(result: object) -> bool:
    return isinstance(result, Overloaded | Unavailable)


class ChunkApplier:
    """Applies the rows of one chunk: catalog rows through the gateway, lots in bulk."""

    def __init__(
        self,
        gateway: ImportGateway,
        *,
        retry_pause_s: float = IMPORT_RETRY_PAUSE_S,
        outage: Outage | None = None,
    ) -> None:
        self._gateway = gateway
        self._retry_pause_s = retry_pause_s
        self._outage = outage or Outage()

    async def apply(self, chunk: apb.ImportChunk) -> apb.ImportChunkReply:
        reply = apb.ImportChunkReply(chunk_seq=chunk.chunk_seq)
        rows: Sequence[apb.ImportRow] = chunk.rows
        # All at once, in file order: each shard's micro-batcher is first in, first out,
        # so a sku put twice ends as its last row says. Catalog rows first: the chunk's
        # lots may refer to them.
        catalog = [row for row in rows if row.WhichOneof("row") != "lot"]
        refused = [r for r in await asyncio.gather(*(self._catalog_row(row, reply) for row in catalog)) if r]
        row_lots = [(row.line, _receive(row.lot)) for row in rows if row.WhichOneof("row") == "lot"]
        refused += [refusal(line, cmd) for line, cmd in row_lots if isinstance(cmd, DomainError)]
        good = [(line, cmd) for line, cmd in row_lots if isinstance(cmd, Receive)]
        lines, receipts = [line for line, _ in good], ReceiptColumns.of(cmd for _, cmd in good)
        if chunk.lots.line:
            column_lines, column_receipts, bad = lots_from_pb(chunk.lots)
            refused += [refusal(line, err) for line, err in bad]
            lines, receipts = lines + column_lines, _joined(receipts, column_receipts)
        if lines:
            refused += await self._lots(lines, receipts, reply)
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
        self, lines: list[int], receipts: ReceiptColumns, reply: apb.ImportChunkReply
    ) -> list[apb.ImportRefusal]:
        """Receive the chunk's lots in bulk; each lot applied or refused on its own."""
        results = await self._bulk_tries(receipts)
        if results.count(None) == len(results):  # all received: the usual case, counted at once
            reply.lots += len(results)
            reply.units += sum(receipts.qty)
            return []
        refused = []
        for line, qty, result in zip(lines, receipts.qty, results, strict=True):
            if result is None:
                reply.lots += 1
                reply.units += qty
            else:
                refused.append(refusal(line, result))
        return refused

    async def _pauses(self) -> AsyncIterator[None]:
        """Yields once per retry: after a pause that doubles up to IMPORT_RETRY_PAUSE_MAX_S,
        while the outage has time left (bounded: IMPORT_RETRY_WINDOW_S in all)."""
        pause_s, deadline = self._retry_pause_s, self._outage.deadline()
        while (left_s := self._outage.left_s(deadline)) > 0:
            await asyncio.sleep(min(pause_s, left_s))
            pause_s = min(2 * pause_s, IMPORT_RETRY_PAUSE_MAX_S)
            yield

    async def _bulk_tries(self, receipts: ReceiptColumns) -> list[DomainError | None]:
        """Each receipt's refusal or None (received); those refused as Overloaded or
        Unavailable (a full queue, a shard taken over or recovering) are sent again — the
        same request ids, so a receipt applies once — within the outage's window."""
        results = await self._gateway.receive_columns(receipts)
        again = [i for i, result in enumerate(results) if _transient(result)]
        if not again:
            self._outage.answered()
            return results
        self._outage.refused()
        async for _ in self._pauses():
            retried = await self._gateway.receive_columns(receipts.take(again))
            for i, result in zip(again, retried, strict=True):
                results[i] = result
            again = [i for i in again if _transient(results[i])]
            if not again:
                self._outage.answered()
                break
        return results

    async def _tries(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call()`, and again after a transient refusal (a full queue, a shard taken over
        or recovering) within the outage's window; the last refusal when it runs out."""
        try:
            answer = await call()
        except (Overloaded, Unavailable) as err:
            self._outage.refused()
            last: DomainError = err
        else:
            self._outage.answered()
            return answer
        async for _ in self._pauses():  # the same request id: a retry applies once
            try:
                answer = await call()
            except (Overloaded, Unavailable) as err:
                last = err
                continue
            self._outage.answered()
            return answer
        raise last


def _receive(lot: pb.ReceiveRequest) -> Receive | DomainError:
    try:
        return convert.receive_from_pb(lot)
    except DomainError as err:
        return err


def _joined(first: ReceiptColumns, second: ReceiptColumns) -> ReceiptColumns:
    if not len(first):
        return second
    return ReceiptColumns(*(list(a) + list(b) for a, b in zip(first.columns(), second.columns(), strict=True)))


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
