"""AsyncAPI 3.0 documents of what each service produces and consumes on Kafka.

One table names each service's topics; every topic carries one event class of
`comfyserve.contracts.events`, whose pydantic model is the message payload,
and a DLQ carries its topic's records as they arrived. FastStream's own
AsyncAPI generator renders the documents, from a describing broker per
service: the services' FastStream subscribers decode raw bytes on purpose (a
record that is not even JSON must reach their DLQ), so their signatures name
no model, and the workflow and executor speak aiokafka directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from comfyserve.contracts.events import Event, event_classes_by_type
from comfyserve.contracts.topics import (
    CANCEL_REQUESTED,
    DELIVERIES_DEAD,
    DLQ_SUFFIX,
    FINISHED,
    HEARTBEAT,
    JOB_EVENT_TOPICS,
    NODE_CATALOG,
    PROGRESS,
    REJECTED,
    STARTED,
    SUBMIT_REQUESTED,
    SUBMITTED,
    TOPIC_FOR_EVENT_TYPE,
    dlq,
)

__all__ = ["SERVICES", "ServiceTopics", "document", "generate_asyncapi", "model_of"]

VERSION = "1"
SERVER = "127.0.0.1:19092"


@dataclass(frozen=True, slots=True)
class ServiceTopics:
    """What one service says on Kafka; DLQs are listed among what it produces."""

    description: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self.consumes + self.produces)


_WORKFLOW_CONSUMES = (*JOB_EVENT_TOPICS, HEARTBEAT, NODE_CATALOG, SUBMIT_REQUESTED)
_NOTIFIER_CONSUMES = (FINISHED, STARTED, PROGRESS)

SERVICES: Mapping[str, ServiceTopics] = MappingProxyType(
    {
        "workflow": ServiceTopics(
            "Accepts jobs (gRPC and submit-requested commands), tracks them "
            "from the executors' events and publishes their lifecycle "
            "through its outbox.",
            consumes=_WORKFLOW_CONSUMES,
            produces=(
                SUBMITTED,
                FINISHED,
                CANCEL_REQUESTED,
                REJECTED,
                *(dlq(topic) for topic in _WORKFLOW_CONSUMES),
            ),
        ),
        "executor": ServiceTopics(
            "Runs claimed jobs on ComfyUI and reports them; acts on the cancel "
            "broadcast for the job it runs.",
            consumes=(CANCEL_REQUESTED,),
            produces=(*JOB_EVENT_TOPICS, HEARTBEAT, NODE_CATALOG),
        ),
        "storage": ServiceTopics(
            "Fences a finished job's outputs to the attempt that owns them.",
            consumes=(FINISHED,),
            produces=(dlq(FINISHED),),
        ),
        "notifier": ServiceTopics(
            "Delivers signed webhooks for job events; records each delivery "
            "it gave up on.",
            consumes=_NOTIFIER_CONSUMES,
            produces=(
                DELIVERIES_DEAD,
                *(dlq(topic) for topic in _NOTIFIER_CONSUMES),
            ),
        ),
    }
)
"""Every service with a Kafka client. The gateway has none: it follows jobs
over the workflow service's WatchJob stream."""


def model_of(topic: str) -> type[Event]:
    """The event class a topic (or its DLQ) carries."""
    base = topic.removesuffix(DLQ_SUFFIX)
    by_type = event_classes_by_type()
    [event_type] = [t for t, name in TOPIC_FOR_EVENT_TYPE.items() if name == base]
    return by_type[event_type]


def _summary(topic: str) -> str:
    doc = (model_of(topic).__doc__ or "").split("\n\n")[0]
    text = " ".join(doc.split())
    if topic.endswith(DLQ_SUFFIX):
        return (
            f"Records of {topic.removesuffix(DLQ_SUFFIX)} that could never be "
            "applied, as they arrived, with a `dlq-reason` header."
        )
    return text


def _receiver(model: type[Event]) -> Callable[..., Coroutine[Any, Any, None]]:
    async def receive(event: Any) -> None:
        """Describes a consumer; never called."""

    # FastStream takes a subscriber's payload schema from its first parameter.
    receive.__annotations__ = {"event": model, "return": None}
    return receive


def document(service: str) -> dict[str, Any]:
    """The AsyncAPI document of `service`, as a JSON-compatible dict."""
    from faststream.kafka import KafkaBroker
    from faststream.specification import AsyncAPI

    topics = SERVICES[service]
    broker = KafkaBroker(SERVER, description="The local stack's Kafka (make up).")
    for topic in topics.consumes:
        broker.subscriber(
            topic, title=f"{service}:consumes:{topic}", description=_summary(topic)
        )(_receiver(model_of(topic)))
    for topic in topics.produces:
        broker.publisher(
            topic,
            schema=model_of(topic),
            title=f"{service}:produces:{topic}",
            description=_summary(topic),
        )
    spec = AsyncAPI(
        broker,
        title=f"comfyserve {service}",
        version=VERSION,
        description=topics.description,
        schema_version="3.0.0",
    ).to_specification()
    loaded: dict[str, Any] = json.loads(spec.to_json())
    return loaded


def generate_asyncapi(out: Path) -> Path:
    """Write `<service>.json` for every service; returns the folder."""
    out.mkdir(parents=True, exist_ok=True)
    for service in SERVICES:
        # Sorted: FastStream orders channels by its own registries, not ours.
        text = json.dumps(document(service), indent=2, sort_keys=True)
        (out / f"{service}.json").write_text(text + "\n")
    return out
