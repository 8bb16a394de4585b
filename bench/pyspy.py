"""py-spy on the bench's own processes during a measured window, and a reader of its output.

`bench.core --profile-dir DIR` starts one `py-spy record` per process (the engine process —
gRPC server, gateway, Ray driver and the journal followers — and every shard actor) for
the orders window of each concurrency in `--profile-concurrency`, in raw (collapsed
stacks) format: one file per (window, process). `summarize` turns such a file into the
share of samples whose stack passes through each of a few named places, which is how the
tables of bench/README.md ("Where the ~10 ms of an order go") are built:

    .venv/bin/python -m bench.pyspy DIR/*.txt
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 97  # samples per second: low enough that the profiler's own CPU stays small on 2 cores

# Where a sample's stack passes, first match wins (substrings of py-spy's "function (file)" frames).
PLACES: tuple[tuple[str, str], ...] = (
    ("history sink (chDB insert)", "adapters/clickhouse/"),
    ("bench", "bench/"),
    ("history sink (follower)", "adapters/nats/history.py"),
    ("event bus", "adapters/nats/bus.py"),
    ("journal follower (pull, decode, ack)", "adapters/nats/follower.py"),
    ("ingestion", "adapters/nats/ingest"),
    ("journal append", "adapters/nats/journal.py"),
    ("shard core (cells)", "engine/domain/"),
    ("shard host", "engine/runtime/host"),
    ("batch servicer", "engine/api/batch.py"),
    ("servicer + convert", "engine/api/"),
    ("gateway", "engine/runtime/gateway/"),
    ("micro-batcher", "engine/runtime/batcher.py"),
    ("Ray call (submit, serialize)", "engine/runtime/cluster.py"),
    ("Ray call (submit, serialize)", "ray/"),
    ("gRPC (grpc.aio)", "grpc/"),
    ("NATS client", "nats/"),
    ("asyncio event loop", "asyncio/"),
)


@dataclass(frozen=True, slots=True)
class Profile:
    label: str
    samples: int
    places: dict[str, int]


def pyspy_binary() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


async def record(pids: dict[str, int], duration_s: float, out_dir: Path, tag: str) -> list[Path]:
    """One py-spy per process for `duration_s`; returns the files written (raw format)."""
    binary = pyspy_binary()
    if binary is None:
        raise RuntimeError("py-spy is not installed (it is in the dev extras: make setup)")
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    procs: list[tuple[Path, asyncio.subprocess.Process]] = []
    for label, pid in pids.items():
        path = out_dir / f"{tag}-{label}.txt"
        cmd = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s)))]
        # --threads: each stack starts with its thread, so the event loop's share (the order
        # path's one thread) can be told from chDB's and gRPC's own threads.
        cmd += ["--rate", str(RATE_HZ), "--format", "raw", "--nonblocking", "--threads", "--output", str(path)]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        procs.append((path, proc))
    for _, proc in procs:
        await proc.wait()
    return [path for path, _ in procs if path.exists()]


def summarize(path: Path) -> Profile:
    """Samples of a raw py-spy file, and how many passed through each place (first match)."""
    places: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        places[_place(stack)] += count
    return Profile(path.stem, total, dict(places))


_OWN = tuple(p for p in PLACES if p[1].startswith(("adapters/", "engine/")))
_LIBRARIES = tuple(p for p in PLACES if p not in _OWN)


# Leaves that are a thread waiting, not working (py-spy may sample them as active when it
# does not pause the process): counted apart, and left out of the shares.
WAITING = "waiting (epoll, Ray's task loop)"
_WAITING_LEAVES = ("EpollSelector.select (", "_PollLikeSelector.select (", "Worker.main_loop (ray/_private/worker.py")


def _place(stack: str) -> str:
    # Who the time is spent for: the innermost of Lotwise's own places on the stack (a chDB
    # insert called by the history sink is the sink's; asyncio work a gateway call causes is
    # the gateway's), else the innermost library (Ray's threads, gRPC's, the event loop idling).
    frames = stack.split(";")
    if frames[-1].startswith(_WAITING_LEAVES):
        return WAITING
    for places in (_OWN, _LIBRARIES):
        for frame in reversed(frames):
            for name, needle in places:
                if needle in frame:
                    return name
    return "other (threads, C extensions)"


def render(profiles: Sequence[Profile]) -> str:
    lines = []
    for p in profiles:
        waiting = p.places.get(WAITING, 0)
        working = max(p.samples - waiting, 1)
        lines.append(f"{p.label}: {p.samples} samples, {waiting} of them waiting; shares of the working ones:")
        for name, count in sorted(p.places.items(), key=lambda kv: -kv[1]):
            if name != WAITING:
                lines.append(f"  {100 * count / working:5.1f}%  {name}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pyspy",
        description="Summarise raw py-spy files (bench.core --profile-dir): the share of the working "
        "samples whose stack passes through each named place of the engine.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="raw py-spy output files")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    print(render([summarize(p) for p in args.files]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
