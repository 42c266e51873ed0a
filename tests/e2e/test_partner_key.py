"""The partner-node key end to end (ADR 0006): a v2 job (with a PreviewImage
beside its SaveImage) and a native prompt carry one and run to completion;
its value is then nowhere to be found: not in any row of the services'
schemas, not in a Kafka record produced while they ran, not in any service's
log, not in Redis once the jobs ended, and not in anything the gateway
answers about them. That ComfyUI receives it in the prompt's `extra_data` is
the executor's engine test (ComfyUI drops it from its own history)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from comfyserve.contracts.topics import ALL_TOPICS
from tests.e2e.support import Product, invert_graph, wait_final

pytestmark = pytest.mark.e2e

PARTNER_KEY = f"comfyui-partner-e2e-{uuid.uuid4().hex}"


@pytest.fixture
async def kafka_from_now(product: Product) -> AsyncIterator[AIOKafkaConsumer]:
    """Every topic, positioned at its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=product.stack["KAFKA_BOOTSTRAP_SERVERS"],
        enable_auto_commit=False,
    )
    await consumer.start()
    partitions = [
        TopicPartition(spec.name, p)
        for spec in ALL_TOPICS
        for p in range(spec.partitions)
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    yield consumer
    await consumer.stop()


async def records_holding(consumer: AIOKafkaConsumer, value: bytes) -> list[str]:
    """Topics of the records since the fixture started that mention `value`."""
    ends = await consumer.end_offsets(list(consumer.assignment()))
    found: list[str] = []
    async with asyncio.timeout(60):
        while [p for p, end in ends.items() if await consumer.position(p) < end]:
            batches = await consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                for record in records:
                    raw = b"".join(
                        [record.key or b"", record.value or b""]
                        + [header for _, header in record.headers]
                    )
                    if value in raw:
                        found.append(partition.topic)
    return found


async def rows_holding(product: Product, value: str) -> list[str]:
    """`schema.table` of every row of the product's schemas mentioning `value`."""
    schemas = [
        service.env[name]
        for service in product.services.services.values()
        for name in ("WORKFLOW_SCHEMA", "STORAGE_SCHEMA", "AUTH_SCHEMA")
        if name in service.env
    ]
    connection = await asyncpg.connect(product.stack["DATABASE_URL"])
    try:
        tables = await connection.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1)",
            schemas,
        )
        found = []
        for schema, table in tables:
            hits = await connection.fetchval(
                f'SELECT count(*) FROM "{schema}"."{table}" AS t WHERE t::text LIKE $1',
                f"%{value}%",
            )
            if hits:
                found.append(f"{schema}.{table}")
        return found
    finally:
        await connection.close()


def logs_holding(product: Product, value: str) -> list[str]:
    service = next(iter(product.services.services.values()))
    return [
        log.name
        for log in sorted(service.log_dir.glob("*.log"))
        if value in log.read_text(errors="replace")
    ]


async def test_the_partner_key_is_never_stored_logged_or_echoed(
    product: Product, kafka_from_now: AIOKafkaConsumer
) -> None:
    extra_data = {"api_key_comfy_org": PARTNER_KEY}
    # A PreviewImage (ComfyUI's temp folder) beside the saved image: it runs,
    # and is no output of the job.
    graph = {
        **invert_graph((10, 20, 30)),
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    async with product.client() as client:
        submitted = await client.post(
            "/api/v2/jobs", json={"workflow": graph, "extra_data": extra_data}
        )
        assert submitted.status_code == 201, submitted.text
        v2_id = submitted.json()["id"]
        queued = await client.post(
            "/prompt",
            json={"prompt": invert_graph((40, 50, 60)), "extra_data": extra_data},
        )
        assert queued.status_code == 200, queued.text
        native_id = queued.json()["prompt_id"]
        answers = [submitted.text, queued.text]
        for job_id in (v2_id, native_id):
            assert (await wait_final(client, job_id))["status"] == "completed"
        for path in (
            f"/api/v2/jobs/{v2_id}",
            f"/api/v2/jobs/{v2_id}/workflow",
            f"/api/v2/jobs/{native_id}",
            f"/api/v2/jobs/{native_id}/workflow",
            f"/history/{native_id}",
            f"/history/{v2_id}",
            "/history",
            "/api/jobs",
            f"/workflows/{v2_id}",
            f"/workflows/{native_id}",
        ):
            answer = await client.get(path)
            assert answer.status_code == 200, path
            answers.append(answer.text)
        v2_job = (await client.get(f"/api/v2/jobs/{v2_id}")).json()
        assert [output["node_id"] for output in v2_job["outputs"]] == ["3"]

    assert all(PARTNER_KEY not in text for text in answers)
    assert await rows_holding(product, PARTNER_KEY) == []
    assert await records_holding(kafka_from_now, PARTNER_KEY.encode()) == []
    assert logs_holding(product, PARTNER_KEY) == []
    schema = product.services["workflow"].env["WORKFLOW_SCHEMA"]
    entries = [f"{schema}:partner-key:{job_id}" for job_id in (v2_id, native_id)]
    redis = Redis.from_url(product.stack["REDIS_URL"])
    try:
        # Deleted once each job's `finished` is relayed, which the final
        # status seen above may precede by moments.
        async with asyncio.timeout(20):
            while True:
                if not await redis.exists(*entries):
                    break
                await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
