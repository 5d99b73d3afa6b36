"""Federation job store: jobs, chunk audio and chunk results in one shared Redis.

The store is the source of truth and the queue at once: there is no broker stream. Every node's
scheduler *pulls* one chunk at a time with :meth:`RedisJobStore.claim_next_chunk` when it has a
free slot (so a faster node takes more and nobody hoards), and every claim is a *lease*: the
claiming worker renews it every few seconds (:meth:`renew_leases`) and any node's reconciler
(:meth:`requeue_expired`) puts chunks whose lease ran out back in the queue. A chunk that keeps
losing its worker fails its job after ``max_deliveries`` deliveries. All state changes run as
Lua scripts (atomic on the server); the job upload is one MULTI/EXEC transaction.

Times that decide anything (leases, retry back-off, claim order) come from the Redis server's
clock (``TIME``), so nodes with skewed clocks agree. Round-robin order uses a claim counter.

Key layout (``P`` is ``key_prefix``, default ``"sayit:"``)::

    P job:{id}            hash  id model options duration filename status language total_chunks
                                error created_at started_at finished_at last_claim done failed
    P job:{id}:chunks     hash  "{i}:start" "{i}:end" "{i}:status" "{i}:attempts" "{i}:deliveries"
                                "{i}:error" "{i}:worker" "{i}:started_at" "{i}:finished_at"
    P job:{id}:audio      hash  "{i}" -> 16-bit PCM bytes          (deleted when the job ends)
    P job:{id}:results    hash  "{i}" -> segments JSON
    P job:{id}:ready      zset  "{i}" scored by i: queued chunks that may run now
    P job:{id}:delayed    zset  "{i}" scored by not_before: queued chunks waiting for a retry
    P job:{id}:running    set   "{i}" chunks marked running
    P jobs                zset  job id by created_at (every job; stale ids pruned lazily)
    P active:{model}      zset  unfinished job ids of that model, by created_at
    P finished            zset  finished job ids by finished_at
    P leases              zset  "{job id}|{i}" by lease expiry (Redis time)
    P worker:{worker}     set   "{job id}|{i}" chunks a worker holds
    P claimseq            int   claim counter (the "least recently claimed" order)

A finished job's hash, chunks, results and running keys get a PEXPIRE of the retention time,
so Redis forgets them even when no node runs :meth:`delete_finished_before`.

The scripts build key names from the prefix, so this store needs a single Redis (or a
primary/replica pair), not Redis Cluster.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ResponseError

from ..federation.registry import make_redis_client

from .records import (
    CANCELLED,
    CHUNK_DONE,
    CHUNK_FAILED,
    CHUNK_QUEUED,
    CHUNK_RUNNING,
    COMPLETED,
    FAILED,
    MAX_CHUNK_ATTEMPTS,
    QUEUED,
    RUNNING,
    TERMINAL,
    ChunkRecord,
    JobOptions,
    JobRecord,
    retry_delay,
)
from .store import ChunkWork, CorruptChunk, JobStore, QueueCounts, StoreFull, options_or_default, parse_options

log = logging.getLogger(__name__)

__all__ = ["RedisJobStore"]


# --- Lua ---------------------------------------------------------------------------------------
# ARGV[1] is always the key prefix. Helpers shared by every script:
_LUA_PRELUDE = r"""
local P = ARGV[1]
local TERMINAL = {completed = true, failed = true, cancelled = true}
local function now_ts()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function jkey(id) return P .. 'job:' .. id end
local function split(member)
  return string.match(member, '^(.*)|(%d+)$')
