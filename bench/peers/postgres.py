"""PostgreSQL as a `bench.systems.System`: row locks, as Odoo and Saleor hold stock.

One transaction per reserve: `SELECT … FOR UPDATE` locks every lot row of the order's
pairs in one canonical order (the primary key), the client allocates FEFO in Python, one
statement writes the holds and the held units, COMMIT. Commit and release are each one
statement (an implicit transaction) that first locks the hold, then its lots in the same
canonical order. The table's CHECK constraints refuse an oversell in the database itself.

`PostgresServer` runs a throwaway cluster for the bench: initdb into a temporary
directory, `postgres` on 127.0.0.1 and a free port, durable settings (see
`PostgresServerConfig`), stopped and deleted afterwards.

Running as root: PostgreSQL refuses to (initdb and postgres exit with "cannot be run as
root"), so when this process is root both run as the `postgres` system user that the
Debian package creates (`subprocess.Popen(user=…, group=…)`, i.e. setuid/setgid in the
child, no runuser or sudo needed); the temporary directory is chowned to that user.

Smoke run (16 workers, reserve 1–3 lines → commit, 10 s, deep stock):

    .venv/bin/python -m bench.peers.postgres --workers 16 --duration-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
import psutil
from asyncpg.exceptions import DeadlockDetectedError
from asyncpg.pool import PoolConnectionProxy

from adapters.nats.server import pdeathsig_setter
from bench.systems import Audit, Dataset, LotSeed, OrderLine, Pair, PairTotals
from engine.domain.errors import InvariantViolation

T = TypeVar("T")

_POLL_S = 0.1
_LOG_TAIL_BYTES = 4_000
_DEADLOCK_ATTEMPTS = 4  # the first try and 3 retries (never expected: all lock lots in primary-key order)
_MAX_ORDER_PAIRS = 64  # a bound on the generated lock statement's size (orders have 1–3 lines)


# -- the server ----------------------------------------------------------------------------


class PostgresServerError(RuntimeError):
    """PostgreSQL is missing, failed to start, or did not become ready (carries the log tail)."""


@dataclass(frozen=True, slots=True)
class PostgresServerConfig:
    """How to run the bench's PostgreSQL. Durability is PostgreSQL's default and is spelt
    out so nobody "tunes" it away: fsync=on, synchronous_commit=on (a COMMIT returns after
    its WAL is flushed to disk), full_page_writes=on. Lotwise fsyncs every journal append
    before it acknowledges, so this is the fair PostgreSQL to compare with."""

    base_dir: Path | None = None  # where the temporary directory goes (default: the system's temp dir)
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    max_connections: int = 300  # the load generator's pools (≥ 200) plus audits and tests
    shared_buffers: str = "256MB"
    # Bench hygiene, not durability: no checkpoint forced by WAL volume inside a ≤ 60 s window
    # (a checkpoint would make the next write of every page log a full-page image).
    max_wal_size: str = "4GB"
    run_as: str = "postgres"  # the OS user initdb/postgres run as when this process is root
    bin_dir: Path | None = None  # default: find_postgres_bin()
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0
    extra_settings: Mapping[str, str] = field(default_factory=dict)


def find_postgres_bin(explicit: Path | None = None) -> Path:
    """The directory holding `initdb` and `postgres`: `explicit`, else the one behind
    `postgres` on PATH (Debian links /usr/local/bin/postgres into it), else the newest
    /usr/lib/postgresql/<major>/bin."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    else:
        on_path = shutil.which("postgres")
        if on_path:
            candidates.append(Path(os.path.realpath(on_path)).parent)
        debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
        candidates += [Path(p) for p in debian]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise PostgresServerError(
        f"PostgreSQL binaries (initdb, postgres) not found in {[str(c) for c in candidates] or 'PATH'}: "
        "install the postgresql package (apt-get install postgresql) or pass bin_dir"
    )


