#!/bin/bash
# prints one table row per finished bench.core run: orders/s, errors, CPU per order by group, consistency, load at start
cd /work/wt/trigger/bench/results/2026-12-08/trigger/runs
echo "| run | tree | followers | orders/s @64 | errors | engine ms/order | shards ms/order | nats ms/order | stock check | load at start (1/5/15 min) |"
echo "| :--- | :--- | :--- | ---: | ---: | ---: | ---: | ---: | :--- | :--- |"
for t in $(grep -o "== [a-z0-9-]* tree" loads.txt | awk '{print $2}'); do
  [ -f $t/core.md ] || { echo "| $t | – | – | Ray did not start (load) | | | | | | |"; continue; }
  tree=$(grep "== $t tree" loads.txt | sed 's/.*tree=\([^ ]*\).*/\1/'); fol=$(grep "== $t tree" loads.txt | sed 's/.*followers=\([^ ]*\).*/\1/')
  o=$(grep -A3 "^| concurrency | orders/s" $t/core.md | sed -n 3p | awk -F'|' '{gsub(/ /,"",$3); gsub(/ /,"",$8); print $3" | "$8}')
  c=$(grep "^| lotwise" $t/core.md | awk -F'|' '{gsub(/ /,"",$5);gsub(/ /,"",$6);gsub(/ /,"",$7); print $5" | "$6" | "$7}')
  k=$(grep -o "consistency check: [A-Za-z]*" $t/core.md | awk '{print $3}')
  l=$(grep "== $t tree" loads.txt | sed 's/.*load //')
  echo "| $t | ${tree/trigger-before/main} | $fol | $o | $c | $k | $l |"
done