end
-- forget the lease on chunk i of job id (and the owner's claim on it)
local function drop_lease(id, i)
  local member = id .. '|' .. i
  redis.call('ZREM', P .. 'leases', member)
  local owner = redis.call('HGET', jkey(id) .. ':chunks', i .. ':worker')
  if owner then redis.call('SREM', P .. 'worker:' .. owner, member) end
end
-- a running chunk goes back to the front of its job's queue; no attempt counted
local function requeue(id, i, undo_delivery)
  local jk = jkey(id)
  local ck = jk .. ':chunks'
  drop_lease(id, i)
  redis.call('SREM', jk .. ':running', i)
  redis.call('HSET', ck, i .. ':status', 'queued')
  redis.call('HDEL', ck, i .. ':worker')
  if undo_delivery then redis.call('HINCRBY', ck, i .. ':deliveries', -1) end
  redis.call('ZADD', jk .. ':ready', tonumber(i), i)
end
-- the job reached a terminal status: drop its leases, audio and queue; expire what stays
local function finish(id, status, now, retention_ms)
  local jk = jkey(id)
  for _, i in ipairs(redis.call('SMEMBERS', jk .. ':running')) do drop_lease(id, i) end
  redis.call('HSET', jk, 'status', status, 'finished_at', now)
  redis.call('DEL', jk .. ':audio', jk .. ':ready', jk .. ':delayed')
  local model = redis.call('HGET', jk, 'model')
  if model then redis.call('ZREM', P .. 'active:' .. model, id) end
  redis.call('ZADD', P .. 'finished', now, id)
  for _, k in ipairs({jk, jk .. ':chunks', jk .. ':results', jk .. ':running'}) do
    redis.call('PEXPIRE', k, retention_ms)
  end
end
"""

# ARGV: P, worker, lease_seconds, n_models, model...
_CLAIM = _LUA_PRELUDE + r"""
local worker = ARGV[2]
local now = now_ts()
local function less(a, b)
  for k = 1, 4 do
    if a[k] ~= b[k] then return a[k] < b[k] end
  end
  return false
end
local best, best_key = nil, nil
local seen = {}
for m = 5, 4 + tonumber(ARGV[4]) do
  local model = ARGV[m]
  if not seen[model] then
    seen[model] = true
    local ak = P .. 'active:' .. model
    for _, id in ipairs(redis.call('ZRANGE', ak, 0, -1)) do
      local jk = jkey(id)
      local h = redis.call('HMGET', jk, 'status', 'last_claim', 'created_at')
      if (not h[1]) or TERMINAL[h[1]] then
        redis.call('ZREM', ak, id)
      else
        local due = redis.call('ZRANGEBYSCORE', jk .. ':delayed', '-inf', now)
        if #due > 0 then
          for _, i in ipairs(due) do redis.call('ZADD', jk .. ':ready', tonumber(i), i) end
          redis.call('ZREMRANGEBYSCORE', jk .. ':delayed', '-inf', now)
        end
        if redis.call('ZCARD', jk .. ':ready') > 0 then
          local key = {redis.call('SCARD', jk .. ':running'), tonumber(h[2] or '0'), tonumber(h[3] or '0'), id}
          if best == nil or less(key, best_key) then best, best_key = id, key end
        end
      end
    end
  end
end
if not best then return false end
local jk = jkey(best)
local ck = jk .. ':chunks'
local i = redis.call('ZPOPMIN', jk .. ':ready')[1]
local member = best .. '|' .. i
redis.call('HSET', ck, i .. ':status', 'running', i .. ':worker', worker, i .. ':started_at', now)
redis.call('HINCRBY', ck, i .. ':deliveries', 1)
redis.call('SADD', jk .. ':running', i)
redis.call('HSET', jk, 'last_claim', redis.call('INCR', P .. 'claimseq'), 'status', 'running')
redis.call('HSETNX', jk, 'started_at', now)
redis.call('ZADD', P .. 'leases', now + tonumber(ARGV[3]), member)
redis.call('SADD', P .. 'worker:' .. worker, member)
return {best, i}
"""

# ARGV: P, job id, index, segments json, retention_ms
_COMPLETE = _LUA_PRELUDE + r"""
local id, i = ARGV[2], ARGV[3]
local jk = jkey(id)
local ck = jk .. ':chunks'
local status = redis.call('HGET', jk, 'status')
if not status then return false end
if TERMINAL[status] then return redis.call('HGETALL', jk) end
local cs = redis.call('HGET', ck, i .. ':status')
if (not cs) or cs == 'done' or cs == 'failed' then return redis.call('HGETALL', jk) end
local now = now_ts()
if cs == 'running' then
  drop_lease(id, i)
  redis.call('SREM', jk .. ':running', i)
else
  redis.call('ZREM', jk .. ':ready', i)
  redis.call('ZREM', jk .. ':delayed', i)
end
redis.call('HSET', ck, i .. ':status', 'done', i .. ':finished_at', now)
redis.call('HDEL', ck, i .. ':error')
redis.call('HSET', jk .. ':results', i, ARGV[4])
local done = redis.call('HINCRBY', jk, 'done', 1)
if done >= tonumber(redis.call('HGET', jk, 'total_chunks')) then
  finish(id, 'completed', now, tonumber(ARGV[5]))
end
return redis.call('HGETALL', jk)
"""

# ARGV: P, job id, index, error, retention_ms, delay after attempt 1, delay after attempt 2, ...
_FAIL = _LUA_PRELUDE + r"""
local id, i, err = ARGV[2], ARGV[3], ARGV[4]
local jk = jkey(id)
local ck = jk .. ':chunks'
local status = redis.call('HGET', jk, 'status')
if not status then return false end
if TERMINAL[status] then return redis.call('HGETALL', jk) end
local cs = redis.call('HGET', ck, i .. ':status')
if (not cs) or cs == 'done' or cs == 'failed' then return redis.call('HGETALL', jk) end
local now = now_ts()
local attempts = redis.call('HINCRBY', ck, i .. ':attempts', 1)
if cs == 'running' then
  drop_lease(id, i)
  redis.call('SREM', jk .. ':running', i)
else
  redis.call('ZREM', jk .. ':ready', i)
  redis.call('ZREM', jk .. ':delayed', i)
end
local delay = ARGV[5 + attempts]
if delay == nil then
  redis.call('HSET', ck, i .. ':status', 'failed', i .. ':error', err, i .. ':finished_at', now)
  redis.call('HINCRBY', jk, 'failed', 1)
  redis.call('HSET', jk, 'error', 'chunk ' .. i .. ' failed ' .. attempts .. ' times: ' .. err)
  finish(id, 'failed', now, tonumber(ARGV[5]))
else
  redis.call('HSET', ck, i .. ':status', 'queued', i .. ':error', err)
  redis.call('HDEL', ck, i .. ':worker')
  redis.call('ZADD', jk .. ':delayed', now + tonumber(delay), i)
end
return redis.call('HGETALL', jk)
"""

# ARGV: P, job id, index
_RELEASE_CHUNK = _LUA_PRELUDE + r"""
local id, i = ARGV[2], ARGV[3]
local jk = jkey(id)
local status = redis.call('HGET', jk, 'status')
if redis.call('HGET', jk .. ':chunks', i .. ':status') ~= 'running' then return 0 end
if (not status) or TERMINAL[status] then drop_lease(id, i) return 0 end
requeue(id, i, true)
return 1
"""

# ARGV: P, worker (or '' for every worker)
_RELEASE_WORKER = _LUA_PRELUDE + r"""
local worker = ARGV[2]
local members
if worker == '' then
  members = redis.call('ZRANGE', P .. 'leases', 0, -1)
else
  members = redis.call('SMEMBERS', P .. 'worker:' .. worker)
end
local n = 0
for _, member in ipairs(members) do
  local id, i = split(member)
  local jk = jkey(id)
  local status = redis.call('HGET', jk, 'status')
  local c = redis.call('HMGET', jk .. ':chunks', i .. ':status', i .. ':worker')
  if status and not TERMINAL[status] and c[1] == 'running' and (worker == '' or c[2] == worker) then
    requeue(id, i, true)
    n = n + 1
  elseif worker == '' then
    redis.call('ZREM', P .. 'leases', member)
  end
end
if worker ~= '' then redis.call('DEL', P .. 'worker:' .. worker) end
return n
"""

# ARGV: P, worker, lease_seconds, mode ('all' | 'held'), grace_seconds, held member...
_RENEW = _LUA_PRELUDE + r"""
local worker = ARGV[2]
local wk = P .. 'worker:' .. worker
local now = now_ts()
local expiry = now + tonumber(ARGV[3])
local held = nil
if ARGV[4] == 'held' then
  held = {}
  for k = 6, #ARGV do held[ARGV[k]] = true end
end
local renewed, released = 0, 0
for _, member in ipairs(redis.call('SMEMBERS', wk)) do
  local id, i = split(member)
  local jk = jkey(id)
  local status = redis.call('HGET', jk, 'status')
  local c = redis.call('HMGET', jk .. ':chunks', i .. ':status', i .. ':worker', i .. ':started_at')
  if (not status) or TERMINAL[status] or c[1] ~= 'running' or c[2] ~= worker then
    redis.call('SREM', wk, member)  -- finished, requeued or taken over by another worker
  elseif held and (not held[member]) and now - tonumber(c[3] or '0') > tonumber(ARGV[5]) then
    requeue(id, i, true)  -- this node no longer runs it (its task died): hand it back
    released = released + 1
  else
    redis.call('ZADD', P .. 'leases', expiry, member)
    renewed = renewed + 1
  end
end
return {renewed, released}
"""

# ARGV: P, max_deliveries, retention_ms
_REQUEUE_EXPIRED = _LUA_PRELUDE + r"""
local now = now_ts()
local max_deliveries = tonumber(ARGV[2])
local n = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now)) do
  local id, i = split(member)
  local jk = jkey(id)
  local ck = jk .. ':chunks'
  local status = redis.call('HGET', jk, 'status')
  local c = redis.call('HMGET', ck, i .. ':status', i .. ':deliveries')
  if (not status) or TERMINAL[status] or c[1] ~= 'running' then
    drop_lease(id, i)
  elseif tonumber(c[2] or '0') >= max_deliveries then
    drop_lease(id, i)
    redis.call('SREM', jk .. ':running', i)
    redis.call('HSET', ck, i .. ':status', 'failed', i .. ':error', 'crashed its worker repeatedly',
               i .. ':finished_at', now)
    redis.call('HINCRBY', jk, 'failed', 1)
    redis.call('HSET', jk, 'error', 'chunk ' .. i .. ' crashed its worker repeatedly')
    finish(id, 'failed', now, tonumber(ARGV[3]))
    n = n + 1
  else
    requeue(id, i, false)  -- a lost worker is not the chunk's fault: no attempt, but a delivery
    n = n + 1
  end
