"""LotwiseClient: the async Python client of lotwise.v1.Inventory.

    async with LotwiseClient("127.0.0.1:50051") as client:
        await client.receive("sku-1", "store-7", "LOT-A", 10, status="available")
        hold = await client.reserve([HoldLine("sku-1", "store-7", ReserveLine(3))], ttl_ms=60_000)
        await client.commit(hold.hold_id)

Methods take plain values and domain dataclasses and return them (HoldSummary,
Availability, Received, ...), never protobufs. Refusals raise the same typed exceptions
as the in-process gateway (engine.domain.errors), rebuilt from the rich status.

Every mutating call carries a request id, generated when the caller gives none, and a
retry reuses it: UNAVAILABLE and RESOURCE_EXHAUSTED are retried with exponential backoff
and full jitter, at most `RetryPolicy.max_attempts` times and never past the call's
deadline, and only while the client's retry budget (`RetryBudget`, gRPC's retry
throttling) has tokens, so retries cannot amplify an overload. The server's RetryInfo
hint is a floor for the back-off. The server answers a retried request id with its
first answer, so a retry never applies anything twice. When the engine refuses most of
what it is sent, the client's adaptive throttle (`AdaptiveThrottle`, as in Google's SRE
book) refuses a share of the attempts itself, before they cost the engine anything.
An optional `ConcurrencyLimit` bounds the attempts in flight (AIMD on first-try latency);
it refuses those beyond it before they wait in the server's queue. An attempt refused
by either is retried as a RESOURCE_EXHAUSTED would be — after the refusing side's hint
plus jitter, within the deadline, while the retry budget allows retries — and only then
raises `Throttled`, an `Overloaded` (RESOURCE_EXHAUSTED) that never left the client.
A DEADLINE_EXCEEDED raised by the transport (not by the engine) means "outcome
unknown": call again with the same request id to learn it.

Auto-batching (on by default, `batching=None` turns it off): the commands of concurrent
calls on one client — catalog puts, stock commands, holds, GetHold, GetAvailability —
travel together in one Execute batch (engine.api.autobatch); each call still gets its own
answer or its own typed exception, exactly as its unary call would, retries included.
Listings and stock queries stay unary. A server without Execute is detected on the first
batch and the client goes on with unary calls.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import grpc
import structlog
from google.rpc import status_pb2

from engine.api import convert
from engine.api.autobatch import AutoBatcher, BatchPolicy, CallFailed
from engine.api.errors import from_rpc_status, is_retryable, retry_delay_s, status_of_rpc_error
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.gen.lotwise.v1 import identity_pb2 as ipb
from engine.api.gen.lotwise.v1 import identity_pb2_grpc as ipb_grpc
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.timeout_header import timeout_metadata
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import (
    NO_PREV_SEQ,
    Adjust,
    Adjusted,
    ChangeStatus,
    Consume,
    Consumed,
    Count,
    Counted,
    CountLine,
    CountSource,
    DeviceCommand,
    DeviceOpDone,
    LotOpened,
    LotsExpired,
    Move,
    Moved,
    Receive,
    Received,
    Scrapped,
    StatusChanged,
    Strategy,
)
from engine.domain.deadletters import DeadLetter, DeadLetterPage, ReplayResult, StoredDeadLetter
from engine.domain.errors import DeadlineExceeded, Overloaded
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import External, Finance
from engine.domain.statuses import DEFAULT_DICTIONARY, Role
from engine.endpoints import TLS_CA_ENV, resolve_token
from engine.runtime.types import Availability, HoldLine, HoldSummary, ShardCheck

log = structlog.get_logger("lotwise.client")

_Resp = TypeVar("_Resp")

DEFAULT_TIMEOUT_S = 5.0
# gRPC carries deadlines with millisecond resolution (a shorter one is rounded up and may
# well succeed), so a smaller budget is refused locally instead of being stretched.
MIN_ATTEMPT_S = 0.001


def new_request_id() -> str:
    """A UUIDv7 as 32 hex digits: time-ordered (friendly to logs and indexes), 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand  # 48-bit time, then 80 bits of randomness
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value).hex


@dataclass(frozen=True, slots=True)
class DeviceOperation:
    """One op a store device recorded offline, for `apply_device_ops`: `seq` in the device's
    own numbering (consecutive within an upload), `at_ms` when it happened, `command` the op
    (its request id is ignored: the engine derives one from the device and seq), and
    `prev_seq` the device's previous seq on the command's (sku, site) — 0 for its first
    there, NO_PREV_SEQ when the device does not keep it (a gap between uploads then goes
    unseen)."""

    seq: int
    at_ms: int
    command: DeviceCommand
    prev_seq: int = NO_PREV_SEQ


def device_operation_to_pb(op: DeviceOperation) -> pb.DeviceOperation:
    kind, request = _device_command_to_pb(op.command)
    msg = pb.DeviceOperation(seq=op.seq, at_ms=op.at_ms, **{kind: request})
    if op.prev_seq != NO_PREV_SEQ:
        msg.prev_seq = op.prev_seq
    return msg


def _device_command_to_pb(cmd: DeviceCommand) -> tuple[str, Any]:
    """A device command as the unary request of its kind (field by field, by name)."""
    finance = convert.finance_to_pb(cmd.finance)
    match cmd:
        case Receive():
            return "receive", pb.ReceiveRequest(
                **_plain(cmd, "finance", "source"), source=cmd.source.value, finance=finance
            )
        case Consume():
            return "consume", pb.ConsumeRequest(
                **_plain(cmd, "finance", "strategy", "destination"),
                strategy=convert.STRATEGY_TO_PB[Strategy(cmd.strategy)],
                destination=cmd.destination.value,
                finance=finance,
            )
        case Count():
            return "count", pb.CountRequest(
                **_plain(cmd, "finance", "lines", "source"),
                lines=[pb.CountLine(**_plain(line)) for line in cmd.lines],
                source=convert.COUNT_SOURCE_TO_PB[cmd.source],
            )
        case Adjust():
            return "adjust", pb.AdjustRequest(**_plain(cmd, "finance"), finance=finance)
        case Move():
            return "move", pb.MoveRequest(**_plain(cmd, "finance"), finance=finance)
        case ChangeStatus():
            return "change_status", pb.ChangeStatusRequest(**_plain(cmd, "finance"), finance=finance)
    raise TypeError(f"a device op cannot carry {type(cmd).__name__}")


