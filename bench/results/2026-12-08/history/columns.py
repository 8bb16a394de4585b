"""Row-wise (movement_row, then a transpose) against column-wise movement_columns, CPU per movement.

PYTHONPATH=. .venv/bin/python bench/results/2026-12-08/history/columns.py 5200
"""

import os
import sys
import time

from adapters.clickhouse import queries
from bench.history_insert import Batches


def old(records):
    rows = [queries.movement_row(r) for r in records]
    return [list(col) for col in zip(*rows, strict=True)]


b = Batches(int(sys.argv[1]))
batches = [b.next() for _ in range(10)]
for batch in batches:
    assert old(batch.records) == queries.movement_columns(batch.records)
for _rep in range(3):
    for name, fn in (("row-wise", old), ("column-wise", queries.movement_columns)):
        t = time.process_time()
        for batch in batches:
            fn(batch.records)
        dt = time.process_time() - t
        n = sum(len(x.records) for x in batches)
        print(f"{name:12s} {1e6 * dt / n:.2f} µs CPU per movement", end="; ")
    print("load", " ".join(f"{x:.2f}" for x in os.getloadavg()))
