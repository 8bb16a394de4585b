#!/bin/sh
# series.sh: interleaved bench.core runs, before (main) and after (this branch)
R=/work/wt/history/bench/results/2026-12-08/history
PROBE=$R/probe_core.py
run() { # tree label followers
  tree=$1; label=$2; f=$3
  cd /work/wt/$tree
  echo "=== $label followers=$f start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/series.log
  PYTHONPATH=. scripts/in-netns .venv/bin/python $PROBE $R/inserts-$label-$f.tsv --concurrency 64 --duration-s 15 --rounds 1 --idle-s 0 --ceiling-duration-s 1 --followers $f --out $R/core/$label-$f-$4 > $R/core-$label-$f-$4.log 2>&1
  echo "=== $label followers=$f end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/series.log
  grep "^| lotwise\|^| 64 " $R/core/$label-$f-$4/core.md | head -3 >> $R/series.log
}
for pass in 1 2; do
  run history after history $pass
  run history-before before history $pass
  run history after off $pass
  run history-before before off $pass
done
echo done >> $R/series.log