def _plain(value: Any, *but: str) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__ if name not in but}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of UNAVAILABLE / RESOURCE_EXHAUSTED, always with the same request id."""

    max_attempts: int = 4  # attempts sent, the first try included; 1 disables retries
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    # Attempts the client's own throttle or concurrency limit refused, waited out and tried
    # again, per call: they cost the engine nothing, so they are not `max_attempts`; the
    # deadline bounds them too, this bounds the loop whatever the deadline.
    max_local_refusals: int = 64

    def backoff_s(self, attempt: int, rng: random.Random, server_hint_s: float | None = None) -> float:
        """Full jitter over an exponential cap; never shorter than the server's RetryInfo."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        delay = rng.uniform(0, cap)
        return max(delay, server_hint_s or 0.0)


class RetryBudget:
    """Retry throttling as gRPC's (proposal A6), per client: retries cannot amplify overload.

    The bucket starts full (`max_tokens`). Every attempt refused with a retryable status
    takes a token, every success puts back `token_ratio`; retries are allowed only while
    more than half the bucket is left. So once most calls are refused the client retries
    at most `token_ratio` times per success (plus the half bucket it started with), and
    the first answers after an overload earn the retries back. Tokens count commands, as
    the server's door does, so a refused batch of 256 costs 256: hence a bucket of 1,000
    (gRPC's largest), room for a refused batch or two before retries stop.
    """

    def __init__(self, max_tokens: float = 1_000.0, token_ratio: float = 0.1) -> None:
        if max_tokens <= 0 or token_ratio <= 0:
            raise ValueError("max_tokens and token_ratio must be > 0")
        self.max_tokens = max_tokens
        self.token_ratio = token_ratio
        self.tokens = max_tokens
        self.throttled = 0  # retries the budget refused (for benches and tests)

    def on_success(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def allows_retry(self) -> bool:
        """Whether a retry is allowed now, taking nothing (an attempt refused by the client
        itself, never sent, is no evidence about the engine)."""
        return self.tokens > self.max_tokens / 2

    def on_retryable_failure(self) -> bool:
        """Take a token for the refused attempt; True when a retry is still allowed."""
        self.tokens = max(0.0, self.tokens - 1)
        if self.tokens > self.max_tokens / 2:
            return True
        self.throttled += 1
        return False


class Throttled(Overloaded):
    """An attempt the client's adaptive throttle refused: never sent, nothing applied.
    An `Overloaded` like the engine's own refusal (back off, then call again), told
    apart so that callers and benches count it separately. `retry_after_s` is the
    refusing side's hint, as the engine's RetryInfo: the client waits at least that long
    before it asks again. Raised to the caller only once the call's retries are over."""

    def __init__(self, what: str = "the client's adaptive throttle", retry_after_s: float = 0.0) -> None:
        super().__init__(what, 0)
        self.retry_after_s = retry_after_s
        self.message = f"not sent: the engine refused most recent calls ({what}); retry with backoff"
        self.args = (self.message,)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Throttled, (self.what, self.retry_after_s))


