#!/usr/bin/env bash
# A production-shaped Lotwise on one machine: a Ray cluster (`ray start --head`), a
# standalone JetStream nats-server, and two stateless gateways (`lotwise up`) that share
# the same detached shard actors. Everything listens on 127.0.0.1.
#
#   deploy/local-cluster.sh up       start it all; prints the two gRPC addresses
#   deploy/local-cluster.sh down     stop it all (the journal stays in $DATA/nats)
#   deploy/local-cluster.sh smoke    up, write through one gateway, read through the other,
#                                    verify, down; exits non-zero on any difference
#
# Run it inside scripts/in-netns on a shared machine (Ray listens on every interface).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv/bin"
DATA="${LOTWISE_CLUSTER_DIR:-$ROOT/.data/cluster}"
RAY_PORT="${RAY_PORT:-6390}"
NATS_PORT="${NATS_PORT:-4333}"
read -r -a GATEWAYS <<<"${LOTWISE_CLUSTER_PORTS:-50061 50062}"
export RAY_USAGE_STATS_ENABLED=0
# Ray ≥ 2.59 authenticates every cluster member with one shared token: make one per cluster.
export RAY_AUTH_MODE=token
mkdir -p "$DATA"
[ -s "$DATA/ray-token" ] || "$VENV/python" -c 'import secrets; print(secrets.token_hex(32))' >"$DATA/ray-token"
RAY_AUTH_TOKEN="$(cat "$DATA/ray-token")"
export RAY_AUTH_TOKEN
# Lotwise's callers too: every gateway verifies tokens with one signing secret (docs/security.md),
# so a token works on either; the first gateway writes the admin token under its data dir.
if [ -z "${LOTWISE_AUTH_SECRET_FILE:-}" ]; then
  LOTWISE_AUTH_SECRET_FILE="$DATA/signing.key"
  [ -s "$LOTWISE_AUTH_SECRET_FILE" ] || (umask 077 && "$VENV/python" -c 'import secrets; print(secrets.token_hex(32))' >"$LOTWISE_AUTH_SECRET_FILE")
fi
export LOTWISE_AUTH_SECRET_FILE

up() {
  # --block: the head lives as long as this process, so `down` stops exactly this cluster
  # (`ray stop` would stop every Ray on the machine, other users' too).
  "$VENV/ray" start --head --block --node-ip-address 127.0.0.1 --port "$RAY_PORT" --include-dashboard false \
    --disable-usage-stats >"$DATA/ray-start.log" 2>&1 & echo $! >"$DATA/ray.pid"
  for _ in $(seq 1 60); do
    grep -q "Ray runtime started" "$DATA/ray-start.log" 2>/dev/null && break
    sleep 1
  done
  mkdir -p "$DATA/nats"
  cat >"$DATA/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
jetstream { store_dir: "$DATA/nats", sync_interval: always, max_file_store: 32GB }
CONF
  "$VENV/nats-server" -c "$DATA/nats.conf" -l "$DATA/nats.log" & echo $! >"$DATA/nats.pid"
  # History: the first gateway runs the sink and serves lotwise.v1.History from an embedded
  # chDB (one process owns a chDB path); with a ClickHouse server (LOTWISE_HISTORY_DSN)
  # every gateway could. Each gateway keeps its files in a directory of its own.
  # The same gateway runs ingestion and the business-event bus: one consumer per durable
  # keeps events in order (two would share the work and interleave it).
  local history=true
  for port in "${GATEWAYS[@]}"; do
    LOTWISE_RAY_ADDRESS="127.0.0.1:$RAY_PORT" LOTWISE_NATS_URL="nats://127.0.0.1:$NATS_PORT" \
      LOTWISE_PORT="$port" LOTWISE_METRICS_PORT=0 LOTWISE_NAMESPACE=lotwise-cluster \
      LOTWISE_DATA_DIR="$DATA/gateway-$port" LOTWISE_HISTORY="$history" \
      LOTWISE_INGEST="$history" LOTWISE_EVENTS="$history" \
      "$VENV/lotwise" up --no-demo >"$DATA/gateway-$port.log" 2>&1 & echo $! >"$DATA/gateway-$port.pid"
    history=false
  done
  for port in "${GATEWAYS[@]}"; do
    for _ in $(seq 1 120); do
      grep -q "Serving" "$DATA/gateway-$port.log" 2>/dev/null && break
      sleep 1
    done
    grep -q "Serving" "$DATA/gateway-$port.log" || { echo "gateway :$port did not start:"; tail -20 "$DATA/gateway-$port.log"; exit 1; }
    echo "gateway serving on 127.0.0.1:$port"
  done
}

down() {
  for port in "${GATEWAYS[@]}"; do
    [ -f "$DATA/gateway-$port.pid" ] && kill "$(cat "$DATA/gateway-$port.pid")" 2>/dev/null || true
  done
  sleep 2
  # Shards are detached actors: in a cluster they outlive gateways; stopping the head ends them.
  if [ -f "$DATA/ray.pid" ]; then
    kill "$(cat "$DATA/ray.pid")" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$(cat "$DATA/ray.pid")" 2>/dev/null || break; sleep 1; done
  fi
  [ -f "$DATA/nats.pid" ] && kill "$(cat "$DATA/nats.pid")" 2>/dev/null || true
  rm -f "$DATA"/*.pid
}

smoke() {
  trap down EXIT
  up
  export LOTWISE_TOKEN_FILE="$DATA/gateway-${GATEWAYS[0]}/auth/admin.token"
  "$VENV/python" - "${GATEWAYS[@]}" <<'PY'
import asyncio, sys, uuid
from engine.api.client import LotwiseClient
from engine.domain.catalog import Site, Sku
from engine.domain.commands import ReserveLine
from engine.runtime.types import HoldLine

async def main(a: str, b: str) -> None:
    tag = uuid.uuid4().hex[:6]
    async with LotwiseClient(f"127.0.0.1:{a}") as one, LotwiseClient(f"127.0.0.1:{b}") as two:
        await one.put_sku(Sku(f"strip-{tag}"))
        await one.put_site(Site(f"cab-{tag}"))
        await one.receive(f"strip-{tag}", f"cab-{tag}", "L1", 10, status="available")
        hold = await one.reserve([HoldLine(f"strip-{tag}", f"cab-{tag}", ReserveLine(4))], 60_000)
        done = await two.commit(hold.hold_id)  # the other gateway finds the hold and commits it
        seen = (await two.get_availability(f"strip-{tag}", f"cab-{tag}")).available
        ok, checks = await two.verify()
        print(f"committed {done.committed_qty} via the second gateway; it sees {seen} available; verify ok={ok}")
        if done.committed_qty != 4 or seen != 6 or not ok:
            sys.exit(1)

asyncio.run(main(sys.argv[1], sys.argv[2]))
PY
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  smoke) smoke ;;
  *) echo "usage: $0 up|down|smoke" >&2; exit 2 ;;
esac
