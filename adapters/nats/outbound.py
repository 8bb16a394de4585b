"""Many NATS protocol commands handed to the client at once (bench/README.md, "Followers
that cost little").

nats-py's `publish` (and `Msg.ack`, which is an empty publish to the message's reply
subject) validates, builds and queues one command per call, and kicks the client's flusher
each time. A follower acks every journal message of a batch, and the event bus publishes
two messages per movement: written one call each, that bookkeeping was a large part of
their Python time. Here the commands of a batch are built as bytes and queued with one
call; they go out on the next flush, in order, exactly as the single calls would send them.

These use the client's outgoing queue (`_send_command`, `_flush_pending`), which nats-py
2.x has always had; tests/integration (the follower's and the bus's suites) cover them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

import nats.errors
from nats.aio.client import Client

_NATS_HDR_LINE = "NATS/1.0\r\n"
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 7230 token, as nats-py checks
_LINE_BREAKS_TO_SPACES = str.maketrans({"\r": " ", "\n": " "})


@functools.lru_cache(maxsize=256)  # a handful of keys, checked once each
def _good_key(key: str) -> bool:
    return _HEADER_KEY.fullmatch(key) is not None


def ack_commands(replies: Iterable[str]) -> bytes:
    """The acks of JetStream messages with these reply subjects, as `Msg.ack` sends them."""
    return "".join(f"PUB {reply} 0\r\n\r\n" for reply in replies).encode()


def header_block(headers: Mapping[str, str]) -> bytes:
    """The header block of a publish, as `Client.publish` builds it (a value's line breaks
    become spaces, as there); raises ValueError for a key no header may have."""
    lines = []
    for key, value in headers.items():
        if not _good_key(key):
            raise ValueError(f"bad header key {key!r}")
        lines.append(f"{key}: {header_value(value)}\r\n")
    return f"{_NATS_HDR_LINE}{''.join(lines)}\r\n".encode()


def header_value(value: str) -> str:
    """A header value as `Client.publish` sends it: stripped and its line breaks spaces
    when it has any, else as it is."""
    return value.strip().translate(_LINE_BREAKS_TO_SPACES) if "\r" in value or "\n" in value else value


def hpub_command(subject: str, reply: str, headers: Mapping[str, str], payload: bytes) -> bytes:
    """One publish with headers, what `Client.publish` sends (a value's line breaks become
    spaces, as there); raises ValueError for a key no header may have."""
    block = header_block(headers)
    head = f"HPUB {subject} {reply} {len(block)} {len(block) + len(payload)}\r\n".encode()
    return b"".join((head, block, payload, b"\r\n"))


def check_payloads(nc: Client, payloads: Iterable[bytes]) -> None:
    """Refuse what `Client.publish` refuses before anything is queued: a payload above the
    server's max_payload (MaxPayloadError). Sent anyway, the server would close the
    connection for every user of it instead of refusing the one message."""
    limit = nc.max_payload
    if any(len(payload) > limit for payload in payloads):
        raise nats.errors.MaxPayloadError


async def send_commands(nc: Client, commands: bytes) -> None:
    """Queue `commands` on the client's connection in one call and wake its flusher."""
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if not commands:
        return
    await nc._send_command(commands)
    # As `publish` does: wake the flusher unless a wake-up is queued already.
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
