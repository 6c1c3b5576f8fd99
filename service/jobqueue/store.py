"""The job store is also the queue: every replica and worker sees the same records, and a runner takes the
oldest queued job with one atomic claim (`claim_next`), so there is no message to lose beside a record.

    SqliteStore   <jobs_dir>/jobs.sqlite3: the embedded default, one machine (any number of processes)
    RedisStore    the broker's Redis: every replica and worker, on any machine

Both keep: the job records (state, progress, partial result, result, error, artifact names, which worker
runs it and its last heartbeat), the uploaded inputs of queued jobs (pickled, with a TTL, deleted when the
job starts or ends), and the live workers (for the queue bound). Every state change is conditional
(`update_if`): a cancel and a finishing worker can race, and the first one wins.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from service.jobqueue.model import ACTIVE, FINISHED, QUEUED, RUNNING, Job, StorageUnavailable

UNCLAIMED = ""  # update_if(worker=UNCLAIMED): only a job no runner holds


class JobStore(ABC):
    """The primitives differ per backend; the operations built on them are shared."""

    name: str

    # ---------------------------------------------------------------- primitives

    @abstractmethod
    def create(self, job: Job, inputs: bytes | None, max_active: int, input_ttl_s: int) -> bool:
        """Insert a queued job (and its inputs) unless `max_active` jobs are already queued or running."""

    @abstractmethod
    def claim_next(self, worker: str) -> Job | None:
        """The oldest queued job no runner holds, now held by `worker` (one atomic step), or None."""

    @abstractmethod
    def get(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def jobs(self) -> list[Job]:
        """Every job, newest first."""

    @abstractmethod
    def active(self) -> list[Job]:
        """Queued and running jobs."""

    @abstractmethod
    def update_if(
        self, job_id: str, states: Iterable[str], changes: dict[str, Any], worker: str | None = None
    ) -> tuple[bool, str | None]:
        """Apply `changes` if the job is in one of `states` (and held by `worker`, when given; by no runner
        for UNCLAIMED). Returns (applied, the state now; None when there is no such job)."""

    @abstractmethod
    def take_inputs(self, job_id: str) -> bytes | None:
        """The job's inputs, deleted from the store (None when absent or expired)."""

    @abstractmethod
    def drop_inputs(self, job_id: str) -> None: ...

    @abstractmethod
    def delete(self, job_ids: list[str]) -> None: ...

    @abstractmethod
    def register_worker(self, worker: str, slots: int, lease_s: float = 60) -> None:
        """A runner says it is alive and how many jobs it runs at once (renewed every few seconds; silent
        for `lease_s`, it no longer counts)."""

    @abstractmethod
    def unregister_worker(self, worker: str) -> None: ...

    @abstractmethod
    def workers(self, lease_s: float) -> dict[str, int]:
        """Workers seen within `lease_s`: id -> slots."""

    def sweep(self) -> None:  # noqa: B027 - optional: expire what the backend does not expire by itself
        """Delete expired inputs where the backend has no TTL of its own."""

    def close(self) -> None:  # noqa: B027
        pass

    # ---------------------------------------------------------------- operations

    def claim(self, job_id: str, worker: str) -> bool:
        """`worker` holds this queued job (a lease) until it starts it; a runner that dies meanwhile loses
        the claim to the reaper (`unclaim`), and the job is queued again."""
        changes = {"worker": worker, "heartbeat": time.time()}
        return self.update_if(job_id, (QUEUED,), changes, worker=UNCLAIMED)[0]

    def unclaim(self, job_id: str, worker: str) -> bool:
        """Back to the head of the queue, for the next runner."""
        return self.update_if(job_id, (QUEUED,), {"worker": None, "heartbeat": None}, worker=worker)[0]

    def start(self, job_id: str, worker: str) -> bool:
        now = time.time()
        changes = {"state": RUNNING, "started": now, "heartbeat": now}
        return self.update_if(job_id, (QUEUED,), changes, worker=worker)[0]

    def heartbeat(
        self, job_id: str, worker: str, changes: dict[str, Any] | None = None, state: str = RUNNING
    ) -> str | None:
        """Renew the lease of the job `worker` holds in `state` (and record progress); returns the job's
        state, so the caller learns about a cancel from any replica (or that it lost its claim: the job is
        then still queued but no longer its own)."""
        applied, now_state = self.update_if(
            job_id, (state,), {**(changes or {}), "heartbeat": time.time()}, worker=worker
        )
        return now_state if applied or now_state != state else "lost"

    def finish(
        self,
        job_id: str,
        state: str,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        artifacts: list[str] | None = None,
        worker: str | None = None,
    ) -> bool:
        """Active -> finished, once: the first of cancel, result, failure or reaper wins."""
        assert state in FINISHED
        changes: dict[str, Any] = {"state": state, "finished": time.time()}
        if error is not None:
            changes["error"] = error
        if result is not None:
            changes["result"] = result
            changes["progress"] = 1.0
        if artifacts is not None:
            changes["artifacts"] = artifacts
        applied = self.update_if(job_id, ACTIVE, changes, worker=worker)[0]
        if applied:
            self.drop_inputs(job_id)
        return applied

    def set_artifacts(self, job_id: str, artifacts: list[str]) -> None:
        """After a cancel won the race, the files already written are still listed."""
        self.update_if(job_id, FINISHED, {"artifacts": artifacts})

    def counts(self) -> dict[str, int]:
        active = self.active()
        return {
            "running": sum(j.state == RUNNING for j in active),
            "queued": sum(j.state == QUEUED for j in active),
        }

    def prune(self, keep: int) -> list[str]:
        """Forget the oldest finished jobs beyond `keep`; returns their ids (the caller deletes files)."""
        finished = [j for j in self.jobs() if j.state in FINISHED]  # newest first
        old = [j.id for j in finished[keep:]]
        if old:
            self.delete(old)
        return old


