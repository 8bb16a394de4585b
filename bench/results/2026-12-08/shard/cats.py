"""Samples of a py-spy raw file's asyncio thread by what the event loop was running."""

import collections
import sys

RULES = [
    ("journal encode", ("encode_entry",)),
    (
        "journal publish+ack (nats-py request)",
        ("JetStreamContext.publish", "Client.request", "JetStreamJournal.append"),
    ),
    ("nats-py flusher", ("Client._flusher",)),
    ("nats-py read loop (acks, pongs)", ("Client._read_loop",)),
    ("apply (core)", ("ShardCore.apply_batch",)),
    ("host group commit bookkeeping", ("ShardHost._flush", "ShardHost._commit", "ShardHost._journal")),
    ("channel answer (pickle, write)", ("ChannelServer._answer", "_frame")),
    ("channel read (frames)", ("ChannelServer._serve", "_read_frame", "_SelectorSocketTransport._read_ready")),
    ("standby follow", ("_follow_forever", "_catch_up")),
    ("sweep", ("_sweep_forever",)),
    ("event loop (select, scheduling)", ("_run_once",)),
]


def main() -> None:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    with open(sys.argv[1]) as f:
        lines = f.read().splitlines()
    for line in lines:
        stack, _, n = line.rstrip().rpartition(" ")
        if "AsyncIO" not in stack.split(";")[0]:
            continue
        total += int(n)
        for name, keys in RULES:
            if any(k in stack for k in keys):
                counts[name] += int(n)
                break
        else:
            counts["other"] += int(n)
    print(f"{total} samples")
    for name, samples in counts.most_common():
        print(f"{100 * samples / total:5.1f}% {name}")


main()
