"""What HTTP/JSON through Envoy adds to the gRPC call it wraps (docs/http.md; issue 17 target:
≤ 1 ms at p50).

One run: shards in this process (no Ray: the engine's share is the same for both paths)
behind a real gRPC server on 127.0.0.1 with auth on, and Envoy's transcoder in front of it
(adapters/envoy, as `lotwise up` starts it). A client in its own process (so its CPU and
GIL are not the server's) makes sequential calls, alternating the two paths call by call
so both see the same machine load:

- `GetAvailability` of one pair: gRPC (a sync channel, a raw stub, the bearer token as
  metadata) vs `GET /v1/sites/{site}/skus/{sku}/availability` (one keep-alive connection);
- `Receive` of one unit: gRPC vs `POST /v1/sites/{site}/skus/{sku}:receive`.

Reported per method and path: p50 / p90 / p99 in µs, and the p50 difference; plus Envoy's
CPU per HTTP call (psutil, over the HTTP calls only) and the machine's load average.

    scripts/in-netns .venv/bin/python -m bench.http [--calls 2000] [--warmup 200]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SKU, SITE = "GLU-50", "FW-BOS"


# ---- the client (a separate process) ----------------------------------------------------


def _quantiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {"p50_us": at(0.50), "p90_us": at(0.90), "p99_us": at(0.99), "mean_us": statistics.fmean(ordered) / 1000}


def client(grpc_address: str, http_port: int, token: str, calls: int, warmup: int) -> dict[str, Any]:
    import grpc

    from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
    from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc

    metadata = (("authorization", f"Bearer {token}"),)
    stub = pb_grpc.InventoryStub(grpc.insecure_channel(grpc_address))
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def http_call(method: str, path: str, body: dict[str, Any] | None) -> None:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        json.loads(data)

    n = 0

    def receive_grpc() -> None:
        nonlocal n
        n += 1
        req = pb.ReceiveRequest(request_id=f"g{n}", sku=SKU, site=SITE, lot_id="L1", qty=1, status="available")
        stub.Receive(req, metadata=metadata, timeout=10)

    def receive_http() -> None:
        nonlocal n
        n += 1
        body = {"request_id": f"h{n}", "lot_id": "L1", "qty": "1", "status": "available"}
        http_call("POST", f"/v1/sites/{SITE}/skus/{SKU}:receive", body)

    paths = {
        "GetAvailability": (
            lambda: stub.GetAvailability(pb.GetAvailabilityRequest(sku=SKU, site=SITE), metadata=metadata, timeout=10),
            lambda: http_call("GET", f"/v1/sites/{SITE}/skus/{SKU}/availability", None),
        ),
        "Receive": (receive_grpc, receive_http),
    }
    out: dict[str, Any] = {}
    for name, (via_grpc, via_http) in paths.items():
        grpc_ns: list[int] = []
        http_ns: list[int] = []
        for i in range(warmup + calls):
            for fn, into in ((via_grpc, grpc_ns), (via_http, http_ns)):
                t = time.perf_counter_ns()
                fn()
                if i >= warmup:
                    into.append(time.perf_counter_ns() - t)
        out[name] = {"grpc": _quantiles(grpc_ns), "http": _quantiles(http_ns)}
    conn.close()
    return out


# ---- the engine (this process) ---------------------------------------------------------


async def run(calls: int, warmup: int) -> dict[str, Any]:
    import psutil
    from prometheus_client import CollectorRegistry

    from adapters.auth.files import WatchedFile, load_policy, load_secret, write_private
    from adapters.envoy.gateway import EnvoyConfig, EnvoyGateway
    from engine import bootstrap
    from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier, mint_token
    from engine.api.client import LotwiseClient
    from engine.api.server import ApiMetrics, start_server
    from engine.bootstrap.http import DESCRIPTOR, OPENAPI
    from engine.domain.catalog import Site, Sku

    tmp = Path(tempfile.mkdtemp(prefix="lotwise-bench-http-"))
    secret = b"bench-http-" + b"s" * 40
    write_private(tmp / "signing.key", secret)
    (tmp / "policy.toml").write_text(
        '[roles]\nadmin = ["read", "receive", "reserve", "admin"]\n\n'
        '[[grants]]\ngroup = "admin"\nrole = "admin"\norg = ""\n'
    )
    verifier = TokenVerifier([WatchedFile(tmp / "signing.key", load_secret)], TokenSettings())
    authorizer = Authorizer(WatchedFile(tmp / "policy.toml", load_policy).current, AuthMetrics(CollectorRegistry()))
    token = mint_token(secret, "bench", ["admin"])
    gateway = bootstrap.local_gateway(shards=2)
    server, port = await start_server(
        gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=gateway,
        auth=ServerAuth(verifier, authorizer),
    )
    envoy = EnvoyGateway(EnvoyConfig(tmp / "envoy", "127.0.0.1", port, DESCRIPTOR, OPENAPI))
    await envoy.start()
    try:
        async with LotwiseClient(f"127.0.0.1:{port}", token=token) as admin:
            await admin.put_sku(Sku(SKU))
            await admin.put_site(Site(SITE, "bench/east"))
            await admin.receive(SKU, SITE, "L1", 1_000, status="available")
        envoy_proc = _envoy_process(envoy.port)
        cpu_before = envoy_proc.cpu_times() if envoy_proc else None
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.http",
            "--client",
            f"127.0.0.1:{port}",
            str(envoy.port),
            token,
            "--calls",
            str(calls),
            "--warmup",
            str(warmup),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        wall_s = time.monotonic() - started
        results: dict[str, Any] = json.loads(out)
        if envoy_proc and cpu_before:
            after = envoy_proc.cpu_times()
            http_calls = 2 * (calls + warmup)
            results["envoy_cpu_us_per_http_call"] = round(
                ((after.user - cpu_before.user) + (after.system - cpu_before.system)) * 1e6 / http_calls, 1
            )
        results["wall_s"] = round(wall_s, 1)
        results["load_average"] = [round(x, 2) for x in os.getloadavg()]
        results["cpus"] = psutil.cpu_count()
        return results
    finally:
        await envoy.stop()
        await server.stop(1.0)
        await gateway.close()


def _envoy_process(port: int) -> Any:
    import psutil

    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "envoy":
            try:
                if any(c.laddr.port == port for c in p.net_connections(kind="tcp")):
                    return p
            except psutil.Error:
                continue
    return None


def _report(r: dict[str, Any]) -> str:
    lines = ["| method | path | p50 µs | p90 µs | p99 µs |", "|---|---|---|---|---|"]
    for name in ("GetAvailability", "Receive"):
        for path in ("grpc", "http"):
            q = r[name][path]
            lines.append(f"| {name} | {path} | {q['p50_us']:.0f} | {q['p90_us']:.0f} | {q['p99_us']:.0f} |")
    for name in ("GetAvailability", "Receive"):
        delta = r[name]["http"]["p50_us"] - r[name]["grpc"]["p50_us"]
        lines.append(f"\n{name}: HTTP/JSON adds {delta:.0f} µs at p50 (target ≤ 1000 µs)")
    lines.append(f"Envoy CPU per HTTP call: {r.get('envoy_cpu_us_per_http_call', '?')} µs")
    lines.append(f"load average before/after: {r['load_average']} on {r['cpus']} CPUs; wall {r['wall_s']} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2_000, help="measured calls per method and path")
    ap.add_argument("--warmup", type=int, default=200, help="calls per method and path not counted")
    ap.add_argument("--client", nargs=3, metavar=("GRPC", "HTTP_PORT", "TOKEN"), help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = ap.parse_args()
    if args.client:
        grpc_address, http_port, token = args.client
        print(json.dumps(client(grpc_address, int(http_port), token, args.calls, args.warmup)))
        return
    os.environ.setdefault("LOTWISE_LOG_LEVEL", "warning")
    from engine.logs import configure_logging

    configure_logging("warning", "console")
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = asyncio.run(run(args.calls, args.warmup))
    results["load_average"] = [load_before, results["load_average"]]
    print(json.dumps(results, indent=1) if args.json else _report(results))


if __name__ == "__main__":
    main()
