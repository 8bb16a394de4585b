"""Redis as a `bench.systems.System`: reserve, commit and release as Lua scripts, the way
flash-sale systems hold stock, driven by the same kind of asyncio client (`redis.asyncio`).

`RedisServer` starts the bench's own redis-server on 127.0.0.1 and a free port, in two
modes. `durable=False` keeps everything in memory (`--save "" --appendonly no`): the
fastest Redis. `durable=True` is `--appendonly yes --appendfsync always`: Redis writes the
commands of each event-loop turn to the AOF and fsyncs it before it sends those commands'
replies (a group commit), so every acknowledged reserve/commit/release is on disk. Lotwise
journals durably, so that is the fair Redis to beat.

Data model (one Redis instance, so an order's keys may span any number of pairs: no
cluster hash slots to keep together; the commit and release scripts reach the keys named
in the hold record, which a single instance allows):

- `lot:{sku}|{site}` hash, two fields a lot: `q:{lot_id}` (units on hand, held included)
  and `h:{lot_id}` (units held). A lot both empty and unheld is deleted on commit, so FEFO
  scans stay short in scarce runs.
- `fefo:{sku}|{site}` sorted set of lot ids scored by `expires_day`. Redis orders equal
  scores by member, so FEFO order is (expires_day, lot_id): total, and independent of lot
  numbering (which the workloads deliberately shuffle).
- `ship:{sku}|{site}` string: units committed at the pair since the load.
- `hold:{hold_id}` hash: `state` (active | committed | released | refused) and, while
  active, `alloc`: JSON `[pair, lot_id, units, …]`, what the hold holds lot by lot.
- `pairs` set of every `{sku}|{site}` loaded or received: what `audit` reads. It lives in
  Redis rather than in this object because the load generator's process, not the one
  that loaded, may receive stock.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from bench.systems import Audit, Dataset, LotSeed, OrderLine, Pair, PairTotals

REDIS_SERVER = "/usr/bin/redis-server"
LOAD_CHUNK_PAIRS = 1_000  # pairs a pipeline round trip while loading (3 commands each)
AUDIT_CHUNK = 1_000  # pairs (or hold keys) a pipeline round trip while auditing
SCAN_COUNT = 1_000
MAX_AUDIT_SCANS = 1_000_000  # a bound on the SCAN loop: 10⁹ holds is far beyond any run

# Shared by the scripts: Lua numbers are doubles, and Redis turns a number argument of
# redis.call into text its own way; `%d` keeps every count an exact integer in the text
# HINCRBY reads (deep lots hold 10⁹ units).
_LUA_INT = "local function int(n) return string.format('%d', n) end\n"

# KEYS[1] = hold:{id}; KEYS[2i], KEYS[2i+1] = lot:{pair}, fefo:{pair} of line i;
# ARGV[i] = units of line i. Plans every line first (cumulatively: two lines on one pair
# see each other's units in `taken`), writes only if all fit: all or nothing. A hold id
# seen before gets its first answer back, whatever the lines, so a retried reserve
# cannot hold twice.
RESERVE_LUA = (
    _LUA_INT
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state then
  if state == 'refused' then return 0 end
  return 1
end
local CHUNK = 8
local taken = {}
local alloc = {}
for i = 1, #ARGV do
  local lot_key, fefo_key = KEYS[2 * i], KEYS[2 * i + 1]
  local need = tonumber(ARGV[i])
  if not need or need <= 0 or need % 1 ~= 0 then
    return redis.error_reply('reserve: line ' .. i .. ' wants ' .. tostring(ARGV[i]) .. ' units')
  end
  local pair = string.sub(lot_key, 5)
  local count = redis.call('ZCARD', fefo_key)
  local start = 0
  while need > 0 and start < count do
    local ids = redis.call('ZRANGE', fefo_key, start, start + CHUNK - 1)
    if #ids == 0 then break end
    local fields = {}
    for j, id in ipairs(ids) do
      fields[2 * j - 1] = 'q:' .. id
      fields[2 * j] = 'h:' .. id
    end
    local v = redis.call('HMGET', lot_key, unpack(fields))
    for j, id in ipairs(ids) do
      local seen = lot_key .. '\\n' .. id
      local free = tonumber(v[2 * j - 1] or 0) - tonumber(v[2 * j] or 0) - (taken[seen] or 0)
      if free > 0 then
        local take = math.min(free, need)
        taken[seen] = (taken[seen] or 0) + take
        alloc[#alloc + 1] = pair
        alloc[#alloc + 1] = id
        alloc[#alloc + 1] = take
        need = need - take
        if need == 0 then break end
      end
    end
    start = start + CHUNK
  end
  if need > 0 then
    redis.call('HSET', KEYS[1], 'state', 'refused')
    return 0
  end
end
for i = 1, #alloc, 3 do
  redis.call('HINCRBY', 'lot:' .. alloc[i], 'h:' .. alloc[i + 1], int(alloc[i + 2]))
end
redis.call('HSET', KEYS[1], 'state', 'active', 'alloc', cjson.encode(alloc))
return 1
"""
)

