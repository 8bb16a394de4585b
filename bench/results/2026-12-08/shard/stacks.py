"""Summarise a py-spy raw file: samples per thread, top inclusive and leaf frames of the
threads whose name contains a filter (default: the asyncio thread).

    python stacks.py FILE [THREAD_FILTER] [TOP]
"""

from __future__ import annotations

import collections
import sys


def main() -> None:
    path = sys.argv[1]
    want = sys.argv[2] if len(sys.argv) > 2 else "AsyncIO"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    threads: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        threads[frames[0]] += n
        if want not in frames[0]:
            continue
        total += n
        for frame in set(frames[1:]):
            incl[frame] += n
        leaf[frames[-1]] += n
    print("threads:", dict(threads))
    print(f"samples in {want}: {total}")
    print("-- inclusive")
    for frame, n in incl.most_common(top):
        print(f"{100 * n / total:5.1f}% {frame}")
    print("-- leaf")
    for frame, n in leaf.most_common(top // 2):
        print(f"{100 * n / total:5.1f}% {frame}")


main()