end
return n
"""

# ARGV: P, job id, retention_ms
_CANCEL = _LUA_PRELUDE + r"""
local id = ARGV[2]
local jk = jkey(id)
local status = redis.call('HGET', jk, 'status')
if not status then return false end
if not TERMINAL[status] then
  finish(id, 'cancelled', now_ts(), tonumber(ARGV[3]))
else  -- a finished job keeps its expiry (retention counts from its end)
  redis.call('HSET', jk, 'status', 'cancelled')
end
redis.call('DEL', jk .. ':audio', jk .. ':results')
return redis.call('HGETALL', jk)
"""

# ARGV: P, '(' .. timestamp
_DELETE_FINISHED = _LUA_PRELUDE + r"""
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'finished', '-inf', ARGV[2])) do
  local jk = jkey(id)
  local status = redis.call('HGET', jk, 'status')
  if status and TERMINAL[status] then
    n = n + 1
    redis.call('DEL', jk, jk .. ':chunks', jk .. ':results', jk .. ':audio', jk .. ':ready',
               jk .. ':delayed', jk .. ':running')
  end
  if (not status) or TERMINAL[status] then
    redis.call('ZREM', P .. 'jobs', id)
    redis.call('ZREM', P .. 'finished', id)
  end
end
return n
"""


def _s(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _f(value) -> float | None:
    return None if value is None else float(value)


def _pairs(flat) -> dict[str, bytes]:
    """HGETALL as a flat Lua reply ([k, v, k, v, ...]) or a dict -> {str: bytes}."""
    if isinstance(flat, dict):
        return {_s(k): v for k, v in flat.items()}
    return {_s(flat[k]): flat[k + 1] for k in range(0, len(flat), 2)}


class RedisJobStore(JobStore):
    def __init__(
        self,
        url: str,
        *,
        retention_seconds: float,
        lease_seconds: float = 15.0,
        key_prefix: str = "sayit:",
        memory_budget_bytes: int | None = None,
        max_deliveries: int = MAX_CHUNK_ATTEMPTS + 2,
        retries: int = 20,
    ) -> None:
        self.url = url
        self.retention_seconds = retention_seconds
        self.lease_seconds = lease_seconds
        self.prefix = key_prefix
        self.memory_budget_bytes = memory_budget_bytes
        self.max_deliveries = max_deliveries
        self._r = make_redis_client(url, retries=retries)
        r = self._r
        self._claim = r.register_script(_CLAIM)
        self._complete = r.register_script(_COMPLETE)
        self._fail = r.register_script(_FAIL)
        self._release_chunk = r.register_script(_RELEASE_CHUNK)
        self._release_worker = r.register_script(_RELEASE_WORKER)
        self._renew = r.register_script(_RENEW)
        self._requeue_expired = r.register_script(_REQUEUE_EXPIRED)
        self._cancel = r.register_script(_CANCEL)
        self._delete_finished = r.register_script(_DELETE_FINISHED)
        # retry delays after attempt 1, 2, ... until retry_delay gives up
        self._delays: list[float] = []
        while (d := retry_delay(len(self._delays) + 1)) is not None and len(self._delays) < 100:
            self._delays.append(d)

    @property
    def redis(self) -> aioredis.Redis:
        """The client (bytes responses), e.g. to share with a NodeRegistry."""
        return self._r

    # -- keys and parsing ---------------------------------------------------------------------
    def _jk(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    @property
    def _retention_ms(self) -> int:
        return max(1, math.ceil(self.retention_seconds * 1000))

    def _job_from_hash(self, h: dict[str, bytes]) -> JobRecord | None:
        if not h or "status" not in h:
            return None
        status = _s(h["status"])
        total = int(h.get("total_chunks", 0))
        return JobRecord(
            id=_s(h["id"]),
            model=_s(h["model"]),
            options=options_or_default(h.get("options")),
            duration=float(h["duration"]),
            filename=_s(h.get("filename", b"")),
            status=status,
            language=_s(h.get("language")),
            total_chunks=total,
            completed_chunks=total if status == COMPLETED else int(h.get("done", 0)),
            failed_chunks=int(h.get("failed", 0)),
            error=_s(h.get("error")),
            created_at=float(h["created_at"]),
            started_at=_f(h.get("started_at")),
            finished_at=_f(h.get("finished_at")),
        )

    def _job_reply(self, reply) -> JobRecord | None:
        if not reply:
            return None
        return self._job_from_hash(_pairs(reply))

    # -- interface -----------------------------------------------------------------------------
    async def create_job(self, job: JobRecord, chunks: list[ChunkRecord], audio: list[bytes]) -> None:
        if len(chunks) != len(audio):
            raise ValueError("one audio blob per chunk")
        size = sum(len(a) for a in audio)
        if self.memory_budget_bytes is not None:
            used = int((await self._r.info("memory"))["used_memory"])
            if used + size > self.memory_budget_bytes:
                raise StoreFull(
                    f"Redis holds {used} bytes; {size} more would pass the budget of {self.memory_budget_bytes}"
                )
        p, jk = self.prefix, self._jk(job.id)
        fields: dict[str, object] = {
            "id": job.id, "model": job.model, "options": json.dumps(job.options.to_dict()),
            "duration": job.duration, "filename": job.filename, "status": job.status,
            "total_chunks": len(chunks), "created_at": job.created_at, "last_claim": 0, "done": 0, "failed": 0,
        }
        if job.language is not None:
            fields["language"] = job.language
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hset(jk, mapping=fields)
                pipe.zadd(f"{p}jobs", {job.id: job.created_at})
                if chunks:
                    chunk_fields: dict[str, object] = {}
                    for c in chunks:
                        chunk_fields.update({f"{c.index}:start": c.start, f"{c.index}:end": c.end,
                                             f"{c.index}:status": CHUNK_QUEUED, f"{c.index}:attempts": 0,
                                             f"{c.index}:deliveries": 0})
                    pipe.hset(f"{jk}:chunks", mapping=chunk_fields)
                    pipe.hset(f"{jk}:audio", mapping={str(c.index): pcm for c, pcm in zip(chunks, audio)})
                    pipe.zadd(f"{jk}:ready", {str(c.index): c.index for c in chunks})
                    pipe.zadd(f"{p}active:{job.model}", {job.id: job.created_at})
                else:  # nothing to transcribe (silence): done at once
                    now = time.time()
                    pipe.hset(jk, mapping={"status": COMPLETED, "finished_at": now})
                    pipe.zadd(f"{p}finished", {job.id: now})
                    pipe.pexpire(jk, self._retention_ms)
                await pipe.execute()
        except ResponseError as exc:  # redis-py raises OutOfMemoryError for the queued command's OOM
            if isinstance(exc, OutOfMemoryError) or "OOM" in str(exc) or "maxmemory" in str(exc):
                raise StoreFull("Redis is out of memory (maxmemory reached)") from exc
            raise

    async def get_job(self, job_id: str) -> JobRecord | None:
        return self._job_from_hash(_pairs(await self._r.hgetall(self._jk(job_id))))

    async def list_jobs(self, limit: int = 100) -> list[JobRecord]:
        jobs: list[JobRecord] = []
        start = 0
        key = f"{self.prefix}jobs"
        while len(jobs) < limit:
            ids = await self._r.zrevrange(key, start, start + limit - 1)
            if not ids:
                break
            start += len(ids)
            async with self._r.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self._jk(_s(job_id)))
                hashes = await pipe.execute()
            gone = []
            for job_id, h in zip(ids, hashes):
                job = self._job_from_hash(_pairs(h))
                if job is None:
                    gone.append(job_id)
                elif len(jobs) < limit:
                    jobs.append(job)
            if gone:  # expired by retention
                await self._r.zrem(key, *gone)
                start -= len(gone)
        return jobs

    async def chunks(self, job_id: str) -> list[ChunkRecord]:
        jk = self._jk(job_id)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hgetall(f"{jk}:chunks")
            pipe.hgetall(f"{jk}:results")
            raw, results = await pipe.execute()
        by_index: dict[int, dict[str, bytes]] = {}
        for field, value in raw.items():
            idx, _, name = _s(field).partition(":")
            by_index.setdefault(int(idx), {})[name] = value
        records = []
        for idx in sorted(by_index):
            c = by_index[idx]
            seg = results.get(str(idx).encode())
            records.append(ChunkRecord(
                job_id=job_id, index=idx, start=int(c["start"]), end=int(c["end"]),
                status=_s(c.get("status", CHUNK_QUEUED.encode())), attempts=int(c.get("attempts", 0)),
                error=_s(c.get("error")), segments=None if seg is None else json.loads(seg),
                worker=_s(c.get("worker")), started_at=_f(c.get("started_at")), finished_at=_f(c.get("finished_at")),
            ))
        return records

    async def claim_next_chunk(self, worker: str, models: list[str]) -> tuple[str, int] | None:
        if not models:
            return None
        reply = await self._claim(args=[self.prefix, worker, self.lease_seconds, len(models), *models])
        if not reply:
            return None
        return _s(reply[0]), int(reply[1])

    async def load_chunk(self, job_id: str, index: int) -> ChunkWork | None:
        jk = self._jk(job_id)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hmget(jk, ["status", "model", "language", "options"])
            pipe.hget(f"{jk}:chunks", f"{index}:start")
            pipe.hget(f"{jk}:audio", str(index))
            (status, model, language, options), start, pcm = await pipe.execute()
        if status is None or _s(status) in TERMINAL:
            return None
        if start is None:
            return None  # no such chunk
        if pcm is None:
            raise CorruptChunk(f"chunk {index} has no audio in Redis")
        try:
            offset = int(start)
        except ValueError:
            raise CorruptChunk(f"chunk {index} has a malformed start offset") from None
        if len(pcm) % 2:
            raise CorruptChunk(f"chunk {index} audio is malformed ({len(pcm)} bytes is not 16-bit PCM)")
        return ChunkWork(job_id, index, _s(model), _s(language), parse_options(options), offset, bytes(pcm))

    async def complete_chunk(self, job_id: str, index: int, segments: list[dict]) -> JobRecord | None:
        reply = await self._complete(args=[self.prefix, job_id, index, json.dumps(segments), self._retention_ms])
        return self._job_reply(reply)

    async def fail_chunk(self, job_id: str, index: int, error: str) -> JobRecord | None:
        reply = await self._fail(args=[self.prefix, job_id, index, error, self._retention_ms, *self._delays])
        return self._job_reply(reply)

    async def release_chunk(self, job_id: str, index: int) -> None:
        await self._release_chunk(args=[self.prefix, job_id, index])

    async def cancel_job(self, job_id: str) -> JobRecord | None:
        return self._job_reply(await self._cancel(args=[self.prefix, job_id, self._retention_ms]))

    async def requeue_running(self, worker: str | None = None) -> int:
        """Chunks running for `worker` (or for ANY worker when None) go back to the queue.

        In a federation never call it with None while other nodes run: it takes their chunks.
        """
        return int(await self._release_worker(args=[self.prefix, worker or ""]))

    async def delete_finished_before(self, timestamp: float) -> int:
        return int(await self._delete_finished(args=[self.prefix, f"({timestamp!r}"]))

    async def counts(self) -> QueueCounts:
        jobs = {s: 0 for s in (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)}
        chunks = {s: 0 for s in (CHUNK_QUEUED, CHUNK_RUNNING, CHUNK_DONE, CHUNK_FAILED)}
        key = f"{self.prefix}jobs"
        ids = await self._r.zrange(key, 0, -1)
        if not ids:
            return QueueCounts(jobs=jobs, chunks=chunks)
        async with self._r.pipeline(transaction=False) as pipe:
            for job_id in ids:
                jk = self._jk(_s(job_id))
                pipe.hmget(jk, ["status", "total_chunks", "done", "failed"])
                pipe.scard(f"{jk}:running")
            replies = await pipe.execute()
        gone = []
        for n, job_id in enumerate(ids):
            (status, total, done, failed), running = replies[2 * n], replies[2 * n + 1]
            if status is None:
                gone.append(job_id)
                continue
            status = _s(status)
            jobs[status] = jobs.get(status, 0) + 1
            if status == CANCELLED:
                continue
            total, done, failed = int(total or 0), int(done or 0), int(failed or 0)
            chunks[CHUNK_RUNNING] += running
            chunks[CHUNK_DONE] += done
            chunks[CHUNK_FAILED] += failed
            chunks[CHUNK_QUEUED] += max(0, total - running - done - failed)
        if gone:  # expired by retention
            await self._r.zrem(key, *gone)
        return QueueCounts(jobs=jobs, chunks=chunks)

    async def close(self) -> None:
        await self._r.aclose()

    # -- leases (federation) -------------------------------------------------------------------
    async def renew_leases(self, worker: str, holding: Iterable[tuple[str, int]] | None = None) -> int:
        """Extend the lease of every chunk `worker` holds; returns how many were renewed.

        Call every ~lease_seconds/3. With `holding` (the (job id, index) pairs this node really
        has in flight, e.g. the scheduler's ``in_flight``), chunks the worker holds in Redis but
        no longer runs (their task died before completing) are handed back once they are older
        than one lease, instead of being renewed forever.
        """
        args: list[object] = [self.prefix, worker, self.lease_seconds]
        if holding is None:
            args += ["all", 0]
        else:
            args += ["held", self.lease_seconds, *(f"{job_id}|{index}" for job_id, index in holding)]
        renewed, released = await self._renew(args=args)
        if released:
            log.warning("handed back %d chunks %s held but no longer ran", released, worker)
        return int(renewed)

    async def requeue_expired(self) -> int:
        """Chunks whose lease ran out go back to the queue (no attempt counted); a chunk on its
        ``max_deliveries``-th lost lease fails its job. Returns how many chunks were handled."""
        return int(await self._requeue_expired(args=[self.prefix, self.max_deliveries, self._retention_ms]))

    async def release_worker(self, worker: str) -> int:
        """Graceful stop: every chunk `worker` holds goes back to the queue at once."""
        return int(await self._release_worker(args=[self.prefix, worker]))

    # -- operations ----------------------------------------------------------------------------
    async def diagnose(self) -> dict:
        """Redis facts that matter for SayIt, with warnings for settings that lose work."""
        info = await self._r.info()
        policy = _s(info.get("maxmemory_policy")) or "unknown"
        aof = bool(int(info.get("aof_enabled", 0)))
        result = {
            "redis_version": _s(info.get("redis_version")),
            "used_memory": int(info.get("used_memory", 0)),
            "maxmemory": int(info.get("maxmemory", 0)),
            "maxmemory_policy": policy,
            "aof_enabled": aof,
            "memory_budget_bytes": self.memory_budget_bytes,
            "warnings": [],
        }
        warnings: list[str] = result["warnings"]
        if policy != "noeviction":
            warnings.append(
                f"maxmemory-policy is {policy}: Redis may evict keys when full and silently drop queued "
                "chunks, audio or results; set maxmemory-policy noeviction"
            )
        if not aof:
            warnings.append(
                "appendonly is off: a Redis restart loses every job and queued chunk; set appendonly yes"
            )
        return result
