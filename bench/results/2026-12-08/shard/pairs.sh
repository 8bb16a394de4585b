#!/bin/bash
# Interleaved before/after bench.core runs with the load average and per-thread CPU of each.
# Usage: pairs.sh NAME PAIRS FOLLOWERS CONCURRENCY   (writes NAME-{before,after}-N/ here)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=$1; PAIRS=$2; FOLLOWERS=$3; CONC=$4
for i in $(seq 1 "$PAIRS"); do
  for side in before after; do
    if [ $side = before ]; then TREE=/work/wt/shard-before; else TREE=/work/wt/shard; fi
    OUT=$HERE/$NAME-$side-$i; mkdir -p "$OUT"
    python3 "$HERE/threadcpu.py" "$OUT/threads.jsonl" 1.0 & SAMPLER=$!
    echo "load start $(cut -d' ' -f1-3 /proc/loadavg) $(date +%T)" > "$OUT/load.txt"
    (cd $TREE && scripts/in-netns .venv/bin/python -m bench.core --concurrency "$CONC" --duration-s 8 --rounds 1 \
      --followers "$FOLLOWERS" --out "$OUT" > "$OUT/stdout.txt" 2> "$OUT/stderr.txt")
    echo "rc=$? load end $(cut -d' ' -f1-3 /proc/loadavg) $(date +%T)" >> "$OUT/load.txt"
    kill $SAMPLER
  done
done
