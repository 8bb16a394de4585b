"""Python CPU of a follower's acks and of the bus's publishes: one nats-py call per
message against one call per batch (adapters.nats.outbound). No Ray; an embedded
nats-server in a temp dir.

    .venv/bin/python -m bench.outbound --messages 2000 --rounds 4

Per round and way (interleaved): `--messages` journal-like messages are fetched from a
pull consumer and acked (then the consumer is checked to have every ack), and the business
events of `--messages / 4` journal batches (two movements each, both formats: ~`--messages`
event messages) are published to a subject no stream captures (so the server's side is
the same for both). Prints µs of this process's CPU per message, per round.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from adapters.nats.bus import BusConfig, Outgoing, outgoing
from adapters.nats.outbound import ack_commands, send_commands
from adapters.nats.server import EmbeddedNats, EmbeddedNatsConfig
from bench.followers import batch
from engine.domain.events import business_events

WAYS = ("one call per message", "one call per batch")


async def fetched(js: JetStreamContext, subject: str, durable: str, n: int) -> list[Msg]:
    for _ in range(n):
        await js.publish(subject, b"x")
    config = api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=2 * n)
    sub = await js.pull_subscribe(subject, durable=durable, config=config)
    msgs: list[Msg] = []
    while len(msgs) < n:
        msgs += await sub.fetch(256, timeout=5)
    return msgs


async def all_acked(js: JetStreamContext, stream: str, durable: str) -> bool:
    for _ in range(200):  # the server applies acks after the flush's PONG: wait for them, bounded
        if (await js.consumer_info(stream, durable)).num_ack_pending == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def ack_us(nc: Client, msgs: list[Msg], way: str) -> float:
    started = time.process_time()
    if way == WAYS[0]:
        for msg in msgs:
            await msg.ack()
    else:
        await send_commands(nc, ack_commands(msg.reply for msg in msgs))
    await nc.flush()
    return 1e6 * (time.process_time() - started) / len(msgs)


async def publish_us(nc: Client, outs: list[Outgoing], way: str) -> float:
    headers = [out.headers for out in outs]  # as nats-py takes them, made before the clock starts
    started = time.process_time()
    if way == WAYS[0]:
        for i, out in enumerate(outs):
            await nc.publish(out.subject, out.payload, reply=f"bench.r.{i}", headers=headers[i])
    else:  # what the bus sends: each message's frame, built with it, and the window's reply subjects
        await send_commands(nc, b"".join([o.command(f"bench.r.{i}") for i, o in enumerate(outs)]))
    await nc.flush()
    return 1e6 * (time.process_time() - started) / len(outs)


async def run(messages: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {f"{kind}, {way}": [] for kind in ("ack", "publish") for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="lotwise-outbound-bench-") as tmp:
        server = EmbeddedNats(EmbeddedNatsConfig(data_dir=Path(tmp) / "nats"))
        await server.start()
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="BENCH_ACKS", subjects=["bench.acks.>"])
            config = BusConfig(subject_prefix="bench.nowhere.json", avro_prefix="bench.nowhere.avro")
            outs = [o for i in range(1, messages // 4 + 1) for o in outgoing(business_events(batch(i), i), config)]
            for n in range(rounds):
                for w, way in enumerate(WAYS):
                    durable = f"bench-{n}-{w}"
                    msgs = await fetched(js, f"bench.acks.{n}.{w}", durable, messages)
                    results[f"ack, {way}"].append(await ack_us(nc, msgs, way))
                    if not await all_acked(js, "BENCH_ACKS", durable):
                        raise RuntimeError(f"{way}: acks missing")
                    results[f"publish, {way}"].append(await publish_us(nc, outs, way))
        finally:
            await nc.close()
            await server.stop()
    return results


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbound", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2_000, help="messages acked, and event messages published")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    if not 4 <= args.messages <= 100_000 or not 0 < args.rounds <= 50:
        parser.error("--messages must be in [4, 100000] and --rounds in (0, 50]")
    for name, values in (await run(args.messages, args.rounds)).items():
        print(f"{name}: µs CPU per message {' '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    asyncio.run(main())
