"""The finance documents log on NATS JetStream (engine.finance.ports.FinanceDocuments).

Stream `LOTWISE_FINDOCS_<tag>`, subject `lotwise.findocs.<tag>`, file storage, the journal's
replicas; one JSON record per message (engine.finance.documents, format 1), deduplicated
by `Nats-Msg-Id` = the record id. Records are never deleted (deny delete and purge, no
age or size limit that drops them: a full stream refuses new records rather than losing
old ones), so record i is stream sequence i + 1 and a ledger rebuild reads them all.
"""

from __future__ import annotations

import json
import re

from nats.js import api
from nats.js.errors import NotFoundError

from adapters.nats.journal import JournalConfig, NatsLink, ensure_stream
from engine.domain.errors import InvariantViolation
from engine.finance.documents import DocumentRecord, record_from_doc, record_to_doc

GiB = 1024 * 1024 * 1024


def _tag(namespace: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", namespace)


class NatsFinanceDocuments:
    def __init__(self, link: NatsLink, namespace: str, journal: JournalConfig, max_bytes: int = 8 * GiB) -> None:
        self._link = link
        self.stream = f"LOTWISE_FINDOCS_{_tag(namespace)}"
        self.subject = f"lotwise.findocs.{_tag(namespace)}"
        self._journal = journal
        self._max_bytes = max_bytes
        self._ready = False

    async def _ensure(self) -> None:
        if self._ready:
            return
        _, js = await self._link.client()
        config = api.StreamConfig(
            name=self.stream,
            description="Lotwise: finance documents (supplier invoices, landed costs)",
            subjects=[self.subject],
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.NEW,  # full: refuse the new record, never drop an old one
            storage=api.StorageType.FILE,
            max_bytes=self._max_bytes,
            duplicate_window=120.0,
            num_replicas=self._journal.replicas,
            deny_delete=True,
            deny_purge=True,
        )
        await ensure_stream(js, config)
        self._ready = True

    async def append(self, record: DocumentRecord) -> None:
        await self._ensure()
        _, js = await self._link.client()
        body = json.dumps(record_to_doc(record), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Nats-Msg-Id": record.record_id, "Content-Type": "application/json"}
        await js.publish(self.subject, body, headers=headers, timeout=self._journal.ack_timeout_s)

    async def read(self, start: int, limit: int) -> list[DocumentRecord]:
        await self._ensure()
        _, js = await self._link.client()
        last = (await js.stream_info(self.stream)).state.last_seq
        out: list[DocumentRecord] = []
        for seq in range(start + 1, min(last, start + limit) + 1):  # bounded by `limit`
            try:
                msg = await js.get_msg(self.stream, seq)
            except NotFoundError:
                raise InvariantViolation(f"finance document {seq} is missing from {self.stream}") from None
            out.append(record_from_doc(json.loads(msg.data or b"{}")))
        return out
