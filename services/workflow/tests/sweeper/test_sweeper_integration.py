import uuid
from datetime import UTC, datetime, timedelta

import pytest

from comfyserve.contracts.events import JobCancelRequested, JobSubmitted
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.workflow.jobs import repository

pytestmark = pytest.mark.integration


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


async def submit(stub, tenant_id: str, make_workflow, **fields) -> pb.Job:
    request = pb.SubmitJobRequest(
        tenant_id=tenant_id, workflow_json=make_workflow(), timeout_seconds=30, **fields
    )
    return (await stub.SubmitJob(request)).job


async def claim(
    stub, tenant_id: str, job_id: str, worker_id: str
) -> pb.ClaimJobResponse:
    request = pb.ClaimJobRequest(
        tenant_id=tenant_id, job_id=job_id, worker_id=worker_id
    )
    return await stub.ClaimJob(request)


async def get(stub, tenant_id: str, job_id: str) -> pb.Job:
    return await stub.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job_id))


def after_lease(settings) -> datetime:
    """A moment when every lease granted now has lapsed."""
    return datetime.now(UTC) + timedelta(seconds=settings.lease_seconds + 1)


async def renew(stub, worker_id: str, job: pb.Job, attempt: int = 1) -> int:
    answer = await stub.RenewLeases(
        pb.RenewLeasesRequest(
            worker_id=worker_id, leases=[pb.Lease(job_id=job.id, attempt=attempt)]
        )
    )
    return answer.leases[0].state


async def test_jobs_past_their_deadline_fail_with_timeout(
    stub, runtime, settings, probe, db, make_workflow
):
    pending_tenant, running_tenant = tenant(), tenant()
    worker_id = f"live-{uuid.uuid4().hex[:6]}"
    registry = runtime.metrics.registry
    before = {
        name: registry.get_sample_value(name, labels) or 0.0
        for name, labels in (
            ("workflow_sweeper_actions_total", {"kind": "timed_out"}),
            ("workflow_job_queue_wait_seconds_count", {"outcome": "failed"}),
            ("workflow_job_run_duration_seconds_count", {"outcome": "failed"}),
        )
    }
    pending = await submit(stub, pending_tenant, make_workflow)
    running = await submit(stub, running_tenant, make_workflow)
    await claim(stub, running_tenant, running.id, worker_id)
    deadline = running.deadline.ToDatetime(tzinfo=UTC)
    later = deadline + timedelta(seconds=settings.deadline_grace_seconds + 1)

    # Leases are not expired in these passes: only the deadline ends the job.
    await runtime.sweeper.sweep_once(deadline, expire_leases=False)
    assert (await get(stub, pending_tenant, pending.id)).status == pb.JOB_STATUS_PENDING
    assert (await get(stub, running_tenant, running.id)).status == pb.JOB_STATUS_RUNNING

    report = await runtime.sweeper.sweep_once(later, expire_leases=False)
    assert report.timed_out >= 2
    for tenant_id, job in ((pending_tenant, pending), (running_tenant, running)):
        ended = await get(stub, tenant_id, job.id)
        assert ended.status == pb.JOB_STATUS_FAILED
        assert ended.error.code == "timeout"
        assert ended.HasField("completed_at")
    # Both count as timed out and waited; only the one that started ran.
    grown = {
        name: registry.get_sample_value(name, labels) - before[name]
        for name, labels in (
            ("workflow_sweeper_actions_total", {"kind": "timed_out"}),
            ("workflow_job_queue_wait_seconds_count", {"outcome": "failed"}),
            ("workflow_job_run_duration_seconds_count", {"outcome": "failed"}),
        )
    }
    assert grown["workflow_sweeper_actions_total"] >= report.timed_out
    assert grown["workflow_job_queue_wait_seconds_count"] >= 2
    assert grown["workflow_job_run_duration_seconds_count"] >= 1
    # Only the running job's worker is told to stop.
    await probe.wait_for(running.id, lambda _t, e: isinstance(e, JobCancelRequested))
    assert not any(
        isinstance(event, JobCancelRequested) for _, event in probe.events[pending.id]
    )


