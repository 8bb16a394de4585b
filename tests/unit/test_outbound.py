"""adapters.nats.outbound builds what nats-py would send, byte for byte."""

from __future__ import annotations

import pytest
from nats.protocol.command import hpub_cmd, pub_cmd

from adapters.nats.outbound import ack_commands, check_payloads, hpub_command


def test_acks_are_the_empty_publishes_msg_ack_sends() -> None:
    replies = ["$JS.ACK.J.c.1.5.5.1700000000.0", "$JS.ACK.J.c.1.6.6.1700000001.3"]
    # nats-py leaves an empty reply field (two spaces); the server reads either the same.
    assert ack_commands(replies) == b"".join(pub_cmd(r, "", b"").replace(b"  ", b" ") for r in replies)
    assert ack_commands([]) == b""


def test_a_publish_with_headers_is_the_client_s_frame() -> None:
    headers = {"Nats-Msg-Id": "e-1:json", "Content-Type": "application/json", "Lotwise-Journal-Position": "7:0"}
    block = (
        b"NATS/1.0\r\nNats-Msg-Id: e-1:json\r\nContent-Type: application/json\r\nLotwise-Journal-Position: 7:0\r\n\r\n"
    )
    assert hpub_command("lotwise.events.receive.s1", "_INBOX.x.1.0", headers, b'{"a":1}') == hpub_cmd(
        "lotwise.events.receive.s1", "_INBOX.x.1.0", block, b'{"a":1}'
    )


def test_line_breaks_in_a_value_cannot_break_the_frame() -> None:
    frame = hpub_command("s", "r", {"Lotwise-Event-Id": "a\r\nInjected: yes"}, b"")
    assert b"\r\nInjected" not in frame
    assert b"Lotwise-Event-Id: a  Injected: yes\r\n" in frame


def test_a_key_no_header_may_have_is_refused() -> None:
    for key in ("", "Bad Key", "Bad:Key", "Bad\r\nKey"):
        with pytest.raises(ValueError, match="bad header key"):
            hpub_command("s", "r", {key: "v"}, b"")


def test_a_payload_above_the_server_s_limit_is_refused_before_anything_is_queued() -> None:
    """As `Client.publish` does: MaxPayloadError, instead of a frame the server would answer
    by closing the connection."""
    import nats.errors

    class Connected:
        max_payload = 8

    check_payloads(Connected(), [b"12345678", b""])  # type: ignore[arg-type]
    with pytest.raises(nats.errors.MaxPayloadError):
        check_payloads(Connected(), [b"1", b"123456789"])  # type: ignore[arg-type]
