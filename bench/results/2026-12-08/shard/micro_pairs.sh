#!/bin/bash
# micro_host.py (a ShardHost on a real JetStream journal, in one process) from the before
# and the after tree, interleaved, with the load average next to each run.
# Usage: micro_pairs.sh PAIRS ORDERS BATCH...
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PAIRS=$1; ORDERS=$2; shift 2
for batch in "$@"; do
  for i in $(seq 1 "$PAIRS"); do
    for side in before after; do
      if [ $side = before ]; then TREE=/work/wt/shard-before; else TREE=/work/wt/shard; fi
      load=$(cut -d' ' -f1-3 /proc/loadavg)
      out=$(cd $TREE && PYTHONPATH=. scripts/in-netns .venv/bin/python "$HERE/micro_host.py" nats "$ORDERS" "$batch" plain 2>/dev/null | grep "us CPU")
      echo "$side $i | load $load | $out"
    done
  done
done