async def test_a_job_whose_lease_lapsed_is_requeued_and_its_worker_told(
    stub, runtime, settings, probe, make_workflow
):
    tenant_id = tenant()
    lost = await submit(stub, tenant_id, make_workflow)
    alive = await submit(stub, tenant_id, make_workflow)
    await claim(stub, tenant_id, lost.id, "ghost")
    await claim(stub, tenant_id, alive.id, "alive")
    assert await renew(stub, "alive", alive) == pb.LEASE_STATE_HELD
    # Heartbeats on Kafka play no part: only the lease says a worker lives.
    report = await runtime.sweeper.sweep_once(datetime.now(UTC))
    assert (await get(stub, tenant_id, lost.id)).status == pb.JOB_STATUS_RUNNING

    report = await runtime.sweeper.sweep_once(after_lease(settings))

    assert report.requeued >= 1
    requeued = await get(stub, tenant_id, lost.id)
    assert requeued.status == pb.JOB_STATUS_PENDING
    assert requeued.attempt == 1
    await probe.wait_for(
        lost.id, lambda _t, e: isinstance(e, JobSubmitted) and e.data.attempt == 2
    )
    assert await renew(stub, "ghost", lost) == pb.LEASE_STATE_LOST


async def test_a_restarted_worker_with_a_fixed_id_does_not_strand_its_job(
    stub, runtime, settings, make_workflow
):
    # The new process knows nothing of the old job and never renews it.
    tenant_id = tenant()
    job = await submit(stub, tenant_id, make_workflow)
    await claim(stub, tenant_id, job.id, "fixed-id")
    report = await runtime.sweeper.sweep_once(after_lease(settings))

    assert report.requeued >= 1
    assert (await get(stub, tenant_id, job.id)).status == pb.JOB_STATUS_PENDING
    again = await claim(stub, tenant_id, job.id, "fixed-id")
    assert (again.granted, again.attempt) == (True, 2)


async def test_a_lost_job_on_its_last_attempt_fails_with_worker_lost(
    stub, runtime, settings, make_workflow
):
    tenant_id = tenant()
    job = await submit(stub, tenant_id, make_workflow)
    for attempt in range(1, settings.max_attempts + 1):
        assert (await claim(stub, tenant_id, job.id, f"ghost-{attempt}")).granted
        await runtime.sweeper.sweep_once(after_lease(settings))

    await runtime.sweeper.sweep_once(after_lease(settings))

    failed = await get(stub, tenant_id, job.id)
    assert failed.status == pb.JOB_STATUS_FAILED
    assert failed.error.code == "worker_lost"


async def test_a_lost_job_being_cancelled_ends_cancelled(
    stub, runtime, settings, make_workflow
):
    tenant_id = tenant()
    job = await submit(stub, tenant_id, make_workflow)
    await claim(stub, tenant_id, job.id, "ghost")
    await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant_id, job_id=job.id))

    await runtime.sweeper.sweep_once(after_lease(settings))

    assert (await get(stub, tenant_id, job.id)).status == pb.JOB_STATUS_CANCELLED


async def test_idempotency_keys_expire_after_their_lifetime(
    stub, runtime, settings, db, make_workflow
):
    tenant_id = tenant()
    first = await submit(stub, tenant_id, make_workflow, idempotency_key="daily")
    ttl = timedelta(hours=settings.idempotency_ttl_hours)

    report = await runtime.sweeper.sweep_once(
        datetime.now(UTC) + ttl + timedelta(minutes=1), expire_leases=False
    )

    assert report.idempotency_keys_deleted >= 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant_id
        )
        == 0
    )
    second = await submit(stub, tenant_id, make_workflow, idempotency_key="daily")
    assert second.id != first.id


