#!/bin/bash
# Probe the shard processes during a bench.core run: per-thread CPU (threadcpu.py), py-spy
# --native / --gil of the busiest shard and --gil of a standby, syscalls (strace -c -f), in each orders
# window. Usage: probe.sh TREE OUTDIR CONCURRENCY_LIST DURATION_S
set -u
TREE=$1; OUT=$2; CONC=$3; DUR=$4
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
cd "$TREE"
python3 "$HERE/threadcpu.py" "$OUT/threads.jsonl" 0.5 & SAMPLER=$!
echo "load start $(cut -d' ' -f1-3 /proc/loadavg)" > "$OUT/load.txt"
scripts/in-netns .venv/bin/python -m bench.core --concurrency "$CONC" --duration-s "$DUR" --rounds 1 --followers off \
  --out "$OUT" > "$OUT/stdout.txt" 2> "$OUT/stderr.txt" & BENCH=$!
ranked() {  # the ShardActor pids by CPU over 2 s, busiest first (primaries, then standbys)
  local pids; pids=$(pgrep -f '^ray::ShardActor')
  declare -A a; for p in $pids; do a[$p]=$(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0); done
  sleep 2
  for p in $pids; do local b; b=$(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0)
    echo "$((b-${a[$p]})) $p"; done | sort -rn | awk '{print $2}'
}
n=0
for c in ${CONC//,/ }; do
  n=$((n+1))
  # wait for the orders window of this concurrency to start: after the idle line (first) or the previous ray_empty line
  if [ $n -eq 1 ]; then pat='idle CPU use'; else pat="ray_empty  c=$prev "; fi
  until grep -q "$pat" "$OUT/stderr.txt" 2>/dev/null; do sleep 0.5; done
  sleep 2
  R=($(ranked)); P=${R[0]}; S=${R[2]:-}
  echo "c=$c busiest shard pid $P at $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
  ls /proc/$P/task > "$OUT/c$c-tids.txt"
  for t in $(ls /proc/$P/task); do echo "$t $(cat /proc/$P/task/$t/comm)"; done > "$OUT/c$c-tids.txt"
  timeout -s INT 5 strace -c -f -p "$P" -o "$OUT/c$c-strace.txt" > /dev/null 2>&1
  .venv/bin/py-spy record --pid "$P" --duration 4 --rate 200 --native --threads --format raw --nonblocking \
    --output "$OUT/c$c-native.txt" > "$OUT/c$c-native.log" 2>&1
  .venv/bin/py-spy record --pid "$P" --duration 4 --rate 200 --gil --threads --format raw --nonblocking --output "$OUT/c$c-gil.txt" > /dev/null 2>&1
  .venv/bin/py-spy dump --pid "$P" > "$OUT/c$c-dump.txt" 2>&1
  if [ -n "$S" ]; then
    .venv/bin/py-spy record --pid "$S" --duration 4 --rate 200 --gil --threads --format raw --nonblocking \
      --output "$OUT/c$c-standby-gil.txt" > /dev/null 2>&1
  fi
  echo "c=$c probes done at $(date +%T)" >> "$OUT/load.txt"
  prev=$c
done
wait $BENCH; echo "bench rc=$?" >> "$OUT/load.txt"
echo "load end $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
kill $SAMPLER