def _major(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return -1


def _free_port(host: str) -> int:
    # Bind port 0 and let it go: PostgreSQL cannot be told to pick a port itself. The small
    # race with another process is handled by the retry in PostgresServer.start.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A fresh PostgreSQL cluster in a temporary directory; `async with PostgresServer() as s:`
    then connect with `s.dsn`. `pids()` lists the postmaster and its children for CPU
    sampling. Stopping is a fast shutdown (SIGINT to the postmaster, as `pg_ctl stop -m
    fast` sends), bounded, then the directory is removed."""

    def __init__(self, config: PostgresServerConfig | None = None) -> None:
        self._cfg = config or PostgresServerConfig()
        self._dir: Path | None = None
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        if not self._port:
            raise PostgresServerError("the PostgreSQL server has not been started yet")
        return f"postgresql://postgres@{self._cfg.host}:{self._port}/postgres"

    @property
    def port(self) -> int:
        return self._port

    @property
    def data_dir(self) -> Path:
        if self._dir is None:
            raise PostgresServerError("the PostgreSQL server has not been started yet")
        return self._dir / "data"

    @property
    def log_path(self) -> Path:
        if self._dir is None:
            raise PostgresServerError("the PostgreSQL server has not been started yet")
        return self._dir / "postgres.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pids(self) -> list[int]:
        """The postmaster and every process it forked (backends, WAL writer, checkpointer…)."""
        if not self.running or self._proc is None:
            return []
        try:
            root = psutil.Process(self._proc.pid)
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    async def __aenter__(self) -> PostgresServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._proc is not None:
            raise PostgresServerError(f"PostgreSQL is already running on port {self._port}")
        bin_dir = find_postgres_bin(self._cfg.bin_dir)
        ids = self._child_ids()
        self._dir = Path(tempfile.mkdtemp(prefix="lotwise-pg-", dir=self._cfg.base_dir))
        try:
            (self._dir / "sock").mkdir()
            if ids is not None:
                # The server's user must own its data directory's parent (initdb creates
                # `data` itself, mode 0700) and the socket directory.
                for p in (self._dir, self._dir / "sock"):
                    os.chown(p, ids[0], ids[1])
            await self._initdb(bin_dir, ids)
            # A free port can be taken between our probe and the server's bind: a few tries.
            for attempt in range(3):
                self._port = self._cfg.port or _free_port(self._cfg.host)
                try:
                    await self._start_postmaster(bin_dir, ids)
                    return
                except PostgresServerError:
                    await self._kill_now()
                    if self._cfg.port or attempt == 2 or "could not bind" not in self._log_tail():
                        raise
        except BaseException:
            await self._kill_now()
            self._remove_dir()
            raise

    async def stop(self) -> None:
        """Fast shutdown (open transactions roll back, a shutdown checkpoint is written),
        bounded by stop_timeout_s; then immediate (SIGQUIT) and SIGKILL; then rm -r."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            if not await _wait_exit(proc, self._cfg.stop_timeout_s):
                await self._kill_now()
        self._proc = None
        self._remove_dir()
        self._port = 0

    # -- internals -----------------------------------------------------------------------

    def _child_ids(self) -> tuple[int, int] | None:
        """(uid, gid) to run the server as, or None to run it as ourselves (not root)."""
        if os.geteuid() != 0:
            return None
        try:
            user = pwd.getpwnam(self._cfg.run_as)
        except KeyError:
            raise PostgresServerError(
                f"running as root, and PostgreSQL refuses to: no user {self._cfg.run_as!r} to run it as "
                "(the Debian postgresql package creates `postgres`; or pass run_as)"
            ) from None
        return user.pw_uid, user.pw_gid

    def _popen_ids(self, ids: tuple[int, int] | None) -> dict[str, Any]:
        if ids is None:
            return {}
        # extra_groups=[] drops root's supplementary groups along with its uid.
        return {"user": ids[0], "group": ids[1], "extra_groups": []}

    async def _initdb(self, bin_dir: Path, ids: tuple[int, int] | None) -> None:
        assert self._dir is not None
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(self._dir / "data"),
            "-U",
            "postgres",
            "--auth=trust",  # loopback and a private socket directory only; a throwaway cluster
            "--encoding=UTF8",
            "--locale=C",  # bytewise text order: the canonical lock order is the same as Python's sort
            # initdb's own fsync of the fresh cluster is skipped (saves seconds per start); the
            # running server's durability settings are untouched by this.
            "--no-sync",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
            **self._popen_ids(ids),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self._cfg.start_timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PostgresServerError(f"initdb did not finish within {self._cfg.start_timeout_s} s") from None
        if proc.returncode != 0:
            raise PostgresServerError(f"initdb failed ({proc.returncode}): {out.decode(errors='replace')[-2000:]}")

    def _settings(self) -> dict[str, str]:
        assert self._dir is not None
        settings = {
            "listen_addresses": self._cfg.host,
            "port": str(self._port),
            "unix_socket_directories": str(self._dir / "sock"),
            "max_connections": str(self._cfg.max_connections),
            "shared_buffers": self._cfg.shared_buffers,
            "max_wal_size": self._cfg.max_wal_size,
            # Durable, and said so (PostgreSQL's defaults; see PostgresServerConfig).
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            # The bench's queries are tiny; JIT would only add compile time to a bad estimate.
            "jit": "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        settings.update(self._cfg.extra_settings)
        return settings

    async def _start_postmaster(self, bin_dir: Path, ids: tuple[int, int] | None) -> None:
        assert self._dir is not None
        argv = [str(bin_dir / "postgres"), "-D", str(self._dir / "data")]
        for key, value in self._settings().items():
            argv += ["-c", f"{key}={value}"]
        with (self._dir / "postgres.log").open("ab") as log:
            # The postmaster is our own child (not daemonized by pg_ctl) so that it dies with
            # us (PDEATHSIG) and its pid is known for CPU sampling.
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - non-blocking spawn; readiness is polled below
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                preexec_fn=pdeathsig_setter(),  # noqa: PLW1509 - adapters.nats.server.pdeathsig_setter; runs after the setuid
                **self._popen_ids(ids),
            )
        deadline = time.monotonic() + self._cfg.start_timeout_s
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PostgresServerError(
                    f"postgres exited with {self._proc.returncode} while starting: {self._log_tail()}"
                )
            try:
                conn = await asyncpg.connect(self.dsn, timeout=max(0.5, deadline - time.monotonic()))
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                # Refused before the socket listens; CannotConnectNowError while it recovers.
                last = exc
                await asyncio.sleep(_POLL_S)
                continue
            await conn.close()
            return
        raise PostgresServerError(
            f"postgres did not accept connections within {self._cfg.start_timeout_s} s ({last!r}): {self._log_tail()}"
        )

    async def _kill_now(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)  # immediate shutdown: the postmaster stops its children
        if not await _wait_exit(proc, 5.0):
            proc.kill()
            await _wait_exit(proc, 5.0)

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        try:
            with (self._dir / "postgres.log").open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# -- the system ----------------------------------------------------------------------------

# fillfactor 70: reserve/commit/release only update `held`, `qty` and `shipped`, none of them
# indexed, so with free room in the page every update is a HOT update (no index writes).
_SCHEMA = """
DROP TABLE IF EXISTS lots, holds, hold_lines;
CREATE TABLE lots (
    sku text NOT NULL,
    site text NOT NULL,
    lot_id text NOT NULL,
    expires_day int NOT NULL,
    qty bigint NOT NULL,
    held bigint NOT NULL DEFAULT 0,
    shipped bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (sku, site, lot_id),
    CONSTRAINT qty_not_negative CHECK (qty >= 0),
    CONSTRAINT held_not_negative CHECK (held >= 0),
    CONSTRAINT held_within_qty CHECK (held <= qty)
) WITH (fillfactor = 70);
CREATE TABLE holds (
    hold_id text PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('active', 'committed', 'released'))
) WITH (fillfactor = 70);
-- No foreign keys: the one transaction that reserves writes a hold and its lines together,
-- and an FK would add a KEY SHARE lock on every referenced row to the hot path.
CREATE TABLE hold_lines (
    hold_id text NOT NULL,
    sku text NOT NULL,
    site text NOT NULL,
    lot_id text NOT NULL,
    qty bigint NOT NULL CHECK (qty > 0),
    PRIMARY KEY (hold_id, sku, site, lot_id)
);
"""

_LOT_COLUMNS = ("sku", "site", "lot_id", "expires_day", "qty", "held", "shipped")

# The order's allocations in one statement: the hold, its lines, and held += n on each lot
# (whose rows this transaction already locked). It returns what it touched, for the invariant.
_RESERVE_WRITE = """
WITH alloc AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS a(sku, site, lot_id, qty)
), h AS (
    INSERT INTO holds (hold_id, state) VALUES ($1, 'active')
), l AS (
    INSERT INTO hold_lines (hold_id, sku, site, lot_id, qty)
    SELECT $1, sku, site, lot_id, qty FROM alloc
    RETURNING 1
), u AS (
    UPDATE lots SET held = lots.held + alloc.qty
    FROM alloc
    WHERE lots.sku = alloc.sku AND lots.site = alloc.site AND lots.lot_id = alloc.lot_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM l) AS lines, (SELECT count(*) FROM u) AS updated
"""


# The one-transaction sale: as the reserve's write, but the hold is born committed and the
# units leave stock at once (qty −= n, shipped += n; held untouched).
_SELL_WRITE = """
WITH alloc AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) AS a(sku, site, lot_id, qty)
), h AS (
    INSERT INTO holds (hold_id, state) VALUES ($1, 'committed')
), l AS (
    INSERT INTO hold_lines (hold_id, sku, site, lot_id, qty)
    SELECT $1, sku, site, lot_id, qty FROM alloc
    RETURNING 1
), u AS (
    UPDATE lots SET qty = lots.qty - alloc.qty, shipped = lots.shipped + alloc.qty
    FROM alloc
    WHERE lots.sku = alloc.sku AND lots.site = alloc.site AND lots.lot_id = alloc.lot_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM l) AS lines, (SELECT count(*) FROM u) AS updated
"""


def _finish_sql(state: str, assignments: str) -> str:
    """Commit or release as one statement (its own transaction): mark the hold `state` if it
    is still active — that locks the hold row, so a second or concurrent call finds it no
    longer active and does nothing — then lock its lots in the canonical order (the same as
    reserve's: no deadlock) and apply `assignments` (k.qty: the line's units) to them."""
    return f"""
WITH h AS (
    UPDATE holds SET state = '{state}' WHERE hold_id = $1 AND state = 'active' RETURNING hold_id
), locked AS MATERIALIZED (
    SELECT l.sku, l.site, l.lot_id, hl.qty
    FROM h
    JOIN hold_lines hl ON hl.hold_id = h.hold_id
    JOIN lots l ON l.sku = hl.sku AND l.site = hl.site AND l.lot_id = hl.lot_id
    ORDER BY l.sku, l.site, l.lot_id
    FOR UPDATE OF l
), u AS (
    UPDATE lots SET {assignments}
    FROM locked k
    WHERE lots.sku = k.sku AND lots.site = k.site AND lots.lot_id = k.lot_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM h) AS finished,
       (SELECT count(*) FROM u) AS updated,
       (SELECT count(*) FROM hold_lines WHERE hold_id = $1) AS lines
"""


_COMMIT = _finish_sql("committed", "qty = lots.qty - k.qty, held = lots.held - k.qty, shipped = lots.shipped + k.qty")
_RELEASE = _finish_sql("released", "held = lots.held - k.qty")

_RECEIVE = """
INSERT INTO lots (sku, site, lot_id, expires_day, qty) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (sku, site, lot_id) DO UPDATE SET qty = lots.qty + EXCLUDED.qty
"""

_AUDIT_PAIRS = """
SELECT sku, site, sum(qty)::bigint AS on_hand, sum(held)::bigint AS held, sum(shipped)::bigint AS shipped
FROM lots GROUP BY sku, site
"""
_AUDIT_OPEN = "SELECT count(*) FROM holds WHERE state = 'active'"
_AUDIT_BAD_ROWS = "SELECT count(*) FROM lots WHERE qty < 0 OR held < 0 OR held > qty"


def _lock_sql(pairs: int) -> str:
    """Lock every lot of `pairs` pairs, in primary-key order. The text depends only on the
    number of pairs, so asyncpg prepares (and caches) one statement per count. The order is
    the primary key, not expiry: an immutable total order every transaction shares is what
    rules deadlocks out; FEFO order is applied in Python to the ≤ a few lots per pair."""
    if not 1 <= pairs <= _MAX_ORDER_PAIRS:
        raise ValueError(f"an order names 1..{_MAX_ORDER_PAIRS} pairs, not {pairs}")
    tuples = ", ".join(f"(${2 * i + 1}, ${2 * i + 2})" for i in range(pairs))
    return (
        "SELECT sku, site, lot_id, expires_day, qty, held FROM lots "
        f"WHERE (sku, site) IN ({tuples}) ORDER BY sku, site, lot_id FOR UPDATE"
    )


Allocation = tuple[str, str, str, int]  # (sku, site, lot_id, units)


def allocate_fefo(lots: Iterable[Iterable[Any]], lines: Sequence[OrderLine]) -> list[Allocation] | None:
    """Take every line's units from its pair's lots, earliest expiry first (ties: lot id),
    cumulatively when several lines name the same pair. `lots`: rows of (sku, site, lot_id,
    expires_day, qty, held). None if any line lacks free units (then nothing is taken).
    Units taken from one lot by several lines are summed into one allocation."""
    by_pair: dict[Pair, list[tuple[int, str, int]]] = {}
    for sku, site, lot_id, expires_day, qty, held in lots:
        by_pair.setdefault((sku, site), []).append((expires_day, lot_id, qty - held))
    for pair_lots in by_pair.values():
        pair_lots.sort()
    taken: dict[tuple[str, str, str], int] = {}
    for line in lines:
        need = line.qty
        for _, lot_id, free in by_pair.get((line.sku, line.site), ()):
            if need == 0:
                break
            key = (line.sku, line.site, lot_id)
            n = min(need, free - taken.get(key, 0))
            if n > 0:
                taken[key] = taken.get(key, 0) + n
                need -= n
        if need > 0:
            return None
    return [(sku, site, lot_id, n) for (sku, site, lot_id), n in taken.items()]


def _check_lines(lines: Sequence[OrderLine]) -> list[Pair]:
    if not lines:
        raise ValueError("an order has at least one line")
    for line in lines:
        if line.qty <= 0:
            raise ValueError(f"line quantities are positive: {line}")
    return sorted({(line.sku, line.site) for line in lines})


class _Refused(Exception):
    """Some line lacks free stock: leave the reserve's transaction (rolled back) by raising."""


@dataclass(slots=True)
class PostgresStats:
    """Counters of one PostgresSystem (this process's pool)."""

    deadlock_retries: int = 0  # transactions retried after DeadlockDetectedError (expected: 0)
    refused: int = 0  # reserves refused for lack of free stock


class PostgresSystem:
    """The PostgreSQL baseline over an asyncpg pool of `pool_size` connections (the load
    generator's concurrency: one connection per closed-loop worker, so no worker ever waits
    for a connection). The pool opens on first use, or with `await open()`."""

    name = "postgres"

    def __init__(self, dsn: str, pool_size: int) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be ≥ 1, not {pool_size}")
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self.stats = PostgresStats()

    async def open(self) -> None:
        await self._get_pool()

    async def __aenter__(self) -> PostgresSystem:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._pool_size,
                    max_size=self._pool_size,
                    server_settings={"application_name": "lotwise-bench"},
                )
            return self._pool

    async def _retrying(self, attempt: Callable[[PoolConnectionProxy], Awaitable[T]]) -> T:
        """Run `attempt` (one whole transaction) on a pooled connection; again after a
        deadlock (PostgreSQL aborted the transaction, so a retry is safe), bounded."""
        pool = await self._get_pool()
        for n in range(_DEADLOCK_ATTEMPTS):
            try:
                async with pool.acquire() as conn:
                    return await attempt(conn)
            except DeadlockDetectedError:
                if n == _DEADLOCK_ATTEMPTS - 1:
                    raise
                self.stats.deadlock_retries += 1
        raise InvariantViolation("unreachable: the last attempt returns or raises")

    async def load(self, data: Dataset) -> None:
        records = [
            (sku, site, lot.lot_id, lot.expires_day, lot.qty, 0, 0) for (sku, site), lots in data.lots for lot in lots
        ]
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(_SCHEMA)
                await conn.copy_records_to_table("lots", records=records, columns=_LOT_COLUMNS)
            # Fresh statistics and visibility map for lots, so the first measured queries
            # neither plan blind nor set hint bits on every page they touch. Not for the
            # (empty) holds tables: analyzed empty, a cached plan would seq-scan them as they
            # grow; never analyzed, the planner assumes ≥ 10 pages and uses their keys.
            await conn.execute("VACUUM (ANALYZE) lots")
        # Statements asyncpg prepared against the dropped tables are invalid now; the pool's
        # other connections would hit "cached plan must not change result type" once.
        await pool.expire_connections()

    async def reserve(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        return await self._hold(hold_id, lines, _RESERVE_WRITE)

    async def sell(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        """The one-transaction sale: lock, FEFO and ship every line, all or nothing (the
        peer of Lotwise's Sell). False: refused for stock, nothing changed."""
        return await self._hold(hold_id, lines, _SELL_WRITE)

    async def _hold(self, hold_id: str, lines: Sequence[OrderLine], write_sql: str) -> bool:
        pairs = _check_lines(lines)
        lock_sql = _lock_sql(len(pairs))
        lock_args = [part for pair in pairs for part in pair]

        async def attempt(conn: PoolConnectionProxy) -> bool:
            try:
                async with conn.transaction():  # any exception rolls back, which also drops the locks
                    rows = await conn.fetch(lock_sql, *lock_args)
                    alloc = allocate_fefo(rows, lines)
                    if alloc is None:
                        raise _Refused
                    skus, sites, lot_ids, units = (list(col) for col in zip(*alloc, strict=True))
                    written = await conn.fetchrow(write_sql, hold_id, skus, sites, lot_ids, units)
                    if written is None or written["lines"] != len(alloc) or written["updated"] != len(alloc):
                        raise InvariantViolation(
                            f"hold {hold_id}: wrote {written and dict(written)} for {len(alloc)} allocations"
                        )
            except _Refused:
                self.stats.refused += 1
                return False
            return True

        return await self._retrying(attempt)

    async def commit(self, hold_id: str) -> None:
        await self._finish(hold_id, _COMMIT)

    async def release(self, hold_id: str) -> None:
        await self._finish(hold_id, _RELEASE)

    async def _finish(self, hold_id: str, sql: str) -> None:
        async def attempt(conn: PoolConnectionProxy) -> None:
            row = await conn.fetchrow(sql, hold_id)
            if row is None or (row["finished"] == 1 and row["updated"] != row["lines"]):
                raise InvariantViolation(f"finishing {hold_id}: {row and dict(row)}")

        await self._retrying(attempt)

    async def receive(self, sku: str, site: str, lot: LotSeed) -> None:
        if lot.qty <= 0:
            raise ValueError(f"a receipt adds a positive quantity: {lot}")

        async def attempt(conn: PoolConnectionProxy) -> None:
            await conn.execute(_RECEIVE, sku, site, lot.lot_id, lot.expires_day, lot.qty)

        await self._retrying(attempt)

    async def audit(self) -> Audit:
        pool = await self._get_pool()
        # One snapshot for the three reads, so they agree with each other.
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(_AUDIT_PAIRS)
            open_holds = await conn.fetchval(_AUDIT_OPEN)
            bad_rows = await conn.fetchval(_AUDIT_BAD_ROWS)
        return Audit(
            pairs={(r["sku"], r["site"]): PairTotals(r["on_hand"], r["held"], r["shipped"]) for r in rows},
            open_holds=int(open_holds),
            negative_rows=int(bad_rows),
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.wait_for(pool.close(), 10.0)


# -- smoke run -----------------------------------------------------------------------------


def deep_dataset(skus: int = 2_000, sites: int = 10, lots_per_pair: int = 3, qty: int = 1_000_000) -> Dataset:
    """Stock no order runs out of; lot numbers deliberately not in expiry order."""
    lots = tuple(
        (
            (f"sku-{k:05d}", f"site-{s:02d}"),
            tuple(LotSeed(f"lot-{n}", 20_000 + (lots_per_pair - n) * 30, qty) for n in range(lots_per_pair)),
        )
        for k in range(skus)
        for s in range(sites)
    )
    return Dataset("pg-smoke-deep", lots)


def _cpu_s_by_pid(pids: Sequence[int]) -> dict[int, float]:
    out: dict[int, float] = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[pid] = t.user + t.system
    return out


async def smoke(workers: int, duration_s: float, skus: int, seed: int) -> dict[str, float]:
    """`workers` closed loops of reserve (1–3 lines, 1–3 units) → commit; an order's latency
    is both calls. Not the bench (the client shares this process): an order of magnitude."""
    data = deep_dataset(skus=skus)
    pairs = data.pairs
    async with PostgresServer() as server, PostgresSystem(server.dsn, workers) as system:
        await system.load(data)
        latencies_ns: list[int] = []
        committed: dict[Pair, int] = {}
        refused = 0
        cpu0 = _cpu_s_by_pid(server.pids())
        deadline = time.monotonic() + duration_s
        started = time.monotonic()

        async def worker(index: int) -> None:
            nonlocal refused
            rng = random.Random(seed * 1_000 + index)
            n = 0
            while time.monotonic() < deadline:
                lines = [OrderLine(*rng.choice(pairs), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
                hold_id = f"smoke-{index}-{n}"
                n += 1
                t0 = time.perf_counter_ns()
                if not await system.reserve(hold_id, lines):
                    refused += 1
                    continue
                await system.commit(hold_id)
                latencies_ns.append(time.perf_counter_ns() - t0)
                for line in lines:
                    committed[(line.sku, line.site)] = committed.get((line.sku, line.site), 0) + line.qty

        await asyncio.gather(*(worker(i) for i in range(workers)))
        elapsed_s = time.monotonic() - started
        # Per pid: a process forked in the window counts from zero; one that exited in it
        # (an autovacuum worker) is missed — small next to the pool's backends.
        cpu1 = _cpu_s_by_pid(server.pids())
        cpu_s = sum(t - cpu0.get(pid, 0.0) for pid, t in cpu1.items())
        from bench.systems import check

        result = check(data, {}, committed, await system.audit())
        latencies_ns.sort()
        count = len(latencies_ns)
        return {
            "workers": workers,
            "orders": count,
            "orders_per_s": count / elapsed_s,
            "latency_ms_p50": latencies_ns[count // 2] / 1e6 if count else float("nan"),
            "latency_ms_p99": latencies_ns[min(count - 1, int(count * 0.99))] / 1e6 if count else float("nan"),
            "refused": refused,
            "deadlock_retries": system.stats.deadlock_retries,
            "postgres_cpu_cores": cpu_s / elapsed_s,
            "check_ok": float(result.ok),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    out = asyncio.run(smoke(args.workers, args.duration_s, args.skus, args.seed))
    for key, value in out.items():
        print(f"{key:>20}: {value:,.2f}")
    return 0 if out["check_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