# KEYS[1] = hold:{id}. Returns the hold's state after the call ('committed' when done
# now or before: a second commit is a no-op), or nil for an unknown hold. Scripts do not
# roll back on error, so the invariant check runs after every write and reports (the
# audit then shows the damage) instead of stopping halfway through the hold.
COMMIT_LUA = (
    _LUA_INT
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'active' then return state end
local alloc = cjson.decode(redis.call('HGET', KEYS[1], 'alloc'))
local broken = nil
for i = 1, #alloc, 3 do
  local pair, id, units = alloc[i], alloc[i + 1], int(alloc[i + 2])
  local lot_key = 'lot:' .. pair
  local qty = redis.call('HINCRBY', lot_key, 'q:' .. id, '-' .. units)
  local held = redis.call('HINCRBY', lot_key, 'h:' .. id, '-' .. units)
  redis.call('INCRBY', 'ship:' .. pair, units)
  if qty < 0 or held < 0 or held > qty then
    broken = pair .. ' lot ' .. id .. ': qty ' .. qty .. ', held ' .. held
  elseif qty == 0 and held == 0 then
    redis.call('HDEL', lot_key, 'q:' .. id, 'h:' .. id)
    redis.call('ZREM', 'fefo:' .. pair, id)
  end
end
redis.call('HSET', KEYS[1], 'state', 'committed')
redis.call('HDEL', KEYS[1], 'alloc')
if broken then return redis.error_reply('commit ' .. KEYS[1] .. ' broke an invariant: ' .. broken) end
return 'committed'
"""
)

# KEYS[1] = hold:{id}. Gives an active hold's units back; any other known state is left
# as it is (releasing twice, or after a commit, is a no-op) and returned; nil if unknown.
RELEASE_LUA = (
    _LUA_INT
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'active' then return state end
local alloc = cjson.decode(redis.call('HGET', KEYS[1], 'alloc'))
local broken = nil
for i = 1, #alloc, 3 do
  local held = redis.call('HINCRBY', 'lot:' .. alloc[i], 'h:' .. alloc[i + 1], '-' .. int(alloc[i + 2]))
  if held < 0 then broken = alloc[i] .. ' lot ' .. alloc[i + 1] .. ': held ' .. held end
end
redis.call('HSET', KEYS[1], 'state', 'released')
redis.call('HDEL', KEYS[1], 'alloc')
if broken then return redis.error_reply('release ' .. KEYS[1] .. ' broke an invariant: ' .. broken) end
return 'released'
"""
)

