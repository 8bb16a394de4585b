"""What Finance's typed attributes (issue 16, journal v7) add to the order path and the
finance follower: CPU per operation, this tree against another (the base commit), each
run alternately in a fresh interpreter, in one invocation.

    git archive <base> | tar -x -C /tmp/base
    .venv/bin/python -m bench.finance_attrs --base /tmp/base --rounds 5

Three measures per tree, µs of process CPU per operation (min over the rounds: the machine
is shared):
- validate: engine.domain.commands.validate of a Commit carrying a Finance (the API's
  check of every command: check_finance runs on it);
- journal: encode_entry + decode_entry of a 64-op batch of such Commits, per op;
- follower: Ledger.apply of a sale's business event (one in five a receipt), per event.
The attributes are left empty in both trees (what an old caller sends): the cost of the
new fields themselves, not of a different workload. No servers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

_CHILD = r"""
import json, sys, time
from engine.domain.commands import Commit, validate
from engine.domain.model import Finance
from engine.domain.ports import JournalEntry
from engine.domain.statuses import DEFAULT_DICTIONARY
from adapters.nats.codec import decode_entry, encode_entry
from engine.finance.ledger import Ledger
from engine.finance.mapping import default_rules
from tests.finance_fixtures import SETUP, Journal, fin

def cpu(fn, n):
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1e6

fin_ = Finance("CNY", unit_price="300", tax_rate="0.13", terms="2/10 n/30")
cmd = Commit("c1", "CHAIR-1", "SH01", "H1", 2, "SO-1", fin_)
statuses = DEFAULT_DICTIONARY
out = {"validate": cpu(lambda: validate(cmd, statuses), 20000)}
ops = tuple(Commit(f"c{i}", "CHAIR-1", "SH01", f"H{i}", 2, "SO-1", fin_) for i in range(64))
entry = JournalEntry("s0", 1, 0, ops, ())
out["journal"] = cpu(lambda: decode_entry(encode_entry(entry)), 300) / 64
j = Journal()
for i in range(2000):
    if i % 5 == 0:
        j.receive("CHAIR-1", "SH01", f"L{i % 7}", 20, fin("100"), doc=f"PO-{i}")
    else:
        j.issue("CHAIR-1", "SH01", f"L{(i - 1) % 7}", 1, fin(price="300", rate="0.13"), doc=f"SO-{i}")
events = j.events()
def follow():
    ledger = Ledger(SETUP, default_rules())
    for e in events:
        ledger.apply(e)
out["follower"] = cpu(follow, 5) / len(events)
print(json.dumps(out))
"""


def measure(tree: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=tree, env=env, capture_output=True, text=True, check=True, timeout=600
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="a checkout of the commit to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    best: dict[str, dict[str, float]] = {"base": {}, "this": {}}
    for _ in range(args.rounds):  # interleaved: base, this, base, this, ...
        for name, tree in (("base", args.base.resolve()), ("this", here)):
            for key, value in measure(tree).items():
                best[name][key] = min(value, best[name].get(key, float("inf")))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'µs CPU per op':<12} {'base':>9} {'this':>9} {'this/base':>10}")
    for key in best["base"]:
        b, t = best["base"][key], best["this"][key]
        print(f"{key:<12} {b:>9.2f} {t:>9.2f} {t / b:>10.2f}")


if __name__ == "__main__":
    main()
