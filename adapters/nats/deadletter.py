"""The dead-letter store on NATS JetStream (DESIGN.md §10, §12).

One stream per engine namespace (`LOTWISE_DLQ_<tag>`), one message per dead letter. The
message body is the original payload, byte for byte; everything else travels in headers:

    Nats-Msg-Id               the letter's key ("<stream>:<seq>" of the original message)
    Lotwise-Dlq-Key           the key again (Nats-Msg-Id changes if a key is stored twice)
    Lotwise-Dlq-Code          decode_error, schema_violation, ...
    Lotwise-Dlq-Reason        why, one line
    Lotwise-Original-Subject  where the original was published (a replay publishes there)
    Lotwise-Event-Id, Lotwise-Event-Type, Lotwise-Dlq-Deliveries, Lotwise-Dlq-Failed-At-Ms
    Lotwise-Original-Headers  the original headers as a JSON list of [name, value] pairs

Text values are percent-encoded where a header could not carry them as they are (`%`,
control and non-ASCII characters, a space at either end), so every field reads back
exactly; the common case stays readable with `nats stream view`. The original headers
are one JSON header rather than one prefixed header each: a header name may repeat and
a value may carry what a header line cannot, and both must come back exactly.

Subjects are `lotwise.dlq.<tag>.<code>.<event type>` (the event type made one token), so
listing one code is a subject filter, not a scan.

Idempotency: `Nats-Msg-Id = key`, so a consumer that crashed between storing a letter
and acking the original stores it once, with the same seq — within the stream's
duplicate window (`duplicate_window_s`, an hour by default; the consumer's redelivery
comes after its ack wait, seconds to minutes). Past the window the same key is stored
again under a new seq: a second copy, never a loss.

The stream is bounded (max_bytes, max_letters) with discard NEW: when it is full a put
fails loudly (Overloaded) and the consumer does not ack, rather than the oldest dead
letters vanishing to make room. max_age_s is 0 (kept until replayed or deleted) unless
an operator chooses otherwise.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from adapters.nats.journal import ERR_NO_MESSAGE_FOUND, JournalConfig, NatsLink, ensure_stream
from engine.domain.deadletters import (
    DEFAULT_LIST_LIMIT,
    RESOURCE_TYPE,
    DeadLetter,
    DeadLetterCode,
    StoredDeadLetter,
    check_list_args,
)
from engine.domain.errors import FieldViolation, InvalidArgument, NotFound, Overloaded, Unavailable
from engine.domain.ports import JournalUnavailable

KiB, MiB = 1024, 1024 * 1024

H_MSG_ID = api.Header.MSG_ID.value  # "Nats-Msg-Id"
H_KEY = "Lotwise-Dlq-Key"
H_CODE = "Lotwise-Dlq-Code"
H_REASON = "Lotwise-Dlq-Reason"
H_SUBJECT = "Lotwise-Original-Subject"
H_EVENT_ID = "Lotwise-Event-Id"
H_EVENT_TYPE = "Lotwise-Event-Type"
H_DELIVERIES = "Lotwise-Dlq-Deliveries"
H_FAILED_AT_MS = "Lotwise-Dlq-Failed-At-Ms"
H_HEADERS = "Lotwise-Original-Headers"

# Room our headers may take beside the payload. Inbound streams whose dead letters go
# here should keep max_msg_size ≤ the server's max_payload minus this, or a letter of a
# maximal message cannot be stored (put raises InvalidArgument on `payload`).
HEADER_ROOM_BYTES = 64 * KiB

ERR_SEQUENCE_NOT_FOUND = 10043  # JSSequenceNotFoundErrF: delete of a seq that holds no message
ERR_NO_MESSAGE_TO_DELETE = 10057  # JSStreamMsgDeleteFailedF: "no message found" (older servers)
ERR_STORE_FAILED = 10077  # JSStreamStoreFailedF: "maximum messages/bytes exceeded" with discard NEW
ERR_MESSAGE_TOO_BIG = 10054  # JSStreamMessageExceedsMaximumErr
_TRANSIENT = (TimeoutError, nats.errors.Error, OSError, JournalUnavailable)
_FORBIDDEN_IN_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_MAX_TYPE_TOKEN_CHARS = 64
_STORE_AGAIN_ATTEMPTS = 8  # a key whose earlier letters were all deleted within the window


@dataclass(frozen=True, slots=True)
class DeadLetterConfig:
    """Where and how the dead letters of one engine namespace live."""

    url: str = "nats://127.0.0.1:4222"
    stream: str = "LOTWISE_DLQ"
    subject_prefix: str = "lotwise.dlq.default"
    replicas: int = 1  # 3 in a cluster, as the journal
    max_bytes: int = 256 * MiB  # full → puts are refused (discard NEW), nothing is dropped
    max_letters: int = 1_000_000
    max_age_s: float = 0.0  # 0: kept until replayed or deleted
    duplicate_window_s: float = 3_600.0  # how long a key is remembered (see the module doc)
    ack_timeout_s: float = 5.0  # a put not confirmed within this raises Unavailable
    api_timeout_s: float = 5.0  # gets, deletes, stream info
    client_name: str = "lotwise-dlq"

    def __post_init__(self) -> None:
        for name in ("replicas", "max_bytes", "max_letters", "duplicate_window_s", "ack_timeout_s", "api_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DeadLetterConfig.{name} must be positive")
        if self.max_age_s < 0:
            raise ValueError("DeadLetterConfig.max_age_s must be ≥ 0 (0: no age limit)")
        if self.max_age_s and self.duplicate_window_s > self.max_age_s:
            raise ValueError("DeadLetterConfig.duplicate_window_s cannot exceed max_age_s (a JetStream rule)")
        if not self.subject_prefix or any(not t or t in ("*", ">") for t in self.subject_prefix.split(".")):
            raise ValueError(f"bad subject prefix {self.subject_prefix!r}")

    def subject(self, code: DeadLetterCode | str, event_type: str = "") -> str:
        """Where a letter of `code` and `event_type` is stored: the event type made one token."""
        token = _FORBIDDEN_IN_TOKEN.sub("_", event_type)[:_MAX_TYPE_TOKEN_CHARS] or "unknown"
        return f"{self.subject_prefix}.{DeadLetterCode(code).value}.{token}"

    def filter_subject(self, code: str = "") -> str:
        return f"{self.subject_prefix}.{DeadLetterCode(code).value}.>" if code else f"{self.subject_prefix}.>"


def dead_letter_config(namespace: str, nats_url: str, replicas: int = 1) -> DeadLetterConfig:
    """The dead letters of one engine namespace, named as engine_journal_config names its
    journal, so engines in different namespaces can share one NATS."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)
    if tag == "history":
        # The history sink's own dead letters are on lotwise.dlq.history.<journal stream>:
        # two streams may not capture overlapping subjects.
        raise ValueError("namespace 'history' would collide with the history sink's dead letters (lotwise.dlq.history)")
    return DeadLetterConfig(
        url=nats_url, stream=f"LOTWISE_DLQ_{tag}", subject_prefix=f"lotwise.dlq.{tag}", replicas=replicas
    )


