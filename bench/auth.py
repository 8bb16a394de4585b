"""What authentication and authorization cost (docs/security.md; issue 13 targets).

Three measurements, one run:

1. **Policy load**: a 2,000-node org tree, 10,000 sites and 100,000 grants, written as TOML
   and as JSON, loaded and validated (`adapters.auth.files.load_policy`); then one
   principal compiled. Target: ≤ 2 s.
2. **Check cost per request**, in µs: a cached token verified, a principal's compiled
   permissions looked up, an org-scoped `allows`, a bin-scoped `allows`, a read scope.
3. **Throughput with and without auth, same run**: an in-process engine (shards in this
   process, no Ray, so the engine's share is what auth changes) behind a real gRPC server
   on 127.0.0.1; a load generator in a separate process runs 64 closed-loop callers, half
   Receive and half GetAvailability, through `LotwiseClient`. Rounds alternate off / on;
   reported: ops/s and the server process's CPU µs per op. Target: auth ≤ 5% of throughput.

    scripts/in-netns .venv/bin/python -m bench.auth [--seconds 8] [--rounds 2] [--callers 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ORG_NODES = 2_000
SITES = 10_000
GRANTS = 100_000
BENCH_SITES = 20  # the sites the throughput load touches
SECRET = b"bench-secret-" + b"x" * 40


# ---- 1. policy load ------------------------------------------------------------------------


def org_tree() -> list[str]:
    """2,000 nodes: a root, 40 regions, 49 districts under each (plus the root: 2,001)."""
    nodes = ["acme"]
    for r in range(40):
        nodes.append(f"acme/r{r}")
        nodes.extend(f"acme/r{r}/d{d}" for d in range(49))
    return nodes[:ORG_NODES]


def big_policy(rng: random.Random) -> dict[str, Any]:
    nodes = org_tree()
    sites = [(f"S{i:05d}", nodes[1 + i % (len(nodes) - 1)]) for i in range(SITES)]
    grants: list[dict[str, str]] = []
    for i in range(GRANTS):
        who = {"subject": f"u{i % 20_000}"} if i % 3 else {"group": f"g{i % 1_000}"}
        kind = i % 10
        if kind == 0:
            scope = {"org": rng.choice(nodes)}
        elif kind < 5:
            scope = {"site": sites[rng.randrange(SITES)][0]}
        else:
            scope = {"site": sites[rng.randrange(SITES)][0], "bin": f"A/{rng.randrange(40):02d}"}
        grants.append({**who, "role": rng.choice(("clerk", "site_manager", "regional_manager")), **scope})
    roles = {
        "clerk": ["read", "move", "count"],
        "site_manager": ["read", "read_cost", "reserve", "receive", "move", "adjust", "count"],
        "regional_manager": ["read", "read_cost"],
    }
    return {"roles": roles, "grants": grants}


def toml_of(doc: dict[str, Any]) -> str:
    lines = ["[roles]"]
    lines += [f"{name} = {json.dumps(actions)}" for name, actions in doc["roles"].items()]
    for g in doc["grants"]:
        lines.append("\n[[grants]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in g.items()]
    return "\n".join(lines) + "\n"


def measure_policy_load() -> dict[str, Any]:
    from adapters.auth.files import load_policy
    from engine.domain.grants import compile_permissions

    doc = big_policy(random.Random(7))
    out: dict[str, Any] = {"org_nodes": len(org_tree()), "sites": SITES, "grants": len(doc["grants"])}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix, text in ((".toml", toml_of(doc)), (".json", json.dumps(doc))):
            path = Path(tmp) / f"policy{suffix}"
            path.write_text(text)
            started, cpu = time.perf_counter(), time.process_time()
            policy = load_policy(path.read_bytes(), path)
            tag = suffix.replace(".", "_")
            out[f"load_s{tag}"] = round(time.perf_counter() - started, 3)
            out[f"load_cpu_s{tag}"] = round(time.process_time() - cpu, 3)  # less sensitive to a busy machine
            out[f"bytes{suffix.replace('.', '_')}"] = len(text)
        started = time.perf_counter()
        for i in range(1_000):
            compile_permissions(policy, f"u{i}", [f"g{i % 1_000}"])
        out["compile_us_per_principal"] = round((time.perf_counter() - started) * 1e6 / 1_000, 1)
    return out


# ---- 2. check cost ---------------------------------------------------------------------------


def per_call_us(fn: Any, n: int = 200_000) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return round((time.perf_counter() - started) * 1e6 / n, 3)


def measure_checks() -> dict[str, Any]:
    from adapters.auth.files import load_secret
    from engine.api.auth import Authorizer, Principal, TokenSettings, TokenVerifier, mint_token
    from engine.domain.grants import Action, compile_permissions, parse_policy

    policy = parse_policy(big_policy(random.Random(7)), "v1")
    with tempfile.TemporaryDirectory() as tmp:
        from adapters.auth.files import WatchedFile, write_private

        write_private(Path(tmp) / "k", SECRET)
        verifier = TokenVerifier([WatchedFile(Path(tmp) / "k", load_secret)], TokenSettings())
        token = mint_token(SECRET, "u1", ["g1"])
        first = time.perf_counter()
        verifier.verify(token)
        uncached_us = round((time.perf_counter() - first) * 1e6, 1)
        verify_us = per_call_us(lambda: verifier.verify(token))
    authorizer = Authorizer(lambda: policy)
    principal = Principal("u1", ("g1",))
    lookup_us = per_call_us(lambda: authorizer.permissions(principal))
    # A principal with bin grants too (subjects get 5 grants each, groups 33: see big_policy).
    perms = next(p for i in range(100) if (p := compile_permissions(policy, f"u{i}", [f"g{i}"])).bins)
    site, bins = next(iter(perms.bins.items()))
    bin_ = bins[0][0] + "/P1"
    org_site_path = "acme/r3/d7/x"
    return {
        "verify_first_us": uncached_us,
        "verify_cached_us": verify_us,
        "permissions_lookup_us": lookup_us,
        "allows_org_us": per_call_us(lambda: perms.allows(Action.READ, "S00001", org_site_path, "B/1")),
        "allows_bin_us": per_call_us(lambda: perms.allows(Action.MOVE, site, "zz/none", bin_)),
        "read_scope_us": per_call_us(lambda: perms.read_scope(Action.READ)),
        "principal_grants": len(policy.grants_of("u1", ["g1"])),
    }


# ---- 3. throughput with and without auth ------------------------------------------------------


async def serve(auth: bool, tmp: Path) -> tuple[Any, Any, str]:
    from prometheus_client import CollectorRegistry

    from adapters.auth.files import WatchedFile, load_secret, write_private
    from engine.api.auth import Authorizer, ServerAuth, TokenSettings, TokenVerifier
    from engine.api.server import ApiMetrics, start_server
    from engine.bootstrap import local_gateway
    from engine.domain.catalog import Site, Sku
    from engine.domain.grants import parse_policy

    gateway = local_gateway(shards=2, sweep_interval_ms=0)
    await gateway.put_sku(Sku("SKU"))
    for i in range(BENCH_SITES):
        await gateway.put_site(Site(f"S{i}", f"acme/east/d{i % 4}"))
    server_auth = None
    if auth:
        write_private(tmp / "k", SECRET)
        policy = parse_policy(
            {
                "roles": {"mgr": ["read", "receive"]},
                # A regional manager (org subtree) plus some bin grants: the checks walk real data.
                "grants": [{"subject": "mgr", "role": "mgr", "org": "acme/east"}]
                + [{"subject": "mgr", "role": "mgr", "site": f"S{i}", "bin": f"A/{i}"} for i in range(50)],
            },
            "v1",
        )
        verifier = TokenVerifier([WatchedFile(tmp / "k", load_secret)], TokenSettings())
        server_auth = ServerAuth(verifier, Authorizer(lambda: policy))
    server, port = await start_server(
        gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()), auth=server_auth
    )
    return server, gateway, f"127.0.0.1:{port}"


async def one_round(auth: bool, seconds: float, callers: int, *, tokenless: bool = False) -> dict[str, Any]:
    """One window; `tokenless`: an auth server flooded by callers without a token."""
    from engine.api.auth import mint_token

    with tempfile.TemporaryDirectory() as tmp:
        server, gateway, address = await serve(auth, Path(tmp))
        token = mint_token(SECRET, "mgr") if auth and not tokenless else ""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.auth", "--drive", address, "--token", token,
            "--seconds", str(seconds), "--callers", str(callers), *(["--unary"] if tokenless else []),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "LOTWISE_TOKEN": ""},
        )  # fmt: skip
        cpu0, wall0 = time.process_time(), time.perf_counter()
        out, _ = await proc.communicate()
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        await server.stop(0.5)
        await gateway.close()
    result = json.loads(out.decode().strip().splitlines()[-1])
    if tokenless:  # every call refused UNAUTHENTICATED: what one refusal costs the server
        refused = result["errors"]
        return {"refused": refused, "server_cpu_us_per_refusal": round(cpu_s * 1e6 / max(refused, 1), 1)}
    ops = result["ops"]
    return {
        "auth": auth,
        "ops": ops,
        "errors": result["errors"],
        "ops_per_s": round(ops / result["seconds"], 1),
        "server_cpu_us_per_op": round(cpu_s * 1e6 / max(ops, 1), 1),
        "server_cpu_share": round(cpu_s / wall_s, 2),
    }


async def drive(address: str, token: str, seconds: float, callers: int, unary: bool = False) -> None:
    """The load generator (its own process): closed-loop callers, half writes, half reads."""
    from engine.api.client import DEFAULT_BATCHING, NO_RETRY, LotwiseClient

    counts = {"ops": 0, "errors": 0}
    batching = None if unary else DEFAULT_BATCHING  # unary: one RPC per call (refusals are per RPC)
    async with LotwiseClient(address, token=token, retry=NO_RETRY, timeout_s=30, batching=batching) as client:
        if token:
            await client.receive("SKU", "S0", "L0", 1)  # warm: channel up, token verified once
        stop_at = time.perf_counter() + seconds

        async def caller(i: int) -> None:
            n = 0
            while time.perf_counter() < stop_at:
                site = f"S{(i + n) % BENCH_SITES}"
                try:
                    if n % 2:
                        await client.get_availability("SKU", site)
                    else:
                        await client.receive("SKU", site, "L1", 1, bin=f"A/{i % 50}")
                    counts["ops"] += 1
                except Exception:
                    counts["errors"] += 1
                n += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        print(json.dumps({**counts, "seconds": time.perf_counter() - started}))


async def measure_throughput(seconds: float, rounds: int, callers: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(rounds):
        for auth in (False, True):
            out.append(await one_round(auth, seconds, callers))
            print(json.dumps(out[-1]), flush=True)
    return out


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(auth: bool, key: str) -> float:
        values = [r[key] for r in rounds if r["auth"] is auth]
        return sum(values) / len(values)

    off, on = mean(False, "ops_per_s"), mean(True, "ops_per_s")
    cpu_off, cpu_on = mean(False, "server_cpu_us_per_op"), mean(True, "server_cpu_us_per_op")
    return {
        "ops_per_s_off": round(off, 1),
        "ops_per_s_on": round(on, 1),
        "throughput_cost_pct": round((off - on) * 100 / off, 1),
        "server_cpu_us_per_op_off": round(cpu_off, 1),
        "server_cpu_us_per_op_on": round(cpu_on, 1),
        "cpu_cost_pct": round((cpu_on - cpu_off) * 100 / cpu_off, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--drive", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--unary", action="store_true")
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive(args.drive, args.token, args.seconds, args.callers, args.unary))
        return
    from engine.logs import configure_logging

    configure_logging("warning")
    print("loadavg before:", Path("/proc/loadavg").read_text().strip(), flush=True)
    print("policy load:", json.dumps(measure_policy_load()), flush=True)
    print("checks:", json.dumps(measure_checks()), flush=True)
    rounds = asyncio.run(measure_throughput(args.seconds, args.rounds, args.callers))
    print("throughput:", json.dumps(summary(rounds)), flush=True)
    flood = asyncio.run(one_round(True, args.seconds / 2, args.callers, tokenless=True))
    print("calls without a token:", json.dumps(flood), flush=True)
    print("loadavg after:", Path("/proc/loadavg").read_text().strip(), flush=True)


if __name__ == "__main__":
    main()