class AdaptiveThrottle:
    """Client-side adaptive throttling (after Google's SRE book, "Handling Overload"), per client.

    It counts the attempts the engine answered (`requests`) and those it accepted
    (`accepts`: any answer but an overload refusal, RESOURCE_EXHAUSTED), both decaying with
    `half_life_s`, and refuses an attempt locally with probability
    max(0, (requests − k·accepts) / (requests + 1)). While the engine accepts at least 1/k
    of what it is sent, nothing is refused here; beyond, the client sends less until the
    engine refuses about 1 − 1/k of what it gets, and the rest never costs it a call (a
    refusal costs the server nearly what an answer does: the aio server's per-call work
    comes before the door).

    Unlike the book, attempts refused here are not counted as requests: counted, they keep
    the probability near 1 once the engine refused a burst (each local refusal raises it
    again, and only the few attempts let through can bring it down), and a closed loop of
    callers never recovered in a bench row (bench/README.md, "Overload"). Counted when
    answered, not when sent, so a burst of calls in flight is not mistaken for refusals;
    nothing is refused before `min_requests` answers, and never more than `max_reject` of
    the attempts (as Envoy's admission control): after a burst of refusals the attempts let
    through must be enough to see the engine accept again — at 0.999 a bench row of batched
    callers sent 48 commands in 8 s to an idle server.

    `k` = 1.2 rather than the book's 2, since refusals cost the server so much: it should
    see at most ~1/6 more than it accepts. A larger k is more lenient, 0 turns the throttle
    off (every attempt is sent).
    """

    def __init__(
        self,
        k: float = 1.2,
        half_life_s: float = 2.0,
        min_requests: float = 10.0,
        max_reject: float = 0.9,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not (k == 0 or k >= 1) or half_life_s <= 0 or not 0 <= max_reject < 1:
            raise ValueError("need k ≥ 1 (or 0: off), half_life_s > 0 and 0 ≤ max_reject < 1")
        self.k = k
        self._half_life_s = half_life_s
        self._min_requests = min_requests
        self._max_reject = max_reject
        self._clock = clock
        self._rng = rng or random.Random()
        self.requests = 0.0
        self.accepts = 0.0
        self._at = clock()
        self.throttled = 0  # attempts refused here (for benches and tests)

    def _decay(self) -> None:
        now = self._clock()
        if now > self._at:
            factor = 0.5 ** ((now - self._at) / self._half_life_s)
            self.requests *= factor
            self.accepts *= factor
            self._at = now

    def reject_probability(self) -> float:
        if self.k == 0:
            return 0.0
        self._decay()
        if self.requests < self._min_requests:
            return 0.0  # a few refusals are no evidence: a client that calls rarely is never throttled
        p = (self.requests - self.k * self.accepts) / (self.requests + 1)
        return min(max(0.0, p), self._max_reject)

    def allow(self) -> bool:
        """False: refuse the attempt here, it is not to be sent."""
        p = self.reject_probability()
        if p > 0 and self._rng.random() < p:
            self.throttled += 1
            return False
        return True

    def retry_after_s(self) -> float:
        """How long an attempt refused here waits before it asks again (`Throttled`'s hint).
        The probability moves with the counts, which decay over `half_life_s` and grow only
        with answers: asked much more often than a twentieth of the half-life it has barely
        moved, so the caller would only spin. The more it refuses, the longer: 90 ms at the
        default half-life and max_reject, about 30 attempts within a 5 s deadline — enough
        for one let through to find an engine that has recovered."""
        return self._half_life_s * self.reject_probability() / 20

    def answered(self, accepted: bool) -> None:
        """The engine answered an allowed attempt; `accepted`: not an overload refusal."""
        self._decay()
        self.requests += 1
        self.accepts += accepted


# Commands the adaptive throttle never refuses: they free stock held by earlier reserves
# (the door admits them first too); their answers still count.
UNTHROTTLED_COMMANDS = frozenset({"commit", "release"})

# The answer of an engine that refused a call for overload (AdaptiveThrottle). UNAVAILABLE
# (a shard recovering) is not overload: its retries must go on, unthrottled, until it is back.
_OVERLOADED_CODE = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def accepted(status_code: int) -> bool:
    """Whether an answer with this gRPC status code counts as accepted by the engine."""
    return status_code != _OVERLOADED_CODE


class ConcurrencyLimit:
    """A client-side limit on the attempts in flight on one channel, AIMD on first-try latency
    (after Netflix's concurrency-limits and TCP's congestion avoidance), per client.

    Why: a call the engine's door refuses for its wait (issue 19, `wire_max_wait_ms`) has
    *already* waited in gRPC core's queue, and its retry waits RetryInfo on top; an attempt
    this limit refuses has waited nothing and never queues in the server. So an attempt that
    would exceed the limit fails at once, locally, as `Throttled` (never sent, nothing applied).

    The limit grows by 1/limit per attempt answered within `latency_target_s` while the
    channel uses at least half of it (about +1 per round trip, and never while idle), and
    falls to `backoff_ratio` of itself when an attempt is refused for overload or answered
    later than the target — at most once per `latency_target_s`, so one round of late
    answers counts once. Only engine answers move it: UNAVAILABLE (a shard recovering) and
    other errors neither grow nor shrink it.

    `critical` attempts (commits and releases: they free stock) are never refused and still
    count as in flight, so reserves are the ones limited first. An attempt of `cost` > 1 (a
    batch) is let through while nothing else is in flight, so no batch waits forever.
    """

    def __init__(
        self,
        initial: float = 32.0,
        min_limit: float = 4.0,
        max_limit: float = 1_000.0,
        latency_target_s: float = 0.1,
        backoff_ratio: float = 0.9,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= min_limit <= initial <= max_limit or latency_target_s <= 0 or not 0 < backoff_ratio < 1:
            raise ValueError("need 1 ≤ min_limit ≤ initial ≤ max_limit, latency_target_s > 0, 0 < backoff_ratio < 1")
        self.limit = float(initial)
        self._min = float(min_limit)
        self._max = float(max_limit)
        self._target_s = latency_target_s
        self._ratio = backoff_ratio
        self._clock = clock
        self._last_drop = -float("inf")
        self.in_flight = 0
        self.throttled = 0  # attempts refused here (for benches and tests)

    def try_acquire(self, cost: int = 1, critical: bool = False) -> float | None:
        """The attempt's start (pass it to `release`), or None: refused, not to be sent."""
        if not critical and self.in_flight > 0 and self.in_flight + cost > self.limit:
            self.throttled += cost
            return None
        self.in_flight += cost
        return self._clock()

    def release(self, started: float, cost: int = 1, answer: str = "ok") -> None:
        """An attempt ended. `answer`: "ok" (the engine answered it), "overloaded" (refused
        for load) or "other" (no evidence about load: UNAVAILABLE, errors, cancellation)."""
        self.in_flight = max(self.in_flight - cost, 0)
        now = self._clock()
        if answer == "overloaded" or (answer == "ok" and now - started > self._target_s):
            self._drop(now)
        elif answer == "ok" and 2 * (self.in_flight + cost) >= self.limit:
            self.limit = min(self._max, self.limit + cost / self.limit)

    def retry_after_s(self) -> float:
        """How long an attempt refused here waits before it asks again (`Throttled`'s hint):
        while the limit holds, the attempts in flight are answered within about the
        latency target, and each answer frees a slot."""
        return self._target_s

    def _drop(self, now: float) -> None:
        if now - self._last_drop >= self._target_s:
            self._last_drop = now
            self.limit = max(self._min, self.limit * self._ratio)


class AttemptLimit(Protocol):
    """What the client needs of a limit on its attempts in flight: ConcurrencyLimit (AIMD on
    a fixed latency target) or engine.api.gradient.GradientLimit (tied to unloaded latency)."""

    limit: float
    in_flight: int
    throttled: int

    def try_acquire(self, cost: int = 1, critical: bool = False) -> float | None: ...

    def release(self, started: float, cost: int = 1, answer: str = "ok") -> None: ...

    def retry_after_s(self) -> float: ...


def limit_answer(status_code: int) -> str:
    """What an answer with this gRPC status code tells a ConcurrencyLimit."""
    if status_code == _OVERLOADED_CODE:
        return "overloaded"
    return "other" if status_code == grpc.StatusCode.UNAVAILABLE.value[0] else "ok"


def _bearer_of(target: str, metadata: Sequence[tuple[str, str]], token: str | None, token_file: Path | None) -> str:
    """`Bearer <token>` for the engine at `target` ("" when the caller set its own or has none)."""
    if any(key == "authorization" for key, _ in metadata):
        return ""
    found = token if token is not None else resolve_token(target, token_file)
    return f"Bearer {found}" if found else ""


def _tls_from_env() -> grpc.ChannelCredentials | None:
    ca_file = os.environ.get(TLS_CA_ENV)
    return grpc.ssl_channel_credentials(Path(ca_file).read_bytes()) if ca_file else None


@dataclass(frozen=True, slots=True)
class CallerView:
    """Whose view the engine's answers are (LotwiseClient.whoami)."""

    subject: str  # "" when the engine runs without authentication
    groups: tuple[str, ...]
    auth: bool
    scopes: tuple[tuple[str, tuple[str, ...]], ...]  # (scope, actions), most general first

    def line(self, max_scopes: int = 3) -> str:
        """One line for people: `view of ana (clerks): site FW-BOS bin A/01 [read, move]`."""
        if not self.auth:
            return "view: everything (the engine runs without authentication)"
        who = self.subject + (f" ({', '.join(self.groups)})" if self.groups else "")
        shown = [f"{scope} [{', '.join(actions)}]" for scope, actions in self.scopes[:max_scopes]]
        more = len(self.scopes) - max_scopes
        covers = "; ".join(shown) + (f"; +{more} more" if more > 0 else "") if shown else "no grants"
        return f"view of {who}: {covers}"


NO_RETRY = RetryPolicy(max_attempts=1)
DEFAULT_BATCHING = BatchPolicy()


class LotwiseClient:
    """An async client over one grpc.aio channel. Cheap to share; close it (or use `async with`)."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = RetryPolicy(),
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
        channel: grpc.aio.Channel | None = None,
        rng: random.Random | None = None,
        batching: BatchPolicy | None = DEFAULT_BATCHING,
        retry_budget: RetryBudget | None = None,
        throttle: AdaptiveThrottle | None = None,
        concurrency_limit: AttemptLimit | None = None,
        token: str | None = None,
        token_file: Path | None = None,
    ) -> None:
        """`target` is host:port. `metadata` goes with every call.
        Credentials: `token` (a bearer JWT), else `token_file`, else LOTWISE_TOKEN /
        LOTWISE_TOKEN_FILE, else the admin token engine.json names for this target
        (engine.endpoints.resolve_token); `token=""` sends none. TLS: `credentials`, else
        LOTWISE_TLS_CA_FILE (a PEM CA to trust) when set.
        Pass `channel` to bring your own (the client then does not close it).
        `batching=None`: every call is its own unary RPC (see the module doc).
        `retry_budget`: shared by every call of this client (default: a fresh RetryBudget()).
        `throttle`: likewise (default: a fresh AdaptiveThrottle()).
        `concurrency_limit`: a ConcurrencyLimit or GradientLimit on this client's attempts in flight (default
        none: a burst of concurrent calls is all sent; with one, those beyond the limit wait
        for a slot within their deadline and retry budget, then raise `Throttled`; reserves
        first, commits and releases never)."""
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if retry.max_attempts < 1:
            raise ValueError("retry.max_attempts must be ≥ 1")
        self._owns_channel = channel is None
        bearer = _bearer_of(target, metadata, token, token_file)
        if bearer:
            # Per call, not a channel interceptor: grpc.aio's intercepted calls cost the
            # caller several times a plain call (bench/auth.py). Other stubs on
            # `client.channel` pass `client.metadata`.
            metadata = [*metadata, ("authorization", bearer)]
        credentials = credentials or _tls_from_env()
        if channel is None:
            channel_options = [("grpc.keepalive_time_ms", 30_000), *options]
            channel = (
                grpc.aio.secure_channel(target, credentials, options=channel_options)
                if credentials is not None
                else grpc.aio.insecure_channel(target, options=channel_options)
            )
        self.channel = channel
        self._stub = pb_grpc.InventoryStub(channel)
        self._admin = apb_grpc.AdminStub(channel)
        self._timeout_s = timeout_s
        self._retry = retry
        self._metadata = tuple(metadata)
        self._rng = rng or random.Random()
        self.retry_budget = retry_budget or RetryBudget()
        self.throttle = throttle or AdaptiveThrottle()
        self.concurrency_limit = concurrency_limit
        self._batcher = AutoBatcher(self._stub, self._metadata, batching) if batching is not None else None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What goes with every call (the bearer token among it): pass it to other stubs on `channel`."""
        return self._metadata

    @property
    def batching(self) -> bool:
        """True while concurrent calls coalesce into Execute batches."""
        return self._batcher is not None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        if self._owns_channel:
            await self.channel.close()

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until the channel is connected (raises TimeoutError after timeout_s)."""
        await asyncio.wait_for(self.channel.channel_ready(), timeout_s or self._timeout_s)

    # ---- catalog ----

    async def put_sku(self, sku: Sku, *, request_id: str | None = None, timeout_s: float | None = None) -> Sku:
        req = pb.PutSkuRequest(request_id=request_id or new_request_id(), sku=convert.sku_to_pb(sku))
        reply = await self._command("put_sku", self._stub.PutSku, req, timeout_s)
        return convert.sku_from_pb(reply.sku)

    async def put_site(self, site: Site, *, request_id: str | None = None, timeout_s: float | None = None) -> Site:
        req = pb.PutSiteRequest(request_id=request_id or new_request_id(), site=convert.site_to_pb(site))
        reply = await self._command("put_site", self._stub.PutSite, req, timeout_s)
        return convert.site_from_pb(reply.site)

    async def list_sites(self, org_prefix: str = "", *, timeout_s: float | None = None) -> list[Site]:
        reply = await self._call(self._stub.ListSites, pb.ListSitesRequest(org_prefix=org_prefix), timeout_s)
        return [convert.site_from_pb(s) for s in reply.sites]

    async def list_skus(self, *, timeout_s: float | None = None) -> list[Sku]:
        reply = await self._call(self._stub.ListSkus, pb.ListSkusRequest(), timeout_s)
        return [convert.sku_from_pb(s) for s in reply.skus]

    # ---- stock commands ----

    async def receive(
        self,
        sku: str,
        site: str,
        lot_id: str,
        qty: int,
        *,
        bin: str = "",
        status: str = DEFAULT_DICTIONARY.role(Role.RECEIPT),
        owner: str = "own",
        expires_at_ms: int = 0,
        received_at_ms: int = 0,
        opened_at_ms: int = 0,
        doc_ref: str = "",
        source: External | str = External.SUPPLIER,
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Received:
        """Book stock in; `source` is the external bucket it comes from (a return:
        External.CUSTOMER, a transfer in: External.TRANSIT)."""
        req = pb.ReceiveRequest(
            request_id=request_id or new_request_id(),
            sku=sku,
            site=site,
            lot_id=lot_id,
            qty=qty,
            bin=bin,
            status=status,
            owner=owner,
            expires_at_ms=expires_at_ms,
            received_at_ms=received_at_ms,
            opened_at_ms=opened_at_ms,
            doc_ref=doc_ref,
            source=str(source),
            finance=convert.finance_to_pb(finance),
        )
        return convert.received_from_pb(await self._command("receive", self._stub.Receive, req, timeout_s))

    async def move(
        self,
        sku: str,
        site: str,
        lot_id: str,
        qty: int,
        from_bin: str,
        to_bin: str,
        *,
        status: str = DEFAULT_DICTIONARY.role(Role.READY),
        owner: str = "own",
        doc_ref: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Moved:
        req = pb.MoveRequest(
            request_id=request_id or new_request_id(),
            sku=sku,
            site=site,
            lot_id=lot_id,
            qty=qty,
            from_bin=from_bin,
            to_bin=to_bin,
            status=status,
            owner=owner,
            doc_ref=doc_ref,
            finance=convert.finance_to_pb(finance),
        )
        return convert.moved_from_pb(await self._command("move", self._stub.Move, req, timeout_s))

    async def change_status(
        self,
        sku: str,
        site: str,
        lot_id: str,
        qty: int,
        from_status: str,
        to_status: str,
        *,
        bin: str = "",
        owner: str = "own",
        doc_ref: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> StatusChanged:
        req = pb.ChangeStatusRequest(
            request_id=request_id or new_request_id(),
            sku=sku,
            site=site,
            lot_id=lot_id,
            qty=qty,
            from_status=from_status,
            to_status=to_status,
            bin=bin,
            owner=owner,
            doc_ref=doc_ref,
            finance=convert.finance_to_pb(finance),
        )
        return convert.status_changed_from_pb(
            await self._command("change_status", self._stub.ChangeStatus, req, timeout_s)
        )

    async def consume(
        self,
        sku: str,
        site: str,
        qty: int,
        *,
        lot_id: str = "",
        bin_prefix: str = "",
        owner: str = "",
        strategy: Strategy = Strategy.FEFO,
        doc_ref: str = "",
        destination: External | str = External.CUSTOMER,
        status: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Consumed:
        """Issue stock without a hold; `destination` is where it goes (External.TRANSIT,
        External.SCRAP); `status` takes only from quants in that status ("" = sellable)."""
        req = pb.ConsumeRequest(
            request_id=request_id or new_request_id(),
            sku=sku,
            site=site,
            qty=qty,
            lot_id=lot_id,
            bin_prefix=bin_prefix,
            owner=owner,
            strategy=convert.STRATEGY_TO_PB[Strategy(strategy)],
            doc_ref=doc_ref,
            destination=str(destination),
            status=status,
            finance=convert.finance_to_pb(finance),
        )
        return convert.consumed_from_pb(await self._command("consume", self._stub.Consume, req, timeout_s))

    async def adjust(
        self,
        sku: str,
        site: str,
        lot_id: str,
        counted_qty: int,
        *,
        bin: str = "",
        status: str = DEFAULT_DICTIONARY.role(Role.READY),
        owner: str = "own",
        reason: str = "count",
        doc_ref: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
        delta_qty: int = 0,
    ) -> Adjusted:
        """A count (the quant set to `counted_qty`), or with `delta_qty` ≠ 0 (and
        `counted_qty` 0) a relative adjustment applied inside the cell."""
        req = pb.AdjustRequest(
            request_id=request_id or new_request_id(),
            sku=sku,
            site=site,
            lot_id=lot_id,
            counted_qty=counted_qty,
            bin=bin,
            status=status,
            owner=owner,
            reason=reason,
            doc_ref=doc_ref,
            finance=convert.finance_to_pb(finance),
            delta_qty=delta_qty,
        )
        return convert.adjusted_from_pb(await self._command("adjust", self._stub.Adjust, req, timeout_s))

    # ---- stock health inside the cell (issue 15) ----

    async def count(
        self,
        sku: str,
        site: str,
        bin: str,
        lines: Sequence[CountLine],
        *,
        whole_bin: bool = False,
        source: CountSource = CountSource.CYCLE,
        confidence: float = 1.0,
        doc_ref: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Counted:
        """An absolute count applied inside the cell in one step (see the Count RPC)."""
        req = pb.CountRequest(
            request_id=request_id or new_request_id(),
            sku=sku,
            site=site,
            bin=bin,
            lines=[pb.CountLine(lot_id=x.lot_id, qty=x.qty, status=x.status, owner=x.owner) for x in lines],
            whole_bin=whole_bin,
            source=convert.COUNT_SOURCE_TO_PB[source],
            confidence=confidence,
            doc_ref=doc_ref,
        )
        return convert.counted_from_pb(await self._call(self._stub.Count, req, timeout_s))

    async def open_lot(
        self,
        sku: str,
        site: str,
        lot_id: str,
        *,
        opened_at_ms: int = 0,
        doc_ref: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> LotOpened:
        """A lot was opened at the station (0 = now); opening it again changes nothing."""
        req = pb.OpenLotRequest(
            request_id=request_id or new_request_id(),
            sku=sku,
            site=site,
            lot_id=lot_id,
            opened_at_ms=opened_at_ms,
            doc_ref=doc_ref,
        )
        return convert.lot_opened_from_pb(await self._call(self._stub.OpenLot, req, timeout_s))

    async def expire_lots(
        self, sku: str, site: str, lot_id: str = "", *, request_id: str | None = None, timeout_s: float | None = None
    ) -> LotsExpired:
        req = pb.ExpireLotsRequest(request_id=request_id or new_request_id(), sku=sku, site=site, lot_id=lot_id)
        return convert.lots_expired_from_pb(await self._call(self._stub.ExpireLots, req, timeout_s))

    async def scrap_over_age(
        self, sku: str, site: str, lot_id: str = "", *, request_id: str | None = None, timeout_s: float | None = None
    ) -> Scrapped:
        req = pb.ScrapOverAgeRequest(request_id=request_id or new_request_id(), sku=sku, site=site, lot_id=lot_id)
        return convert.scrapped_from_pb(await self._call(self._stub.ScrapOverAge, req, timeout_s))

    async def apply_device_ops(
        self,
        device_id: str,
        ops: Sequence[DeviceOperation],
        *,
        timeout_s: float | None = None,
    ) -> list[DeviceOpDone]:
        """A device's offline upload (ApplyDeviceOps): each op applies exactly once however
        late or often it is uploaded, in seq order; one per op back, in seq order (refused
        ops say why, once and for all). Travels in an Execute batch when batching is on.
        A gap between uploads (an op's `prev_seq` the cell never saw) raises
        FailedPrecondition DEVICE_OPS_MISSING naming `missing_seq`: upload from it again."""
        req = pb.ApplyDeviceOpsRequest(device_id=device_id, ops=[device_operation_to_pb(op) for op in ops])
        reply = await self._command("apply_device_ops", self._stub.ApplyDeviceOps, req, timeout_s)
        return [
            DeviceOpDone(r.seq, r.already_applied, None, r.refusal_reason, r.refusal_message) for r in reply.results
        ]

    # ---- holds ----

    async def reserve(
        self,
        lines: Sequence[HoldLine],
        ttl_ms: int,
        *,
        hold_id: str | None = None,
        doc_ref: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> HoldSummary:
        """Hold stock over one or more (sku, site) lines, all or nothing.

        Without `hold_id` the hold is named after the request id, so a retry finds it.
        """
        request_id = request_id or new_request_id()
        req = pb.ReserveRequest(
            request_id=request_id,
            hold_id=hold_id or request_id,
            lines=[convert.hold_line_to_pb(line) for line in lines],
            ttl_ms=ttl_ms,
            doc_ref=doc_ref,
            finance=convert.finance_to_pb(finance),
        )
        reply = await self._command("reserve", self._stub.Reserve, req, timeout_s)
        return convert.hold_from_pb(reply.hold)

    async def commit(
        self,
        hold_id: str,
        lines: Sequence[CommitLine] | None = None,
        *,
        doc_ref: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> HoldSummary:
        """Commit everything held (`lines=None`), or each listed pair's qty; the rest is released."""
        if lines is not None and not lines:
            # The wire cannot tell "no lines" from "all": say what an empty list would mean.
            raise ValueError("lines=[] would commit nothing; pass None to commit all, or use release()")
        req = pb.CommitRequest(
            request_id=request_id or new_request_id(),
            hold_id=hold_id,
            lines=[convert.commit_line_to_pb(line) for line in lines or ()],
            doc_ref=doc_ref,
            finance=convert.finance_to_pb(finance),
        )
        reply = await self._command("commit", self._stub.Commit, req, timeout_s)
        return convert.hold_from_pb(reply.hold)

    async def release(
        self,
        hold_id: str,
        *,
        doc_ref: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> HoldSummary:
        req = pb.ReleaseRequest(
            request_id=request_id or new_request_id(),
            hold_id=hold_id,
            doc_ref=doc_ref,
            finance=convert.finance_to_pb(finance),
        )
        reply = await self._command("release", self._stub.Release, req, timeout_s)
        return convert.hold_from_pb(reply.hold)

    async def get_hold(self, hold_id: str, *, timeout_s: float | None = None) -> HoldSummary:
        reply = await self._command("get_hold", self._stub.GetHold, pb.GetHoldRequest(hold_id=hold_id), timeout_s)
        return convert.hold_from_pb(reply.hold)

    async def list_holds(
        self,
        *,
        sku: str = "",
        site: str = "",
        states: Sequence[str] = (),
        expiring_before_ms: int = 0,
        page_size: int = 0,
        page_token: str = "",
        timeout_s: float | None = None,
    ) -> tuple[list[HoldSummary], str]:
        """One page of holds (each with its matching parts) and the next page's token ("" last)."""
        req = pb.ListHoldsRequest(
            sku=sku,
            site=site,
            states=[convert.hold_state_to_pb(s) for s in states],
            expiring_before_ms=expiring_before_ms,
            page_size=page_size,
            page_token=page_token,
        )
        reply = await self._call(self._stub.ListHolds, req, timeout_s)
        return [convert.hold_from_pb(h) for h in reply.holds], reply.next_page_token

    # ---- one-call sale ----

    async def sell(
        self,
        lines: Sequence[HoldLine],
        *,
        doc_ref: str = "",
        finance: Finance | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> HoldSummary:
        """Sell in one call: hold every line and commit it, all or nothing. The answer (state
        COMMITTED) is named by the request id; a retry with it sells nothing twice."""
        req = pb.SellRequest(
            request_id=request_id or new_request_id(),
            lines=[convert.hold_line_to_pb(line) for line in lines],
            doc_ref=doc_ref,
            finance=convert.finance_to_pb(finance),
        )
        reply = await self._command("sell", self._stub.Sell, req, timeout_s)
        return convert.hold_from_pb(reply.sale)

    # ---- reads ----

    async def get_availability(
        self,
        sku: str,
        site: str,
        group_by: Sequence[Dimension] = (),
        filt: SliceFilter = SliceFilter(),
        bin_depth: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> Availability:
        req = pb.GetAvailabilityRequest(
            sku=sku,
            site=site,
            group_by=convert.dimensions_to_pb(group_by),
            filter=convert.filter_to_pb(filt),
            bin_depth=bin_depth,
        )
        return convert.availability_from_pb(
            await self._command("get_availability", self._stub.GetAvailability, req, timeout_s)
        )

    async def query_stock(self, query: StockQuery | None = None, *, timeout_s: float | None = None) -> list[StockRow]:
        """Stock over many pairs; `None` queries every pair, grouped by sku and site."""
        req = convert.stock_query_to_pb(query or StockQuery())
        reply = await self._call(self._stub.QueryStock, req, timeout_s)
        return [convert.stock_row_from_pb(r) for r in reply.rows]

    async def query_stock_page(
        self,
        query: StockQuery | None = None,
        *,
        page_size: int,
        page_token: str = "",
        timeout_s: float | None = None,
    ) -> tuple[list[StockRow], str]:
        """One page of `query`'s rows and the next page's token ("" on the last page).

        `page_token` is a `next_page_token` this server gave, passed as is (it is opaque): the
        server refuses any other with INVALID_ARGUMENT, as it does page_size <= 0.
        """
        req = convert.stock_query_to_pb(query or StockQuery())
        req.page_size = page_size
        req.page_token = page_token
        reply = await self._call(self._stub.QueryStock, req, timeout_s)
        return [convert.stock_row_from_pb(r) for r in reply.rows], reply.next_page_token

    async def stock_pages(
        self, query: StockQuery | None = None, *, page_size: int, timeout_s: float | None = None
    ) -> AsyncIterator[list[StockRow]]:
        """Every page of `query`, in order, one call each; each call has its own `timeout_s`."""
        token = ""
        while True:
            rows, token = await self.query_stock_page(query, page_size=page_size, page_token=token, timeout_s=timeout_s)
            yield rows
            if not token:
                return

    # ---- identity (lotwise.v1.Identity) ----

    async def whoami(self, *, timeout_s: float | None = None) -> CallerView:
        """The caller as the engine sees it: subject, groups and what the grants cover."""
        stub = ipb_grpc.IdentityStub(self.channel)
        reply = await self._call(stub.WhoAmI, ipb.WhoAmIRequest(), timeout_s)
        scopes = tuple((s.scope, tuple(s.actions)) for s in reply.scopes)
        return CallerView(reply.subject, tuple(reply.groups), reply.auth, scopes)

    # ---- operations (lotwise.v1.Admin) ----

    async def verify(self, *, timeout_s: float | None = 600.0) -> tuple[bool, list[ShardCheck]]:
        """Rebuild every shard from snapshot + journal and compare with the live state."""
        reply = await self._call(self._admin.Verify, apb.VerifyRequest(), timeout_s)
        checks = [
            ShardCheck(c.shard, c.batch_seq, c.live_hash, c.rebuilt_hash, c.replayed_batches, c.error)
            for c in reply.shards
        ]
        return reply.ok, checks

    async def shard_stats(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        reply = await self._call(self._admin.ShardStats, apb.ShardStatsRequest(), timeout_s)
        return [{f.name: getattr(s, f.name) for f in s.DESCRIPTOR.fields} for s in reply.shards]

    async def snapshot(self, *, timeout_s: float | None = 120.0) -> dict[str, int]:
        return dict((await self._call(self._admin.Snapshot, apb.SnapshotRequest(), timeout_s)).batch_seq)

    async def pin_pair(self, sku: str, site: str, *, timeout_s: float | None = None) -> str:
        return (await self._call(self._admin.PinPair, apb.PinPairRequest(sku=sku, site=site), timeout_s)).shard

    # ---- dead letters (lotwise.v1.Admin) ----

    async def list_dead_letters(
        self, *, after_seq: int = 0, limit: int = 100, code: str = "", timeout_s: float | None = None
    ) -> DeadLetterPage:
        """Dead letters with seq > after_seq, oldest first, without payloads (see get_dead_letter)."""
        req = apb.ListDeadLettersRequest(after_seq=after_seq, limit=limit, code=code)
        reply = await self._call(self._admin.ListDeadLetters, req, timeout_s)
        return DeadLetterPage(tuple(_dead_letter_from_pb(m) for m in reply.letters), reply.next_after_seq, reply.total)

    async def get_dead_letter(self, seq: int, *, timeout_s: float | None = None) -> StoredDeadLetter:
        reply = await self._call(self._admin.GetDeadLetter, apb.GetDeadLetterRequest(seq=seq), timeout_s)
        return _dead_letter_from_pb(reply.letter)

    async def replay_dead_letters(
        self, seqs: Sequence[int] | None = None, *, code: str = "", timeout_s: float | None = 60.0
    ) -> ReplayResult:
        """Replay the letters `seqs`, or with `seqs=None` the oldest (up to 1000; of `code`
        if given). Letters that failed stay in the store and are listed in `failed`."""
        req = apb.ReplayDeadLettersRequest(seqs=list(seqs or ()), all=seqs is None, code=code)
        reply = await self._call(self._admin.ReplayDeadLetters, req, timeout_s)
        return ReplayResult(list(reply.replayed), [(f.seq, f.error) for f in reply.failed])

    # ---- plumbing ----

    async def _call(
        self, method: Callable[..., Awaitable[_Resp]], request: Any, timeout_s: float | None, *, throttled: bool = True
    ) -> _Resp:
        """One logical unary call: attempts with the same request until done, refused or out of time.
        `throttled=False`: the adaptive throttle never refuses it (commits, releases)."""

        async def attempt(deadline: float) -> _Resp:
            timeout_s = max(deadline - time.monotonic(), 0.0)
            # The door measures the wait before it from the timeout we say we set (issue 19).
            metadata = (*self._metadata, timeout_metadata(timeout_s))
            try:
                return await method(request, timeout=timeout_s, metadata=metadata)
            except grpc.aio.AioRpcError as err:
                raise CallFailed(status_of_rpc_error(err), whole_batch=True) from err

        return await self._with_retries(attempt, self._deadline(timeout_s), throttled=throttled)

    async def _command(
        self, kind: str, method: Callable[..., Awaitable[_Resp]], request: Any, timeout_s: float | None
    ) -> _Resp:
        """One logical call of a command that can travel in a batch: batched when batching is
        on, else unary; the same retries, deadlines and typed errors either way."""
        batcher = self._batcher
        throttled = kind not in UNTHROTTLED_COMMANDS
        if batcher is None:
            return await self._call(method, request, timeout_s, throttled=throttled)
        deadline = self._deadline(timeout_s)
        command = pb.Command(**{kind: request})

        async def attempt(deadline: float) -> _Resp:
            reply = await batcher.submit(command, deadline)
            response: _Resp = getattr(reply, kind)
            return response

        try:
            return await self._with_retries(attempt, deadline, throttled=throttled)
        except _NoExecute:
            # An older server without Execute: unary from now on, for every caller.
            log.info("server has no Execute; batching off")
            self._batcher = None
            remaining_s = max(deadline - time.monotonic(), MIN_ATTEMPT_S)
            return await self._call(method, request, remaining_s, throttled=throttled)

    def _deadline(self, timeout_s: float | None) -> float:
        budget_s = self._timeout_s if timeout_s is None else timeout_s
        if budget_s < MIN_ATTEMPT_S:
            # Nothing was sent, so nothing was applied: the engine's own DeadlineExceeded fits.
            raise DeadlineExceeded(f"timeout {budget_s} s is below gRPC's 1 ms resolution; the call was not sent")
        return time.monotonic() + budget_s

    async def _with_retries(
        self, attempt: Callable[[float], Awaitable[_Resp]], deadline: float, *, throttled: bool = True
    ) -> _Resp:
        """Attempts until one answers, one is refused for good, or the deadline is too near.
        An attempt the client refuses itself (`Throttled`) is waited out and asked again as
        a refusal of the engine's would be (`_local_retry_delay_s`); it was never sent, so
        it is not one of `RetryPolicy.max_attempts`."""
        attempts = 0  # sent
        local_refusals = 0
        throttle = self.throttle
        while True:
            try:
                if throttled and not throttle.allow():
                    raise Throttled(retry_after_s=throttle.retry_after_s())
                reply = await self._limited(attempt, deadline, critical=not throttled)
            except Throttled as refused:
                local_refusals += 1
                wait_s = self._local_retry_delay_s(refused, local_refusals, deadline)
                if wait_s is None:
                    await asyncio.sleep(0)  # a caller that loops on the refusal still lets others run
                    raise
                await asyncio.sleep(wait_s)
            except CallFailed as failed:
                attempts += 1
                status = failed.status
                cause = failed.__cause__ or failed
                throttle.answered(accepted(status.code))
                if failed.whole_batch and status.code == grpc.StatusCode.UNIMPLEMENTED.value[0]:
                    raise _NoExecute() from cause
                delay_s = self._retry_delay_s(status, attempts, deadline)
                if delay_s is None:
                    raise from_rpc_status(status) from cause
                log.debug("retrying", code=status.code, attempt=attempts, delay_ms=round(delay_s * 1000, 1))
                await asyncio.sleep(delay_s)
            else:
                throttle.answered(True)
                self.retry_budget.on_success()
                return reply

    async def _limited(self, attempt: Callable[[float], Awaitable[_Resp]], deadline: float, *, critical: bool) -> _Resp:
        """One attempt under the concurrency limit (if any): refused at once, as `Throttled`,
        when the limit is full — before it waits anywhere — else timed for the limit."""
        limit = self.concurrency_limit
        if limit is None:
            return await attempt(deadline)
        started = limit.try_acquire(critical=critical)
        if started is None:
            raise Throttled("the client's concurrency limit", limit.retry_after_s())
        answer = "other"
        try:
            reply = await attempt(deadline)
            answer = "ok"
            return reply
        except CallFailed as failed:
            answer = limit_answer(failed.status.code)
            raise
        finally:
            limit.release(started, answer=answer)

    def _local_retry_delay_s(self, refused: Throttled, refusals: int, deadline: float) -> float | None:
        """How long to wait before asking the client's throttle and limit again, or None when
        the call must fail now, `Throttled`: retries off, too many local refusals, out of
        retry budget or out of time.

        As a refusal of the engine's: the refusing side's hint (its RetryInfo) plus full
        jitter, so that callers refused together do not come back together. Not growing
        with each refusal: a local refusal tells nothing new about the engine (the throttle
        already holds that evidence) and costs it nothing, and a caller backed off for
        seconds would miss the engine's recovery. What is *sent* stays bounded: the
        throttle lets through only its share of these attempts; a sent attempt the engine
        refuses takes a token as ever; and local refusals are retried only while the
        retry budget allows retries, so under a standing overload — the engine refusing
        more than a tenth of what it answers, which drains the budget — they fail at once.
        """
        if self._retry.max_attempts < 2 or refusals > self._retry.max_local_refusals:
            return None
        if not self.retry_budget.allows_retry():
            return None
        delay_s = refused.retry_after_s + self._retry.backoff_s(1, self._rng)
        if time.monotonic() + delay_s + MIN_ATTEMPT_S > deadline:
            return None  # no time left for another attempt
        return delay_s

    def _retry_delay_s(self, status: status_pb2.Status, attempts: int, deadline: float) -> float | None:
        """How long to wait before the next attempt, or None when the call must fail now:
        refused for good, out of attempts, out of retry budget or out of time."""
        if not is_retryable(status):
            return None
        # Every retryable refusal takes a token, even the last attempt's: the budget
        # measures how much of the traffic is being refused.
        if not self.retry_budget.on_retryable_failure() or attempts >= self._retry.max_attempts:
            return None
        delay_s = self._retry.backoff_s(attempts, self._rng, retry_delay_s(status))
        if time.monotonic() + delay_s + MIN_ATTEMPT_S > deadline:
            return None  # no time left for another attempt
        return delay_s


class _NoExecute(Exception):
    """The server answered UNIMPLEMENTED to Execute (it predates batches)."""


def _dead_letter_from_pb(msg: apb.DeadLetter) -> StoredDeadLetter:
    letter = DeadLetter(
        key=msg.key,
        subject=msg.subject,
        payload=msg.payload,
        code=msg.code,  # type: ignore[arg-type]  # DeadLetter makes it a DeadLetterCode
        reason=msg.reason,
        event_id=msg.event_id,
        event_type=msg.event_type,
        deliveries=msg.deliveries,
        failed_at_ms=msg.failed_at_ms,
        headers=tuple(sorted(msg.headers.items())),
    )
    return StoredDeadLetter(msg.seq, letter)