# KEYS = lot:{pair}, fefo:{pair}, pairs; ARGV = pair, lot_id, units, expires_day. One
# script so a receipt is atomic (no FEFO entry without its units). ZADD NX: a lot's
# expiry is set when it first arrives; a later receipt of that lot only adds units.
RECEIVE_LUA = """
redis.call('HINCRBY', KEYS[1], 'q:' .. ARGV[2], ARGV[3])
redis.call('HSETNX', KEYS[1], 'h:' .. ARGV[2], 0)
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

PAIRS_KEY = "pairs"


def _reserve_call(hold_id: str, lines: Sequence[OrderLine]) -> tuple[list[str], list[int]]:
    """The reserve script's keys (the hold, then each line's lot hash and FEFO set) and args."""
    if not lines:
        raise ValueError(f"reserve {hold_id!r}: no lines")
    keys = [f"hold:{hold_id}"]
    args: list[int] = []
    for line in lines:
        if line.qty <= 0:
            raise ValueError(f"reserve {hold_id!r}: {line.sku}@{line.site} wants {line.qty} units")
        tag = pair_tag(line.sku, line.site)
        keys += (f"lot:{tag}", f"fefo:{tag}")
        args.append(line.qty)
    return keys, args


def _held(hold_id: str, reply: Any) -> bool:
    if reply not in (0, 1):
        raise RedisError(f"reserve {hold_id!r}: unexpected reply {reply!r}")
    return reply == 1


class HoldStateError(Exception):
    """Commit or release of a hold that cannot take it: unknown (`state` None), or a
    commit of a released or refused hold."""

    def __init__(self, hold_id: str, state: str | None, op: str) -> None:
        super().__init__(f"{op} {hold_id!r}: hold is {state or 'unknown'}")
        self.hold_id = hold_id
        self.state = state
        self.op = op


def pair_tag(sku: str, site: str) -> str:
    # The audit splits a tag at its first '|', so a sku must not contain one.
    if "|" in sku:
        raise ValueError(f"sku {sku!r} contains '|', the pair separator of the Redis keys")
    return f"{sku}|{site}"


def _pair_of(tag: str) -> Pair:
    sku, site = tag.split("|", 1)
    return sku, site


class RedisSystem:
    """One worker pool's view of a Redis server. `pool_size` is the load generator's
    concurrency, so no worker ever waits for a connection (the pool blocks, bounded by
    `timeout_s`, rather than fail if one ever did)."""

    def __init__(self, url: str, pool_size: int, name: str = "redis", *, timeout_s: float = 30.0) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be ≥ 1, got {pool_size}")
        self.name = name
        # No retries: a reserve retried after a timeout might have run already (the hold
        # id makes that safe, a receipt's HINCRBY is not), and the bench counts every
        # failure as one, as it does for Lotwise's NO_RETRY client.
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._redis = Redis(connection_pool=self._pool)
        # EVALSHA after the first call (the script objects load themselves on NOSCRIPT).
        self._reserve = self._redis.register_script(RESERVE_LUA)
        self._commit = self._redis.register_script(COMMIT_LUA)
        self._release = self._redis.register_script(RELEASE_LUA)
        self._receive = self._redis.register_script(RECEIVE_LUA)

    @property
    def redis(self) -> Redis:
        """The client itself (tests use it to look at, or corrupt, the raw keys)."""
        return self._redis

    async def load(self, data: Dataset) -> None:
        """FLUSHDB (the server is the bench's own), then every pair in pipelined chunks."""
        await self._redis.flushdb()
        for script in (RESERVE_LUA, COMMIT_LUA, RELEASE_LUA, RECEIVE_LUA):
            await self._redis.script_load(script)
        for start in range(0, len(data.lots), LOAD_CHUNK_PAIRS):
            pipe = self._redis.pipeline(transaction=False)
            tags = []
            for (sku, site), lots in data.lots[start : start + LOAD_CHUNK_PAIRS]:
                tag = pair_tag(sku, site)
                tags.append(tag)
                if not lots:
                    continue
                fields: dict[str, int] = {}
                for lot in lots:
                    if lot.qty < 0:
                        raise ValueError(f"{tag} lot {lot.lot_id}: negative opening stock {lot.qty}")
                    fields[f"q:{lot.lot_id}"] = fields.get(f"q:{lot.lot_id}", 0) + lot.qty
                    fields[f"h:{lot.lot_id}"] = 0
                # The stub's Mapping is invariant in its key: a str-keyed dict is one of the mappings it takes.
                pipe.hset(f"lot:{tag}", mapping=cast("dict[FieldT, EncodableT]", fields))
                pipe.zadd(f"fefo:{tag}", {lot.lot_id: lot.expires_day for lot in lots})
            if tags:
                pipe.sadd(PAIRS_KEY, *tags)
            await pipe.execute()

    async def reserve(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        keys, args = _reserve_call(hold_id, lines)
        return _held(hold_id, await self._reserve(keys=keys, args=args))

    # ---- the lean driver: many orders per round trip (bench.suite --batch) ----

    async def reserve_many(self, orders: Sequence[tuple[str, Sequence[OrderLine]]]) -> list[bool]:
        """Several holds in one round trip: a pipeline of the same script calls, each still
        atomic on its own. Less client CPU per order, so the server's own ceiling shows."""
        pipe = self._redis.pipeline(transaction=False)
        for hold_id, lines in orders:
            keys, args = _reserve_call(hold_id, lines)
            await self._reserve(keys=keys, args=args, client=pipe)
        replies = await pipe.execute()
        return [_held(hold_id, reply) for (hold_id, _), reply in zip(orders, replies, strict=True)]

    async def finish_many(self, commits: Sequence[str], releases: Sequence[str]) -> None:
        """Commit and release several holds in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for hold_id in commits:
            await self._commit(keys=[f"hold:{hold_id}"], client=pipe)
        for hold_id in releases:
            await self._release(keys=[f"hold:{hold_id}"], client=pipe)
        replies = await pipe.execute()
        for hold_id, state in zip(commits, replies[: len(commits)], strict=True):
            if state != "committed":
                raise HoldStateError(hold_id, state, "commit")
        for hold_id, state in zip(releases, replies[len(commits) :], strict=True):
            if state is None:
                raise HoldStateError(hold_id, None, "release")

    async def commit(self, hold_id: str) -> None:
        state = await self._commit(keys=[f"hold:{hold_id}"])
        if state != "committed":
            raise HoldStateError(hold_id, state, "commit")

    async def release(self, hold_id: str) -> None:
        state = await self._release(keys=[f"hold:{hold_id}"])
        if state is None:
            raise HoldStateError(hold_id, None, "release")

    async def receive(self, sku: str, site: str, lot: LotSeed) -> None:
        if lot.qty <= 0:
            raise ValueError(f"receive {sku}@{site} lot {lot.lot_id}: {lot.qty} units")
        tag = pair_tag(sku, site)
        await self._receive(
            keys=[f"lot:{tag}", f"fefo:{tag}", PAIRS_KEY], args=[tag, lot.lot_id, lot.qty, lot.expires_day]
        )

    async def audit(self) -> Audit:
        """Per pair on hand/held (summed over its lots) and shipped; holds still active
        (SCAN over `hold:*`: the holds' own states, not a counter the scripts keep); lot
        rows below zero or over-held. Meant for a quiet server, after a run."""
        # decode_responses=True (see __init__): members come back as str, which the stub cannot know.
        tags = sorted(cast("set[str]", await self._redis.smembers(PAIRS_KEY)))
        pairs: dict[Pair, PairTotals] = {}
        negative_rows = 0
        for start in range(0, len(tags), AUDIT_CHUNK):
            chunk = tags[start : start + AUDIT_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            for tag in chunk:
                pipe.hgetall(f"lot:{tag}")
            pipe.mget([f"ship:{tag}" for tag in chunk])
            *rows, shipped = await pipe.execute()
            for tag, row, ship in zip(chunk, rows, shipped, strict=True):
                on_hand = held = 0
                for field, value in row.items():
                    if not field.startswith("q:"):
                        continue
                    qty, h = int(value), int(row.get("h:" + field[2:], 0))
                    on_hand += qty
                    held += h
                    if qty < 0 or h < 0 or h > qty:
                        negative_rows += 1
                pairs[_pair_of(tag)] = PairTotals(on_hand, held, int(ship or 0))
        return Audit(pairs, open_holds=await self._count_active_holds(), negative_rows=negative_rows)

    async def _count_active_holds(self) -> int:
        active = 0
        cursor = 0
        for _ in range(MAX_AUDIT_SCANS):
            cursor, keys = await self._redis.scan(cursor, match="hold:*", count=SCAN_COUNT)
            if keys:
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.hget(key, "state")
                active += sum(1 for state in await pipe.execute() if state == "active")
            if cursor == 0:
                return active
        raise RuntimeError(f"audit: SCAN over hold:* did not finish in {MAX_AUDIT_SCANS} calls")

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.aclose()


class RedisServer:
    """The bench's own redis-server on 127.0.0.1, a free port and a temp dir (removed on
    stop). Use as `async with RedisServer(durable=True) as server: server.url`."""

    def __init__(
        self,
        durable: bool,
        *,
        binary: str = REDIS_SERVER,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
        start_attempts: int = 3,
    ) -> None:
        self.durable = durable
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.start_attempts = start_attempts
        self.port = 0
        self.dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("redis-server not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def pids(self) -> list[int]:
        """The server's pid and its children's (an AOF rewrite forks one), for psutil."""
        if self._proc is None or self._proc.returncode is not None:
            return []
        import psutil

        try:
            children = psutil.Process(self._proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [self._proc.pid, *(c.pid for c in children)]

    def args(self, port: int, data_dir: Path) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        return [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--dir", str(data_dir),
            "--save", "",  # no RDB snapshots in either mode: the AOF is the durable one
            *persistence,
            "--daemonize", "no",
            "--logfile", str(data_dir / "redis.log"),
        ]  # fmt: skip

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("redis-server already started")
        self.dir = Path(tempfile.mkdtemp(prefix="lotwise-bench-redis-"))
        failure = ""
        # The port is free when picked but another process may take it before redis-server
        # binds it: try a bounded number of ports.
        for _ in range(self.start_attempts):
            port = _free_port()
            self._proc = await asyncio.create_subprocess_exec(
                *self.args(port, self.dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            failure = await self._wait_ready(port)
            if not failure:
                self.port = port
                return
            await self._kill(grace=False)
        log = self.dir / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self._remove_dir()
        raise RuntimeError(f"redis-server did not start ({failure}); log tail:\n{tail}")

    async def _wait_ready(self, port: int) -> str:
        """'' once PING answers; else why not (the process exited, or the time ran out)."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("redis-server not running")
        client = _admin_client(port, timeout_s=1.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        try:
            while loop.time() < deadline:
                if proc.returncode is not None:
                    return f"exited with {proc.returncode}"
                with contextlib.suppress(RedisError, OSError):
                    if await client.ping():
                        return ""
                await asyncio.sleep(0.05)
            return f"no PING reply in {self.start_timeout_s} s"
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            client = _admin_client(self.port, timeout_s=self.stop_timeout_s)
            with contextlib.suppress(RedisError, OSError):
                await client.shutdown(nosave=True)
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
            await self._kill()
        self.port = 0
        self._remove_dir()

    async def _kill(self, grace: bool = True) -> None:
        """Wait for the process to exit (after SHUTDOWN, if `grace`), then terminate it,
        then kill it: each step bounded by `stop_timeout_s`."""
        proc = self._proc
        self._proc = None
        if proc is None:
            return
        steps = (None, proc.terminate, proc.kill) if grace else (proc.terminate, proc.kill)
        for signal_it in steps:
            if proc.returncode is not None:
                return
            if signal_it is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
        if proc.returncode is None:
            raise RuntimeError(f"redis-server pid {proc.pid} did not exit after SIGKILL")

    def _remove_dir(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _admin_client(port: int, timeout_s: float) -> Redis:
    # No retries: SHUTDOWN drops the connection by design, and a start-up PING that fails
    # is retried by the caller's bounded loop (redis-py's default retries back off for
    # seconds).
    return Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


__all__ = ["HoldStateError", "RedisServer", "RedisSystem", "pair_tag"]
