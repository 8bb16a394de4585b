"""The document store and the desks over it: the org tree and transfers (DESIGN.md §1).

With a durable journal the documents live in a JetStream key-value bucket of the same
NATS; with `journal=memory` (development, tests) in memory, like everything else there."""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.bootstrap.config import SettingsProblem
from engine.domain.documents import DocumentStore
from engine.domain.transfer_flow import FlowError, TransferFlow, default_flow, parse_flow
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.orgtree import OrgDesk
from engine.runtime.gateway.transfers import TransferDesk
from engine.settings import Settings


@dataclass(frozen=True, slots=True)
class Desks:
    documents: DocumentStore
    org: OrgDesk
    transfers: TransferDesk


def transfer_flow_of(settings: Settings) -> TransferFlow:
    path = settings.transfer_flow
    if path is None:
        return default_flow()
    try:
        return parse_flow(json.loads(path.read_text()))
    except OSError as exc:
        raise SettingsProblem("transfer_flow", f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, FlowError) as exc:  # JSONDecodeError is a ValueError
        raise SettingsProblem("transfer_flow", f"{path}: {exc}") from None


async def open_documents(settings: Settings, nats_url: str) -> DocumentStore:
    if settings.journal == "memory" or not nats_url:
        from adapters.memory.documents import InMemoryDocuments

        return InMemoryDocuments()
    from adapters.nats.documents import connect_documents, engine_documents_config

    return await connect_documents(engine_documents_config(settings.namespace, nats_url, settings.journal_replicas))


async def start_desks(settings: Settings, gateway: Gateway, nats_url: str) -> Desks:
    documents = await open_documents(settings, nats_url)
    return Desks(documents, OrgDesk(documents, gateway), TransferDesk(gateway, documents, transfer_flow_of(settings)))
