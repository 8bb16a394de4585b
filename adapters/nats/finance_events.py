"""Business events of posted vouchers on NATS JetStream (engine.finance.service.PostedVouchers).

Subject `lotwise.finance.<namespace tag>.voucher_posted.<company>` (the company escaped like
the event bus's tokens), stream `LOTWISE_FINANCE_<tag>`, one JSON body per posted voucher
(engine.finance.state.voucher_to_doc: the voucher with its lines, sources and reviewer),
deduplicated by `Nats-Msg-Id` = `<voucher id>:posted`, so a retried publish is one event.
"""

from __future__ import annotations

import json
import re

from nats.js import api

from adapters.nats.bus import subject_token
from adapters.nats.journal import JournalConfig, NatsLink, ensure_stream
from engine.finance.state import voucher_to_doc
from engine.finance.vouchers import Voucher

MiB = 1024 * 1024


def finance_subject_prefix(namespace: str) -> str:
    return f"lotwise.finance.{re.sub(r'[^A-Za-z0-9_-]', '_', namespace)}"


class NatsPostedVouchers:
    def __init__(self, link: NatsLink, namespace: str, journal: JournalConfig) -> None:
        self._link = link
        self._prefix = finance_subject_prefix(namespace)
        self.stream = "LOTWISE_FINANCE_" + re.sub(r"[^A-Za-z0-9_-]", "_", namespace)
        self._journal = journal
        self._ready = False
        self.published = 0

    async def _ensure(self) -> None:
        if self._ready:
            return
        _, js = await self._link.client()
        config = api.StreamConfig(
            name=self.stream,
            description="Lotwise: posted vouchers",
            subjects=[f"{self._prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_bytes=256 * MiB,
            duplicate_window=120.0,
            num_replicas=self._journal.replicas,
        )
        await ensure_stream(js, config)
        self._ready = True

    def subject(self, voucher: Voucher) -> str:
        return f"{self._prefix}.voucher_posted.{subject_token(voucher.company)}"

    async def posted(self, voucher: Voucher) -> None:
        await self._ensure()
        _, js = await self._link.client()
        body = json.dumps(voucher_to_doc(voucher), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Nats-Msg-Id": f"{voucher.voucher_id}:posted", "Content-Type": "application/json"}
        await js.publish(self.subject(voucher), body, headers=headers, timeout=self._journal.ack_timeout_s)
        self.published += 1
