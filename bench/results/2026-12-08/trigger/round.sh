#!/bin/bash
# usage: trigger_round.sh TAG TREE FOLLOWERS
R=/work/wt/trigger/bench/results/2026-12-08/trigger/runs
tag=$1; tree=$2; fol=$3
cd /work/wt/$tree
echo "== $tag tree=$tree followers=$fol start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/loads.txt
cmd="scripts/in-netns .venv/bin/python -m bench.core --concurrency 64 --duration-s 8 --rounds 1 --idle-s 0 --ceiling-duration-s 2 --followers $fol --out $R/$tag"
echo "$cmd" > $R/$tag.cmd
$cmd > $R/$tag.log 2>&1
echo "== $tag end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/loads.txt
