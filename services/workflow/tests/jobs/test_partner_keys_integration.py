"""The partner-node key against the real service, Postgres and Redis: kept
in Redis only, handed to the attempt that claims the job, gone once the job
ends (ADR 0006)."""

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
from redis.asyncio import Redis

from comfyserve.contracts.events import JobCompleted, JobCompletedData, JobFinished
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.runtime.redis import redis_client
from comfyserve.workflow.adapters.partner_keys import RedisPartnerKeys
from comfyserve.workflow.app import system_clock
from comfyserve.workflow.errors import PartnerKeysUnavailableError
from comfyserve.workflow.jobs.submission import SubmissionService, SubmitRequest
from comfyserve.workflow.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(settings: Settings):
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def secret() -> str:
    return f"comfyui-partner-{uuid.uuid4().hex}"


def redis_key(settings: Settings, job_id: str) -> str:
    return f"{settings.schema_}:partner-key:{job_id}"


async def submit(stub, marker: str, **fields) -> pb.Job:
    graph = {"1": {"class_type": marker, "inputs": {"label": uuid.uuid4().hex}}}
    response = await stub.SubmitJob(
        pb.SubmitJobRequest(
            tenant_id="tenant-partner", workflow_json=json.dumps(graph), **fields
        )
    )
    assert response.WhichOneof("result") == "job", response
    return response.job


async def rows_holding(db: asyncpg.Connection, value: str) -> list[str]:
    """Every table of the service's schema whose rows mention `value`."""
    tables = await db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    found = []
    for table in (row["tablename"] for row in tables):
        hit = await db.fetchval(
            f'SELECT count(*) FROM "{table}" AS t WHERE t::text LIKE $1',
            f"%{value}%",
        )
        if hit:
            found.append(table)
    return found


async def test_the_key_waits_in_redis_only_and_goes_to_the_claiming_attempt(
    stub, db, redis, settings, private_pool, executor, probe, eventually
):
    pool, marker = private_pool
    key = secret()
    job = await submit(stub, marker, partner_key=key, timeout_seconds=60)

    assert key not in str(job)
    assert await redis.get(redis_key(settings, job.id)) == key.encode()
    # It expires with the job: deadline plus the sweeper's grace.
    expires_ms = await redis.pexpiretime(redis_key(settings, job.id))
    deadline = job.deadline.ToDatetime(tzinfo=UTC).timestamp()
    grace = settings.deadline_grace_seconds
    assert abs(expires_ms / 1000 - (deadline + grace)) < 2
    assert await rows_holding(db, key) == []

    granted = await stub.AcquireJob(
        pb.AcquireJobRequest(worker_id="partner-worker", pool=pool)
    )
    assert granted.assignment.job.id == job.id
    assert granted.assignment.partner_key == key
    read = await stub.GetJob(pb.GetJobRequest(tenant_id=job.tenant_id, job_id=job.id))
    assert key not in str(read)

    await executor(
        JobCompleted(
            source="test",
            subject=job.id,
            tenant_id=job.tenant_id,
            data=JobCompletedData(
                attempt=1, worker_id="partner-worker", outputs=[], duration_ms=5
            ),
        )
    )
    await probe.wait_for(job.id, lambda _t, e: isinstance(e, JobFinished))
    await eventually(
        lambda: redis.exists(redis_key(settings, job.id)), lambda n: n == 0
    )
    assert await rows_holding(db, key) == []
    assert all(key not in str(event) for _, event in probe.events[job.id])


async def test_a_job_without_a_key_is_claimed_without_one(
    stub, private_pool, redis, settings
):
    pool, marker = private_pool
    job = await submit(stub, marker)

    granted = await stub.AcquireJob(pb.AcquireJobRequest(worker_id="w", pool=pool))

    assert granted.assignment.job.id == job.id
    assert not granted.assignment.HasField("partner_key")
    assert not await redis.exists(redis_key(settings, job.id))


async def test_a_replay_keeps_the_first_key_and_a_taken_id_replaces_none(
    stub, private_pool, redis, settings
):
    _, marker = private_pool
    first, second = secret(), secret()
    graph = json.dumps({"1": {"class_type": marker, "inputs": {"label": "same"}}})

    def request(key: str, **fields) -> pb.SubmitJobRequest:
        return pb.SubmitJobRequest(
            tenant_id="tenant-partner", workflow_json=graph, partner_key=key, **fields
        )

    idempotency = uuid.uuid4().hex
    job = (await stub.SubmitJob(request(first, idempotency_key=idempotency))).job
    replay = await stub.SubmitJob(request(second, idempotency_key=idempotency))
    assert (replay.replayed, replay.job.id) == (True, job.id)
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.SubmitJob(request(second, job_id=job.id))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS

    assert await redis.get(redis_key(settings, job.id)) == first.encode()


async def test_a_cancelled_job_forgets_its_key(
    stub, private_pool, redis, settings, eventually
):
    _, marker = private_pool
    job = await submit(stub, marker, partner_key=secret())
    assert await redis.exists(redis_key(settings, job.id))

    await stub.CancelJob(pb.CancelJobRequest(tenant_id=job.tenant_id, job_id=job.id))

    await eventually(
        lambda: redis.exists(redis_key(settings, job.id)), lambda n: n == 0
    )


class RedisAway:
    """`PartnerKeys` while Redis does not answer."""

    async def keep(self, job_id: str, key: str, until: datetime) -> None:
        raise PartnerKeysUnavailableError("ConnectionError")

    async def get(self, job_id: str) -> str | None:
        raise PartnerKeysUnavailableError("ConnectionError")

    async def forget(self, job_ids: Sequence[str]) -> None:
        raise PartnerKeysUnavailableError("ConnectionError")


def with_redis_away(runtime, settings: Settings, files) -> SubmissionService:
    return SubmissionService(
        engine=runtime.engine,
        settings=settings,
        files=files,
        partner_keys=RedisAway(),
        reader=runtime.apis.reader,
        metrics=runtime.metrics,
        source="test",
        clock=system_clock,
    )


async def test_a_submit_whose_key_redis_cannot_keep_stores_nothing(
    runtime, settings, files, private_pool, db
):
    _, marker = private_pool
    job_id = str(uuid.uuid4())
    graph = json.dumps({"1": {"class_type": marker, "inputs": {"label": "x"}}})
    submissions = with_redis_away(runtime, settings, files)

    with pytest.raises(PartnerKeysUnavailableError):
        await submissions.submit(
            SubmitRequest(
                tenant_id="tenant-partner",
                workflow_json=graph,
                job_id=job_id,
                partner_key=secret(),
            )
        )

    assert await db.fetchval("SELECT count(*) FROM jobs WHERE id = $1", job_id) == 0
    # Without a key, Redis is never asked.
    outcome = await submissions.submit(
        SubmitRequest(tenant_id="tenant-partner", workflow_json=graph, job_id=job_id)
    )
    assert outcome.job is not None


async def test_an_unreachable_redis_is_unavailable(settings):
    client = redis_client("redis://127.0.0.1:1/0", timeout_seconds=0.2)
    keys = RedisPartnerKeys(client, settings.schema_)
    try:
        with pytest.raises(PartnerKeysUnavailableError) as away:
            await keys.get(str(uuid.uuid4()))
    finally:
        await client.aclose()
    assert away.value.code == grpc.StatusCode.UNAVAILABLE
