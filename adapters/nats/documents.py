"""Documents on JetStream (engine.domain.documents.DocumentStore): a key-value bucket with
file storage, so every revision of a document is a message in its stream, fsynced like
the journal's (the embedded server syncs always), replicated like it in a cluster.

A write names the revision it was based on (the KV's last-sequence check), so two gateways
changing one document cannot lose an update. Values are JSON (never pickle)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nats.js import api
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from adapters.nats.journal import JournalConfig, NatsLink
from engine.domain.documents import MAX_DOCUMENT_BYTES, RevisionMismatch, Stored
from engine.domain.ports import JournalUnavailable

HISTORY = 16  # revisions kept per document (a transfer has fewer steps than this)


@dataclass(frozen=True, slots=True)
class DocumentsConfig:
    url: str
    bucket: str = "lotwise-documents"
    replicas: int = 1
    max_bytes: int = 1024 * 1024 * 1024  # the bucket's bound: writes are refused past it


def engine_documents_config(namespace: str, nats_url: str, replicas: int = 1) -> DocumentsConfig:
    """The documents of one engine namespace (as engine_journal_config names its journal)."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)
    return DocumentsConfig(url=nats_url, bucket=f"lotwise-documents-{tag}", replicas=replicas)


class JetStreamDocuments:
    def __init__(self, link: NatsLink, kv: KeyValue, bucket: str) -> None:
        self._link = link
        self._kv = kv
        self._stream = f"KV_{bucket}"  # JetStream's own naming of a bucket's stream and subjects
        self._subject_prefix = f"$KV.{bucket}."

    async def get(self, key: str) -> Stored | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None  # never written, or its newest revision is a delete
        if entry.value is None or entry.revision is None:
            return None
        return Stored(key, json.loads(entry.value), entry.revision)

    async def put(self, key: str, value: dict[str, Any], expected_revision: int) -> int:
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"document {key!r} is {len(data)} bytes, over {MAX_DOCUMENT_BYTES}")
        try:
            if expected_revision == 0:
                return await self._kv.create(key, data)
            return await self._kv.update(key, data, last=expected_revision)
        except KeyWrongLastSequenceError:
            raise RevisionMismatch(key, expected_revision) from None
        except BadRequestError as exc:  # "wrong last sequence" on some server versions
            if exc.err_code == 10071:
                raise RevisionMismatch(key, expected_revision) from None
            raise

    async def keys(self, prefix: str) -> list[str]:
        # The bucket's stream knows every subject it holds: ask it, filtered on the server
        # (`$KV.<bucket>.<prefix>>`). A key watcher's "that is all for now" marker was seen to
        # come before every stored key had been delivered under load, and a listing must
        # never miss a document. Documents are never deleted, so every subject is a live key.
        _, js = await self._link.client()
        pattern = f"{self._subject_prefix}{prefix}>" if prefix.endswith(".") else f"{self._subject_prefix}>"
        info = await js.stream_info(self._stream, subjects_filter=pattern)
        subjects = info.state.subjects or {}
        found = (subject.removeprefix(self._subject_prefix) for subject in subjects)
        return sorted(k for k in found if k.startswith(prefix))

    async def close(self) -> None:
        await self._link.close()


async def connect_documents(config: DocumentsConfig) -> JetStreamDocuments:
    link = NatsLink(JournalConfig(url=config.url, client_name="lotwise-documents"))
    await link.connect()
    try:
        _, js = await link.client()
        kv = await js.create_key_value(
            api.KeyValueConfig(
                bucket=config.bucket,
                description="Lotwise documents: the org tree and transfers, every revision",
                history=HISTORY,
                storage=api.StorageType.FILE,
                replicas=config.replicas,
                max_bytes=config.max_bytes,
                max_value_size=MAX_DOCUMENT_BYTES + 1024,
            )
        )
    except Exception as exc:
        await link.close()
        raise JournalUnavailable(f"cannot set up the document bucket on {config.url}: {exc}") from exc
    return JetStreamDocuments(link, kv, config.bucket)
