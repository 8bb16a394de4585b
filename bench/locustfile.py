"""Locust users driving Lotwise's gRPC API with the suite's workloads (bench/README.md).

    # against a running engine (make up), headless, CSV out:
    .venv/bin/locust -f bench/locustfile.py --host 127.0.0.1:50051 --headless -u 64 -r 64 -t 60s \
        --stop-timeout 10 --csv bench/results/locust --workload pos-deep --skus 200
    # or with the web UI on http://127.0.0.1:8089:
    .venv/bin/locust -f bench/locustfile.py --host 127.0.0.1:50051

Every gRPC call is reported through locust's request event (`request_type` "grpc", name =
the RPC; a stock refusal is reported as "Reserve (refused)", not as a failure: it is a
correct answer). Calls the server declined under load are reported apart from errors,
`request_type` "grpc-shed": "<RPC> (shed)" for RESOURCE_EXHAUSTED OVERLOADED (the door or
a shard queue), "<RPC> (recovering)" for UNAVAILABLE while a shard recovers; a shed commit
or release is retried after the server's RetryInfo, each attempt reported. Give
`--stop-timeout` so users finish the order they are in when the run
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
from google.rpc import error_details_pb2
from locust import User, constant, events, task
from locust.env import Environment

from bench.workloads import WORKLOADS, OrderStream, dataset, shape
from engine.api.errors import REASON_OVERLOADED, REASON_UNAVAILABLE, retry_delay_s, status_of_rpc_error
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.timeout_header import timeout_metadata

grpc_gevent.init_gevent()  # gRPC's polling must cooperate with gevent's hub

CALL_TIMEOUT_S = 10.0
# A shed commit or release is tried again (it frees stock: giving up would leave it held
# until the TTL); a shed reserve is not (the user moves on to its next order).
RESOLVE_ATTEMPTS = 20
REQUEST_TYPE_SHED = "grpc-shed"  # shed (OVERLOADED) and recovering (UNAVAILABLE) calls: not errors
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


def refusal_label(name: str, err: grpc.RpcError) -> tuple[str | None, float | None]:
    """How a refused call is reported, apart from errors: (its stats name, or None for an
    error; the back-off before retrying it, or None for an answer not to retry).

    A stock refusal is a correct answer ("Reserve (refused)"). A call shed by the door or a
    shard queue (RESOURCE_EXHAUSTED, ErrorInfo OVERLOADED) is "<name> (shed)"; one refused
    while a shard recovers (UNAVAILABLE with its ErrorInfo) is "<name> (recovering)": both
    carry RetryInfo and were not applied, so they are load the server declined, not errors.
    """
    code = err.code()
    if name == "Reserve" and code is grpc.StatusCode.FAILED_PRECONDITION:
        return "Reserve (refused)", None
    if code not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        return None, None
    status = status_of_rpc_error(err)
    reasons = {info.reason for info in _error_infos(status)}
    hint_s = retry_delay_s(status)
    if hint_s is None:
        return None, None  # no RetryInfo: a transport failure, not a typed refusal
    if REASON_OVERLOADED in reasons:
        return f"{name} (shed)", hint_s
    if REASON_UNAVAILABLE in reasons:
        return f"{name} (recovering)", hint_s
    return None, None


def _error_infos(status: Any) -> list[error_details_pb2.ErrorInfo]:
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    return infos


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

    def _call(self, name: str, method: Any, request: Any, *, attempts: int = 1) -> Any:
        """One call, reported; a call shed or refused while recovering is tried again (same
        request id, after the server's RetryInfo) up to `attempts` times, each reported."""
        for attempt in range(1, attempts + 1):
            response, backoff_s = self._attempt(name, method, request)
            if backoff_s is None or attempt == attempts:
                return response
            time.sleep(backoff_s)  # gevent-patched: other users run meanwhile
        return None

    def _attempt(self, name: str, method: Any, request: Any) -> tuple[Any, float | None]:
        """(the response or None, the back-off before a retry or None when not to retry)."""
        started = time.perf_counter()
        response, exception, label, backoff_s = None, None, name, None
        try:
            response = method(request, timeout=CALL_TIMEOUT_S, metadata=(timeout_metadata(CALL_TIMEOUT_S),))
        except grpc.RpcError as err:
            refused_as, backoff_s = refusal_label(name, err)
            if refused_as is None:
                exception = err
            else:
                label = refused_as
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE_SHED if backoff_s is not None else "grpc",
            name=label,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=response.ByteSize() if response is not None else 0,
            exception=exception,
            context={},
        )
        return (response if exception is None and label == name else None), backoff_s

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
            commit = pb.CommitRequest(request_id=f"{hold_id}:c", hold_id=hold_id)
            self._call("Commit", self._stub.Commit, commit, attempts=RESOLVE_ATTEMPTS)
        else:
            release = pb.ReleaseRequest(request_id=f"{hold_id}:r", hold_id=hold_id)
            self._call("Release", self._stub.Release, release, attempts=RESOLVE_ATTEMPTS)