def dead_letter_stream_config(config: DeadLetterConfig) -> api.StreamConfig:
    """Every limit explicit, as for the journal."""
    return api.StreamConfig(
        name=config.stream,
        description="Lotwise dead letters: inbound messages that could not be used, with the reason",
        subjects=[f"{config.subject_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        # Full means refused, loudly: a dead letter must never be dropped to make room.
        discard=api.DiscardPolicy.NEW,
        max_bytes=config.max_bytes,
        max_msgs=config.max_letters,
        max_msgs_per_subject=-1,
        max_age=config.max_age_s,
        max_msg_size=-1,  # the server's max_payload: a letter is an inbound message plus headers
        num_replicas=config.replicas,
        duplicate_window=config.duplicate_window_s,
        deny_delete=False,  # a replayed letter is deleted
        allow_rollup_hdrs=False,
    )


# ---- header values ----


def _enc(text: str) -> str:
    """Percent-encode what a header value cannot carry exactly: `%`, control and
    non-ASCII characters, and a space at either end (header parsers strip those)."""
    out: list[str] = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch == "%" or not " " <= ch <= "~" or (ch == " " and i in (0, last)):
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return "".join(out)


def _dec(text: str) -> str:
    return unquote(text, encoding="utf-8", errors="surrogatepass")


def letter_headers(letter: DeadLetter, msg_id: str) -> dict[str, str]:
    headers = {
        H_MSG_ID: msg_id,
        H_KEY: letter.key,
        H_CODE: letter.code.value,
        H_REASON: _enc(letter.reason),
        H_SUBJECT: letter.subject,
        H_DELIVERIES: str(letter.deliveries),
        H_FAILED_AT_MS: str(letter.failed_at_ms),
    }
    if letter.event_id:
        headers[H_EVENT_ID] = _enc(letter.event_id)
    if letter.event_type:
        headers[H_EVENT_TYPE] = _enc(letter.event_type)
    if letter.headers:
        headers[H_HEADERS] = json.dumps([list(pair) for pair in letter.headers], ensure_ascii=True)
    return headers


def letter_from_msg(stream: str, msg: api.RawStreamMsg) -> StoredDeadLetter:
    """A stored message back as a letter. A message not written by this adapter (published
    into the stream by hand) still reads, as a schema violation that says so, so one odd
    message cannot hide the others from an operator."""
    seq = int(msg.seq or 0)
    headers = {k: str(v) for k, v in (msg.headers or {}).items()}
    payload = bytes(msg.data or b"")
    try:
        original = tuple((str(k), str(v)) for k, v in json.loads(headers.get(H_HEADERS, "[]")))
        letter = DeadLetter(
            key=headers[H_KEY],
            subject=headers[H_SUBJECT],
            payload=payload,
            code=DeadLetterCode(headers[H_CODE]),
            reason=_dec(headers.get(H_REASON, "")),
            event_id=_dec(headers.get(H_EVENT_ID, "")),
            event_type=_dec(headers.get(H_EVENT_TYPE, "")),
            deliveries=int(headers.get(H_DELIVERIES, "1")),
            failed_at_ms=int(headers.get(H_FAILED_AT_MS, "0")),
            headers=original,
        )
    except (KeyError, ValueError, TypeError) as exc:
        letter = DeadLetter(
            key=f"{stream}:{seq}",
            subject=str(msg.subject or "unknown"),
            payload=payload,
            code=DeadLetterCode.SCHEMA,
            reason=f"not a dead letter written by Lotwise ({type(exc).__name__}: {exc})",
            headers=tuple(headers.items()),
        )
    return StoredDeadLetter(seq, letter)


# ---- the store ----


class NatsDeadLetters:
    """The DeadLetterStore port on a JetStream stream. Call `ensure()` once to create the
    stream (connect_dead_letters does)."""

    def __init__(self, link_or_js: NatsLink | JetStreamContext, config: DeadLetterConfig) -> None:
        self._link = link_or_js if isinstance(link_or_js, NatsLink) else None
        self._fixed_js = None if isinstance(link_or_js, NatsLink) else link_or_js
        self.config = config

    @property
    def stream(self) -> str:
        return self.config.stream

    async def _js(self) -> JetStreamContext:
        if self._fixed_js is not None:
            return self._fixed_js
        assert self._link is not None
        try:
            return (await self._link.client())[1]
        except JournalUnavailable as exc:
            raise Unavailable(f"dead-letter store: {exc}") from exc

    async def ensure(self) -> None:
        """Create the stream, or bring an existing one to this config."""
        js = await self._js()
        try:
            await ensure_stream(js, dead_letter_stream_config(self.config))
        except _TRANSIENT as exc:
            raise Unavailable(f"dead-letter stream {self.stream} not set up: {_describe(exc)}") from exc

    async def put(self, letter: DeadLetter) -> int:
        js = await self._js()
        subject = self.config.subject(letter.code, letter.event_type)
        msg_id = letter.key
        for _ in range(_STORE_AGAIN_ATTEMPTS):
            ack = await self._publish(js, subject, letter, msg_id)
            if not ack.duplicate:
                return int(ack.seq)
            # The key is in the duplicate window. Stored once: that letter's seq — unless
            # it was replayed or deleted meanwhile, and this is a late redelivery of the
            # original. Then it is stored again (under a derived message id), never lost.
            try:
                await self._get_raw(js, int(ack.seq))
                return int(ack.seq)
            except NotFound:
                msg_id = f"{letter.key}#{ack.seq}"
        raise Unavailable(f"{self.stream}: key {letter.key} kept colliding with deleted letters")

    async def _publish(self, js: JetStreamContext, subject: str, letter: DeadLetter, msg_id: str) -> api.PubAck:
        headers = letter_headers(letter, msg_id)
        try:
            ack = await js.publish(subject, letter.payload, timeout=self.config.ack_timeout_s, headers=headers)
        except APIError as exc:
            if exc.err_code == ERR_STORE_FAILED and "exceeded" in str(exc.description):
                # "maximum messages exceeded" / "maximum bytes exceeded": full, and discard NEW
                if "bytes" in str(exc.description):
                    raise Overloaded(f"dead-letter stream {self.stream} (bytes)", self.config.max_bytes) from exc
                raise Overloaded(f"dead-letter stream {self.stream}", self.config.max_letters) from exc
            if exc.err_code == ERR_MESSAGE_TOO_BIG:
                raise _too_big(letter, str(exc.description)) from exc
            raise Unavailable(f"{self.stream}: dead letter {letter.key} refused: {_describe(exc)}") from exc
        except nats.errors.MaxPayloadError as exc:
            raise _too_big(letter, str(exc)) from exc
        except _TRANSIENT as exc:
            raise Unavailable(f"{self.stream}: dead letter {letter.key} not confirmed: {_describe(exc)}") from exc
        if ack.stream != self.stream:
            raise Unavailable(f"{subject} is captured by stream {ack.stream}, not {self.stream}: check the config")
        return ack

    async def list(
        self, *, after_seq: int = 0, limit: int = DEFAULT_LIST_LIMIT, code: str = ""
    ) -> builtins.list[StoredDeadLetter]:
        """One get per letter ("next message on the filter subject from seq"): at most
        `limit` requests, and no consumer left behind if the caller goes away."""
        check_list_args(after_seq, limit, code)
        js = await self._js()
        subject = self.config.filter_subject(code)
        out: builtins.list[StoredDeadLetter] = []
        start = after_seq + 1
        while len(out) < limit:
            try:
                msg = await js.get_msg(self.stream, seq=start, subject=subject, next=True)
            except NotFoundError:
                break  # nothing more on the filter
            except _TRANSIENT as exc:
                raise Unavailable(f"{self.stream}: listing from {start}: {_describe(exc)}") from exc
            stored = letter_from_msg(self.stream, msg)
            if stored.seq < start:  # never expected; guards the loop's progress
                raise Unavailable(f"{self.stream}: asked for seq ≥ {start}, got {stored.seq}")
            out.append(stored)
            start = stored.seq + 1
        return out

    async def get(self, seq: int) -> StoredDeadLetter:
        return letter_from_msg(self.stream, await self._get_raw(await self._js(), seq))

    async def _get_raw(self, js: JetStreamContext, seq: int) -> api.RawStreamMsg:
        if seq <= 0:
            raise NotFound(RESOURCE_TYPE, str(seq))
        try:
            return await js.get_msg(self.stream, seq)
        except NotFoundError as exc:
            if exc.err_code in (ERR_NO_MESSAGE_FOUND, None):
                raise NotFound(RESOURCE_TYPE, str(seq)) from None
            raise Unavailable(f"{self.stream}: get {seq}: {_describe(exc)}") from exc
        except _TRANSIENT as exc:
            raise Unavailable(f"{self.stream}: get {seq}: {_describe(exc)}") from exc

    async def delete(self, seq: int) -> None:
        if seq <= 0:
            raise NotFound(RESOURCE_TYPE, str(seq))
        js = await self._js()
        try:
            await js.delete_msg(self.stream, seq)
        except APIError as exc:
            if exc.err_code in (ERR_NO_MESSAGE_FOUND, ERR_SEQUENCE_NOT_FOUND, ERR_NO_MESSAGE_TO_DELETE):
                raise NotFound(RESOURCE_TYPE, str(seq)) from None
            raise Unavailable(f"{self.stream}: delete {seq}: {_describe(exc)}") from exc
        except _TRANSIENT as exc:
            raise Unavailable(f"{self.stream}: delete {seq}: {_describe(exc)}") from exc

    async def count(self) -> int:
        js = await self._js()
        try:
            info = await js.stream_info(self.stream)
        except _TRANSIENT as exc:
            raise Unavailable(f"{self.stream}: stream info: {_describe(exc)}") from exc
        return int(info.state.messages or 0)


async def connect_dead_letters(
    config: DeadLetterConfig,
) -> tuple[NatsDeadLetters, Callable[[], Awaitable[None]]]:
    """A store on a connection of its own, its stream ensured, and the function closing it."""
    link = NatsLink(
        JournalConfig(
            url=config.url,
            replicas=config.replicas,
            api_timeout_s=config.api_timeout_s,
            client_name=config.client_name,
        )
    )
    try:
        store = NatsDeadLetters(link, config)
        await store.ensure()
    except BaseException:
        await link.close()
        raise
    return store, link.close


def nats_republish(
    link_or_js: NatsLink | JetStreamContext, timeout_s: float = 5.0
) -> Callable[[str, bytes, dict[str, str]], Awaitable[None]]:
    """The DeadLetterDesk's `republish`: a JetStream publish, confirmed by the stream that
    captures the subject (no stream, no ack: it raises, and the letter stays)."""

    async def republish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        js = (await link_or_js.client())[1] if isinstance(link_or_js, NatsLink) else link_or_js
        await js.publish(subject, payload, timeout=timeout_s, headers=headers)

    return republish


def _too_big(letter: DeadLetter, detail: str) -> InvalidArgument:
    return InvalidArgument(
        [
            FieldViolation(
                "payload",
                f"dead letter {letter.key} ({len(letter.payload)} bytes + headers) does not fit a message: {detail}; "
                f"keep inbound max_msg_size ≤ max_payload - {HEADER_ROOM_BYTES}",
            )
        ]
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return f"{type(exc).__name__} {exc.err_code}: {exc.description}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
