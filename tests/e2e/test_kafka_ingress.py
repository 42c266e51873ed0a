"""Internal teams' way in: submit-requested commands on Kafka, authenticated
by the credential in their headers, followed on the job topics; a refusal is
a rejected event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)

from comfyserve.contracts.events import (
    AnyEvent,
    JobCompleted,
    JobRejected,
    RejectionCode,
    SubmitRequested,
    SubmitRequestedData,
    dump_event,
    parse_event,
    submitted_job_id,
)
from comfyserve.contracts.topics import COMPLETED, REJECTED
from tests.e2e.support import Product, invert_graph, job_ids, wait_final

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIMIT_S = 120
PASSWORD = "correct horse battery staple"
SCOPES = ["workflows:write", "workflows:read", "files:read"]


@dataclass(frozen=True)
class Team:
    """An internal team: a tenant of the auth service, and an API key of it."""

    tenant_id: str
    key: str


async def sign_up_team(product: Product, scopes: list[str]) -> Team:
    email = f"team-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        registered = await anonymous.post(
            "/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        tokens = await anonymous.post(
            "/auth/token", data={"username": email, "password": PASSWORD}
        )
        assert tokens.status_code == 200, tokens.text
    async with product.client(tokens.json()["access_token"]) as owner:
        created = await owner.post(
            "/auth/api-keys", json={"name": "ingest", "scopes": scopes}
        )
    assert created.status_code == 201, created.text
    return Team(registered.json()["tenant_id"], created.json()["secret"])


@pytest.fixture
async def team(product: Product) -> Team:
    return await sign_up_team(product, SCOPES)


class Topics:
    """Every event on `topics` from the moment it started."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.seen: list[AnyEvent] = []

    async def run(self) -> None:
        async for record in self._consumer:
            self.seen.append(parse_event(record.value))

    async def first(self, kind: type[Any], subject: str) -> Any:
        async with asyncio.timeout(LIMIT_S):
            while True:
                for event in self.seen:
                    if isinstance(event, kind) and event.subject == subject:
                        return event
                await asyncio.sleep(0.2)


@pytest.fixture
async def producer(product: Product) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(
        bootstrap_servers=product.stack["KAFKA_BOOTSTRAP_SERVERS"], acks="all"
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest.fixture
async def events(product: Product, producer: AIOKafkaProducer) -> AsyncIterator[Topics]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=product.stack["KAFKA_BOOTSTRAP_SERVERS"]
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in (REJECTED, COMPLETED)
            for partition in await producer.partitions_for(topic)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            # Fixes each position now, before any command is produced.
            await consumer.position(partition)
        topics = Topics(consumer)
        task = asyncio.create_task(topics.run())
        yield topics
        task.cancel()
    finally:
        await consumer.stop()


def ingress_topic(product: Product) -> str:
    return product.services.services["workflow"].env["WORKFLOW_INGRESS_TOPIC"]


async def send(
    product: Product,
    producer: AIOKafkaProducer,
    request_id: str,
    workflow: dict[str, Any],
    *,
    credential: str | None,
    **fields: Any,
) -> None:
    command = SubmitRequested(
        source="e2e/team-a",
        subject=request_id,
        data=SubmitRequestedData(request_id=request_id, workflow=workflow, **fields),
    )
    headers = (
        []
        if credential is None
        else [("authorization", f"Bearer {credential}".encode())]
    )
    await producer.send_and_wait(
        ingress_topic(product),
        dump_event(command),
        key=request_id.encode(),
        headers=headers,
    )


def rejections(events: Topics, request_id: str) -> list[JobRejected]:
    return [
        e for e in events.seen if isinstance(e, JobRejected) and e.subject == request_id
    ]


async def test_a_command_runs_a_job_end_to_end(
    product: Product, producer: AIOKafkaProducer, events: Topics, team: Team
) -> None:
    request_id = f"e2e-{uuid.uuid4()}"
    job_id = str(submitted_job_id(team.tenant_id, request_id))

    await send(
        product,
        producer,
        request_id,
        invert_graph((10, 20, 30)),
        credential=team.key,
        metadata={"via": "kafka"},
    )

    completed = await events.first(JobCompleted, job_id)
    assert completed.tenant_id == team.tenant_id
    assert [output.node_id for output in completed.data.outputs] == ["3"]
    async with product.client(team.key) as client:
        job = await wait_final(client, job_id)
    assert job["status"] == "completed", job
    assert job["metadata"] == {"via": "kafka"}
    assert rejections(events, request_id) == []


async def test_a_bad_graph_is_rejected_with_node_errors(
    product: Product, producer: AIOKafkaProducer, events: Topics, team: Team
) -> None:
    request_id = f"e2e-{uuid.uuid4()}"
    graph = invert_graph((0, 0, 0))
    graph["2"]["class_type"] = "NoSuchNode"

    await send(product, producer, request_id, graph, credential=team.key)

    rejected = await events.first(JobRejected, request_id)
    assert rejected.data.code is RejectionCode.INVALID_WORKFLOW
    assert rejected.tenant_id == team.tenant_id
    assert rejected.data.error is not None
    kinds = {rejected.data.error["type"]}
    for entry in rejected.data.node_errors.values():
        kinds |= {item["type"] for item in entry["errors"]}
    assert "missing_node_type" in kinds
    async with product.client(team.key) as client:
        assert await job_ids(client) == set()


async def test_a_repeated_request_id_is_one_job(
    product: Product, producer: AIOKafkaProducer, events: Topics, team: Team
) -> None:
    request_id = f"e2e-{uuid.uuid4()}"
    job_id = str(submitted_job_id(team.tenant_id, request_id))

    for _ in range(3):
        await send(
            product, producer, request_id, invert_graph((1, 2, 3)), credential=team.key
        )
    # The same request id with another body is refused; being on the same
    # partition, its refusal comes after the three repeats were handled.
    await send(
        product, producer, request_id, invert_graph((3, 2, 1)), credential=team.key
    )

    rejected = await events.first(JobRejected, request_id)
    assert rejected.data.code is RejectionCode.IDEMPOTENCY_KEY_REUSE
    await events.first(JobCompleted, job_id)
    async with product.client(team.key) as client:
        assert await job_ids(client) == {job_id}
    assert len(rejections(events, request_id)) == 1


@pytest.mark.parametrize("credential", [None, "csk_not_a_key_of_this_product"])
async def test_a_command_without_a_valid_credential_is_rejected(
    product: Product,
    producer: AIOKafkaProducer,
    events: Topics,
    credential: str | None,
) -> None:
    request_id = f"e2e-{uuid.uuid4()}"
    value = invert_graph((0, 0, 0))

    await send(product, producer, request_id, value, credential=credential)

    rejected = await events.first(JobRejected, request_id)
    assert rejected.data.code is RejectionCode.UNAUTHENTICATED
    assert rejected.tenant_id is None


async def test_a_key_without_the_submit_scope_is_forbidden(
    product: Product, producer: AIOKafkaProducer, events: Topics
) -> None:
    reader = await sign_up_team(product, ["workflows:read"])
    request_id = f"e2e-{uuid.uuid4()}"

    await send(
        product, producer, request_id, invert_graph((0, 0, 0)), credential=reader.key
    )

    rejected = await events.first(JobRejected, request_id)
    assert rejected.data.code is RejectionCode.FORBIDDEN
    assert "workflows:write" in rejected.data.message
    async with product.client(reader.key) as client:
        assert await job_ids(client) == set()
