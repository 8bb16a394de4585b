"""NATS ingestion posts only for the sender's own sites: a real nats-server, in-process shards.
A device or WMS (the subject's last token) listed in `senders` may post for its sites only;
anything else goes to the dead letters as `site_not_allowed` with the reason, while the
allowed events behind it flow."""

from __future__ import annotations

import itertools
from typing import Any

import nats
import orjson
import pytest
from prometheus_client import CollectorRegistry

from adapters.nats.ingest.consumer import IngestMetrics
from adapters.nats.server import EmbeddedNats
from engine import bootstrap
from engine.bootstrap.ingest import start_ingest
from engine.domain.clock import ManualClock
from engine.domain.deadletters import DeadLetterCode
from tests.ingest_fixtures import NOW_MS, event, hospital_config, load_hospital, quants
from tests.nats_fixtures import nats_server  # noqa: F401

pytestmark = pytest.mark.asyncio(loop_scope="session")

_ns = itertools.count(1)
FAST = {"backoff_s": (0.05, 0.1), "refused_deliveries": 2, "max_deliver": 3, "ack_wait_s": 1.0, "idle_wait_s": 0.2}


async def run(url: str, senders: dict[str, tuple[str, ...]], only: bool, sends: list[tuple[str, str, Any]]) -> Any:
    namespace = f"authing{next(_ns)}"
    gw = bootstrap.local_gateway(shards=2, clock=ManualClock(NOW_MS), sweep_interval_ms=0)
    await load_hospital(gw)
    config = hospital_config(namespace, **FAST).model_copy(update={"senders": senders, "senders_only": only})
    ingest = await start_ingest(
        gw, config, namespace=namespace, nats_url=url, metrics=IngestMetrics(CollectorRegistry())
    )
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for source, sender, raw in sends:
            await js.publish(f"lotwise.{namespace}.in.{source}.{sender}", orjson.dumps(raw))
        await ingest.consumer.wait_idle(timeout_s=30)
        letters = await ingest.dead_letters.list(limit=100)
        strips = sum((await quants(gw, "strip", "icu")).values())
        return letters, strips
    finally:
        await ingest.stop()
        await nc.close()
        await gw.close()


def take(cabinet: str) -> dict[str, Any]:
    return event("scan_take", cabinet_id=cabinet, sku="strip", qty=1)


async def test_a_sender_posts_only_for_its_own_sites(nats_server: EmbeddedNats) -> None:  # noqa: F811
    receipt_for_icu = event("receipt", site="icu", lines=[{"sku": "strip", "lot": "S9", "qty": 4}])
    letters, strips = await run(
        nats_server.url,
        {"ICU-1": ("icu",), "WH1": ("dc",)},
        False,
        [
            ("cabinet", "ICU-1", take("ICU-1")),  # its own site: applied
            ("cabinet", "ICU-1", take("ED-1")),  # claims another cabinet's site (ed): refused
            ("wms", "WH1", receipt_for_icu),  # the DC's WMS posting for the ICU: refused
            ("wms", "UNLISTED", event("pick", site="dc", sku="cath", lot="C1", qty=1)),  # not listed: open
        ],
    )
    refused = [letter.letter for letter in letters if letter.letter.code is DeadLetterCode.SITE_NOT_ALLOWED]
    assert len(refused) == 2
    assert {letter.reason for letter in refused} == {
        "sender 'ICU-1' may not post for site 'ed'",
        "sender 'WH1' may not post for site 'icu'",
    }
    assert strips == 15 - 1  # the allowed take only (load_hospital puts 15 strips in the ICU)


async def test_senders_only_closes_unlisted_senders(nats_server: EmbeddedNats) -> None:  # noqa: F811
    letters, _ = await run(
        nats_server.url,
        {"ICU-1": ("icu",)},
        True,
        [("wms", "ROGUE", event("pick", site="dc", sku="cath", lot="C1", qty=1))],
    )
    assert [letter.letter.code for letter in letters] == [DeadLetterCode.SITE_NOT_ALLOWED]