# -------------------------------------------------------------------- SQLite


class SqliteStore(JobStore):
    """One SQLite file (WAL), safe across threads and processes of one machine."""

    name = "sqlite"
    SCHEMA = (
        "create table if not exists jobs (id text primary key, created real not null, state text not null,"
        " worker text, record text not null)",
        "create index if not exists jobs_state on jobs (state)",
        "create table if not exists inputs (job_id text primary key, data blob not null,"
        " expires real not null)",
        "create table if not exists workers (id text primary key, slots integer not null,"
        " seen real not null)",
    )

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self._conn.execute("pragma journal_mode=wal")
            self._conn.execute("pragma synchronous=normal")
            with self._tx() as c:
                for sql in self.SCHEMA:
                    c.execute(sql)
        except (OSError, sqlite3.Error) as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: read-check-write is atomic across processes)."""
        with self._lock:
            try:
                self._conn.execute("begin immediate")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("rollback")
                    raise
                self._conn.execute("commit")
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"job store {self.path}: {exc}") from exc

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"job store {self.path}: {exc}") from exc

    @staticmethod
    def _record(job: Job) -> str:
        return json.dumps(job.record(), allow_nan=False)

    def _row(self, job: Job) -> tuple:
        return (job.id, job.created, job.state, job.worker, self._record(job))

    def create(self, job: Job, inputs: bytes | None, max_active: int, input_ttl_s: int) -> bool:
        with self._tx() as c:
            (active,) = c.execute("select count(*) from jobs where state in ('queued', 'running')").fetchone()
            if active >= max_active:
                return False
            c.execute("insert into jobs values (?, ?, ?, ?, ?)", self._row(job))
            if inputs is not None:
                c.execute("insert into inputs values (?, ?, ?)", (job.id, inputs, time.time() + input_ttl_s))
        return True

    def claim_next(self, worker: str) -> Job | None:
        waiting = "select record from jobs where state = 'queued' and worker is null order by created limit 1"
        if not self._query(waiting):  # a plain read first: an idle runner polls without a write lock
            return None
        with self._tx() as c:
            row = c.execute(waiting).fetchone()
            if row is None:
                return None
            job = Job.from_record({**json.loads(row[0]), "worker": worker, "heartbeat": time.time()})
            c.execute(
                "update jobs set worker = ?, record = ? where id = ?", (worker, self._record(job), job.id)
            )
        return job

    def get(self, job_id: str) -> Job | None:
        rows = self._query("select record from jobs where id = ?", (job_id,))
        return Job.from_record(json.loads(rows[0][0])) if rows else None

    def jobs(self) -> list[Job]:
        rows = self._query("select record from jobs order by created desc")
        return [Job.from_record(json.loads(r)) for (r,) in rows]

    def active(self) -> list[Job]:
        rows = self._query("select record from jobs where state in ('queued', 'running') order by created")
        return [Job.from_record(json.loads(r)) for (r,) in rows]

    def update_if(
        self, job_id: str, states: Iterable[str], changes: dict[str, Any], worker: str | None = None
    ) -> tuple[bool, str | None]:
        with self._tx() as c:
            row = c.execute("select record from jobs where id = ?", (job_id,)).fetchone()
            if row is None:
                return False, None
            job = Job.from_record(json.loads(row[0]))
            if job.state not in tuple(states) or (worker is not None and job.worker != (worker or None)):
                return False, job.state
            job = Job.from_record({**job.record(), **changes})
            c.execute(
                "update jobs set state = ?, worker = ?, record = ? where id = ?",
                (job.state, job.worker, self._record(job), job_id),
            )
            return True, job.state

    def take_inputs(self, job_id: str) -> bytes | None:
        with self._tx() as c:
            row = c.execute("select data, expires from inputs where job_id = ?", (job_id,)).fetchone()
            c.execute("delete from inputs where job_id = ?", (job_id,))
        if row is None or row[1] < time.time():
            return None
        return bytes(row[0])

    def drop_inputs(self, job_id: str) -> None:
        with self._tx() as c:
            c.execute("delete from inputs where job_id = ?", (job_id,))

    def delete(self, job_ids: list[str]) -> None:
        with self._tx() as c:
            c.executemany("delete from jobs where id = ?", [(i,) for i in job_ids])
            c.executemany("delete from inputs where job_id = ?", [(i,) for i in job_ids])

    def register_worker(self, worker: str, slots: int, lease_s: float = 60) -> None:
        with self._tx() as c:
            c.execute("insert or replace into workers values (?, ?, ?)", (worker, slots, time.time()))

    def unregister_worker(self, worker: str) -> None:
        with self._tx() as c:
            c.execute("delete from workers where id = ?", (worker,))

    def workers(self, lease_s: float) -> dict[str, int]:
        rows = self._query("select id, slots from workers where seen >= ?", (time.time() - lease_s,))
        return dict(rows)

    def sweep(self) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("delete from inputs where expires < ?", (now,))
            c.execute("delete from workers where seen < ?", (now - 3600,))

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


# -------------------------------------------------------------------- Redis

# Each script is one step in Redis and in its append-only file: a record and its place in the queue are
# written, and survive a restart, together.

# KEYS: active set, all-jobs zset, job hash, inputs key, queue list
# ARGV: max_active, id, created, input ttl, inputs ("" = none), field/value pairs...
_CREATE = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[4]) end
redis.call('RPUSH', KEYS[5], ARGV[2])
return 1
"""

