"""Locust users driving Lotwise's gRPC API with the suite's workloads (bench/README.md).

    # against a running engine (make up), headless, CSV out:
    .venv/bin/locust -f bench/locustfile.py --host 127.0.0.1:50051 --headless -u 64 -r 64 -t 60s \
        --stop-timeout 10 --csv bench/results/locust --workload pos-deep --skus 200
    # or with the web UI on http://127.0.0.1:8089:
    .venv/bin/locust -f bench/locustfile.py --host 127.0.0.1:50051

Every gRPC call is reported through locust's request event (`request_type` "grpc", name =
the RPC; a stock refusal is reported as "Reserve (refused)", not as a failure: it is a
correct answer). Give `--stop-timeout` so users finish the order they are in when the run
ends: one cut off between its hold and its commit leaves stock held until the TTL. At
test start the users' stock is seeded into sites of the run's own (`S000.<tag>`…), so
every run starts fresh. gRPC runs on gevent here (locust's model);
the cross-system comparison uses the asyncio load generator instead (bench/suite.py), so
every system there is driven the same way.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, constant, events, task
from locust.env import Environment

from bench.workloads import WORKLOADS, OrderStream, dataset, shape
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc

grpc_gevent.init_gevent()  # gRPC's polling must cooperate with gevent's hub

CALL_TIMEOUT_S = 10.0
HOLD_TTL_MS = 120_000
MS_PER_DAY = 86_400_000
_run: dict[str, Any] = {}  # the run's tag and shape, set once at test start
_workers = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--workload", choices=WORKLOADS, default="pos-deep", help="the suite workload to run")
    parser.add_argument("--skus", type=int, default=200, help="skus of the POS datasets (seeded at start)")
    parser.add_argument("--sites", type=int, default=10, help="sites of the POS datasets")
    parser.add_argument("--seed", type=int, default=11, help="seed of the dataset and order streams")


@events.init.add_listener
def _seed_at_init(environment: Environment, **_: Any) -> None:
    """Seed at `init` when the host is known (headless runs): `--run-time` counts from the
    start of the test, and seeding a slow engine inside that window left runs without orders."""
    if environment.host and environment.parsed_options is not None:
        _seed(environment)


def _parsed_options(environment: Environment) -> argparse.Namespace:
    """The command line's options; locust parses them before any test starts."""
    if environment.parsed_options is None:
        raise RuntimeError("bench/locustfile.py runs under the locust command line (no parsed options)")
    return environment.parsed_options


def _target(host: str | None) -> str:
    """The engine's gRPC address, from locust's --host."""
    if host is None:
        raise RuntimeError("bench/locustfile.py needs --host (the engine's gRPC address, e.g. 127.0.0.1:50051)")
    return host


@events.test_start.add_listener
def _seed_at_start(environment: Environment, **_: Any) -> None:
    """The web UI names the host only when the test starts."""
    if not _run:
        _seed(environment)


def _seed(environment: Environment) -> None:
    """Book the run's catalog and stock, once, before the users start."""
    opts = _parsed_options(environment)
    s = shape(opts.workload, opts.skus, opts.sites)
    tag = f"lc{int(time.time())}"
    data = dataset(s, tag, opts.seed)
    with grpc.insecure_channel(_target(environment.host)) as channel:
        stub = pb_grpc.InventoryStub(channel)
        for sku in sorted({sku for sku, _ in data.pairs}):
            stub.PutSku(pb.PutSkuRequest(request_id=f"{tag}:sku:{sku}", sku=pb.Sku(sku=sku, name=sku)), timeout=30)
        for site in sorted({site for _, site in data.pairs}):
            req = pb.PutSiteRequest(request_id=f"{tag}:site:{site}", site=pb.Site(site=site, org_path="bench/locust"))
            stub.PutSite(req, timeout=30)
        for (sku, site), lots in data.lots:
            for lot in lots:
                stub.Receive(
                    pb.ReceiveRequest(
                        request_id=f"{tag}:rcv:{sku}:{site}:{lot.lot_id}",
                        sku=sku,
                        site=site,
                        lot_id=lot.lot_id,
                        qty=lot.qty,
                        status="available",
                        expires_at_ms=lot.expires_day * MS_PER_DAY,
                    ),
                    timeout=30,
                )
    _run.update(shape=s, tag=tag, seed=opts.seed)


class LotwiseUser(User):
    """One closed-loop client: hold an order (FEFO, all or nothing), then commit or release."""

    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._channel = grpc.insecure_channel(_target(self.host))
        self._stub = pb_grpc.InventoryStub(self._channel)
        self._worker = next(_workers)
        self._stream: OrderStream | None = None
        self._n = 0

    def on_stop(self) -> None:
        self._channel.close()

    def _call(self, name: str, method: Any, request: Any) -> Any:
        started = time.perf_counter()
        response, exception, label = None, None, name
        try:
            response = method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as err:
            if name == "Reserve" and err.code() is grpc.StatusCode.FAILED_PRECONDITION:
                label = "Reserve (refused)"  # not enough free stock: a correct answer
            else:
                exception = err
        self.environment.events.request.fire(
            request_type="grpc",
            name=label,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=response.ByteSize() if response is not None else 0,
            exception=exception,
            context={},
        )
        return response if exception is None and label == name else None

    @task
    def order(self) -> None:
        if self._stream is None:
            self._stream = OrderStream(_run["shape"], _run["tag"], _run["seed"], self._worker)
        op = self._stream.next()
        self._n += 1
        if op.receipt is not None:
            sku, site, lot = op.receipt
            self._call(
                "Receive",
                self._stub.Receive,
                pb.ReceiveRequest(
                    request_id=f"{_run['tag']}:u{self._worker}:{self._n}",
                    sku=sku,
                    site=site,
                    lot_id=lot.lot_id,
                    qty=lot.qty,
                    status="available",
                    expires_at_ms=lot.expires_day * MS_PER_DAY,
                ),
            )
            return
        hold_id = f"{_run['tag']}-u{self._worker}-{self._n}"
        lines = [pb.ReserveLine(sku=line.sku, site=line.site, qty=line.qty) for line in op.lines]
        held = self._call(
            "Reserve",
            self._stub.Reserve,
            pb.ReserveRequest(request_id=hold_id, hold_id=hold_id, lines=lines, ttl_ms=HOLD_TTL_MS),
        )
        if held is None:
            return
        if op.commit:
            self._call("Commit", self._stub.Commit, pb.CommitRequest(request_id=f"{hold_id}:c", hold_id=hold_id))
        else:
            self._call("Release", self._stub.Release, pb.ReleaseRequest(request_id=f"{hold_id}:r", hold_id=hold_id))