async def test_pools_and_workers_unheard_of_are_forgotten(runtime, settings, db):
    gone, scaled = f"gone-{uuid.uuid4().hex[:6]}", f"kept-{uuid.uuid4().hex[:6]}"
    ttl = timedelta(hours=settings.pool_ttl_hours)
    now = datetime.now(UTC)
    for pool in (gone, scaled):
        await db.execute(
            "INSERT INTO pool_catalogs (pool, worker_id, catalog_hash, object_info,"
            " updated_at) VALUES ($1, 'w', 'h', '{}'::jsonb, $2)",
            pool,
            now - ttl - timedelta(hours=1),
        )
    # A worker of the second pool was heard from lately: its catalog stays.
    await db.execute(
        "INSERT INTO workers (worker_id, pool, last_heartbeat, info)"
        " VALUES ($1, $2, $3, '{}')",
        f"w-{scaled}",
        scaled,
        now,
    )
    await db.execute(
        "INSERT INTO workers (worker_id, pool, last_heartbeat, info)"
        " VALUES ($1, $2, $3, '{}')",
        f"w-{gone}",
        gone,
        now - ttl - timedelta(hours=1),
    )

    report = await runtime.sweeper.sweep_once(now, expire_leases=False)

    assert report.pools_deleted >= 1
    assert report.workers_deleted >= 1
    pools = {row["pool"] for row in await db.fetch("SELECT pool FROM pool_catalogs")}
    assert gone not in pools
    assert scaled in pools
    await db.execute("DELETE FROM pool_catalogs WHERE pool = $1", scaled)
    await db.execute("DELETE FROM workers WHERE pool = $1", scaled)


async def test_expired_idempotency_keys_go_a_bounded_batch_at_a_time(
    stub, runtime, db, make_workflow, monkeypatch
):
    """A backlog of expired keys is deleted oldest first, a batch a statement
    and a few batches a pass, so no pass is one unbounded delete."""
    from comfyserve.workflow.sweeper import service

    tenant_id = tenant()
    for n in range(7):
        await submit(stub, tenant_id, make_workflow, idempotency_key=f"k{n}")
    created = datetime(2000, 1, 1, tzinfo=UTC)
    await db.execute(
        "UPDATE idempotency_keys SET created_at = $2::timestamptz"
        " + make_interval(secs => substr(key, 2)::int) WHERE tenant_id = $1",
        tenant_id,
        created,
    )
    monkeypatch.setattr(service, "_FORGET_BATCH", 2)
    monkeypatch.setattr(service, "_FORGET_ROUNDS", 2)
    # Only this test's keys are that old: every other one was made today.
    before = created + timedelta(days=1)

    forget = repository.delete_expired_idempotency
    assert await runtime.sweeper._forget(forget, before) == 4
    left = await db.fetch(
        "SELECT key FROM idempotency_keys WHERE tenant_id = $1 ORDER BY key",
        tenant_id,
    )
    assert [row["key"] for row in left] == ["k4", "k5", "k6"]

    assert await runtime.sweeper._forget(forget, before) == 3
    assert not await db.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant_id
    )


async def test_finished_jobs_past_retention_go_with_their_events_and_keys(
    stub, runtime, settings, db, make_workflow, monkeypatch
):
    """The history forgets a finished job (its event log and idempotency key
    with it) once it ended `JOB_RETENTION_DAYS` ago, oldest first and a
    bounded batch at a time; a job still queued stays however old."""
    from comfyserve.workflow.sweeper import service

    tenant_id = tenant()
    ended = [
        await submit(stub, tenant_id, make_workflow, idempotency_key=f"old{n}")
        for n in range(3)
    ]
    for job in ended:
        await stub.CancelJob(pb.CancelJobRequest(tenant_id=tenant_id, job_id=job.id))
    queued = await submit(stub, tenant_id, make_workflow)
    # Only this test's jobs end in 2000: every other one ended today.
    await db.execute(
        "UPDATE jobs SET completed_at = timestamptz '2000-01-01' + number * interval"
        " '1 second', created_at = timestamptz '2000-01-01' WHERE tenant_id = $1",
        tenant_id,
    )
    monkeypatch.setattr(service, "_FORGET_BATCH", 2)
    monkeypatch.setattr(service, "_FORGET_ROUNDS", 1)
    now = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
        days=settings.job_retention_days, hours=1
    )

    report = await runtime.sweeper.sweep_once(now, expire_leases=False)

    assert report.jobs_deleted == 2
    kept = await db.fetch("SELECT id FROM jobs WHERE tenant_id = $1", tenant_id)
    assert {str(row["id"]) for row in kept} == {ended[2].id, queued.id}
    for table in ("job_events", "idempotency_keys"):
        orphans = await db.fetchval(
            f"SELECT count(*) FROM {table} t WHERE NOT EXISTS"
            " (SELECT FROM jobs j WHERE j.id = t.job_id)"
        )
        assert orphans == 0, table
    assert (
        await db.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", tenant_id
        )
        == 1
    )