# KEYS: queue list; ARGV: job key prefix, worker (JSON), heartbeat (JSON). Ids of jobs cancelled or
# claimed meanwhile are dropped on the way.
_CLAIM_NEXT = """
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then return false end
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'state') == '"queued"' and redis.call('HGET', key, 'worker') == 'null' then
    redis.call('HSET', key, 'worker', ARGV[2], 'heartbeat', ARGV[3])
    return id
  end
end
"""

# KEYS: job hash, active set, queue list
# ARGV: allowed states (comma-separated, JSON-encoded like the fields), required worker ("" = any; JSON),
#       job id, field/value pairs... A queued job whose runner let go (worker set to null) goes back to the
#       head of the queue.
_UPDATE_IF = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, false} end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == state then ok = true end
end
if ok and ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] then ok = false end
if not ok then return {0, state} end
if #ARGV >= 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
state = redis.call('HGET', KEYS[1], 'state')
if state ~= '"queued"' and state ~= '"running"' then redis.call('SREM', KEYS[2], ARGV[3]) end
if state == '"queued"' and redis.call('HGET', KEYS[1], 'worker') == 'null' then
  redis.call('LREM', KEYS[3], 0, ARGV[3])
  redis.call('LPUSH', KEYS[3], ARGV[3])
end
return {1, state}
"""


class RedisStore(JobStore):
    """Keys under `masklite:`: job:<id> (a hash, each field JSON), jobs (zset by creation time),
    jobs:active (set), queue (list of queued job ids, oldest first), input:<id> (pickled inputs, EX ttl),
    worker:<id> (its slots, EX the lease: Redis forgets a silent worker by itself)."""

    name = "redis"
    PREFIX = "masklite:"

    def __init__(self, url: str):
        try:
            import redis
        except ImportError as exc:  # extra `scale`
            raise StorageUnavailable(
                "MASKLITE_BROKER_URL needs the redis client: pip install 'masklite[scale]'"
            ) from exc
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.url = url
        self.r = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=10, retry_on_timeout=True
        )
        self._create = self.r.register_script(_CREATE)
        self._claim_next = self.r.register_script(_CLAIM_NEXT)
        self._update_if = self.r.register_script(_UPDATE_IF)

    def _k(self, *parts: str) -> str:
        return self.PREFIX + ":".join(parts)

    @contextlib.contextmanager
    def _errors_as_unavailable(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StorageUnavailable(f"job broker unreachable ({type(exc).__name__}: {exc})") from exc

    @staticmethod
    def _pairs(fields: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for key, value in fields.items():
            out += [key, json.dumps(value, allow_nan=False)]
        return out

    @staticmethod
    def _job(raw: dict[bytes, bytes]) -> Job | None:
        if not raw:
            return None
        return Job.from_record({k.decode(): json.loads(v) for k, v in raw.items()})

    def create(self, job: Job, inputs: bytes | None, max_active: int, input_ttl_s: int) -> bool:
        keys = [self._k("jobs", "active"), self._k("jobs"), self._k("job", job.id), self._k("input", job.id),
                self._k("queue")]  # fmt: skip
        args = [max_active, job.id, job.created, input_ttl_s, inputs or b"", *self._pairs(job.record())]
        with self._errors_as_unavailable():
            return bool(self._create(keys=keys, args=args))

    def claim_next(self, worker: str) -> Job | None:
        args = [self._k("job", ""), json.dumps(worker), json.dumps(time.time())]
        with self._errors_as_unavailable():
            job_id = self._claim_next(keys=[self._k("queue")], args=args)
        return self.get(job_id.decode()) if job_id else None

    def get(self, job_id: str) -> Job | None:
        with self._errors_as_unavailable():
            return self._job(self.r.hgetall(self._k("job", job_id)))

    def _many(self, ids: list[bytes]) -> list[Job]:
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._k("job", job_id.decode()))
        return [j for j in (self._job(raw) for raw in pipe.execute()) if j is not None]

    def jobs(self) -> list[Job]:
        with self._errors_as_unavailable():
            return self._many(self.r.zrevrange(self._k("jobs"), 0, -1))

    def active(self) -> list[Job]:
        with self._errors_as_unavailable():
            jobs = self._many(list(self.r.smembers(self._k("jobs", "active"))))
        return sorted(jobs, key=lambda j: j.created)

    def update_if(
        self, job_id: str, states: Iterable[str], changes: dict[str, Any], worker: str | None = None
    ) -> tuple[bool, str | None]:
        allowed = ",".join(json.dumps(s) for s in states)
        keys = [self._k("job", job_id), self._k("jobs", "active"), self._k("queue")]
        required = "" if worker is None else json.dumps(worker or None)  # UNCLAIMED: the field is null
        args = [allowed, required, job_id, *self._pairs(changes)]
        with self._errors_as_unavailable():
            applied, state = self._update_if(keys=keys, args=args)
        return bool(applied), (json.loads(state) if state else None)

    def take_inputs(self, job_id: str) -> bytes | None:
        with self._errors_as_unavailable():
            return self.r.getdel(self._k("input", job_id))

    def drop_inputs(self, job_id: str) -> None:
        with self._errors_as_unavailable():
            self.r.delete(self._k("input", job_id))

    def delete(self, job_ids: list[str]) -> None:
        with self._errors_as_unavailable():
            pipe = self.r.pipeline()
            for job_id in job_ids:
                pipe.delete(self._k("job", job_id), self._k("input", job_id))
                pipe.zrem(self._k("jobs"), job_id)
                pipe.srem(self._k("jobs", "active"), job_id)
                pipe.lrem(self._k("queue"), 0, job_id)
            pipe.execute()

    def register_worker(self, worker: str, slots: int, lease_s: float = 60) -> None:
        with self._errors_as_unavailable():
            self.r.set(self._k("worker", worker), slots, px=max(1, int(lease_s * 1000)))

    def unregister_worker(self, worker: str) -> None:
        with self._errors_as_unavailable():
            self.r.delete(self._k("worker", worker))

    def workers(self, lease_s: float) -> dict[str, int]:
        """The registrations that have not expired (each lives `lease_s` of its runner's settings)."""
        prefix = self._k("worker", "")
        with self._errors_as_unavailable():
            keys = list(self.r.scan_iter(match=prefix + "*", count=100))
            slots = self.r.mget(keys) if keys else []
        return {k.decode()[len(prefix) :]: int(n) for k, n in zip(keys, slots, strict=True) if n is not None}

    def ping(self) -> None:
        with self._errors_as_unavailable():
            self.r.ping()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.r.close()


def open_store(broker_url: str | None, jobs_dir: Path) -> JobStore:
    """The Redis store when a broker is configured, else SQLite beside the artifacts."""
    if broker_url:
        return RedisStore(broker_url)
    return SqliteStore(Path(jobs_dir) / "jobs.sqlite3")
