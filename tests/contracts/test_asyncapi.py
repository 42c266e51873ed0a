"""The committed AsyncAPI documents: each parses, is the one the generator
writes, and names every topic its service's code uses, and no other."""

from __future__ import annotations

import ast
import functools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyserve.contracts import events, topics
from comfyserve.contracts.topics import DLQ_SUFFIX

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.asyncapi_docs import SERVICES, document  # noqa: E402

COMMITTED = ROOT / "libs" / "contracts" / "asyncapi"


def committed(service: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((COMMITTED / f"{service}.json").read_text())
    return loaded


def addresses(doc: dict[str, Any], action: str) -> set[str]:
    channels = doc["channels"]
    return {
        channels[operation["channel"]["$ref"].rsplit("/", 1)[-1]]["address"]
        for operation in doc["operations"].values()
        if operation["action"] == action
    }


@functools.cache
def fresh(service: str) -> dict[str, Any]:
    return document(service)


def _imported(service: str, module: str) -> Iterator[str]:
    """Names the service's source imports from `module`."""
    source = ROOT / "services" / service / "src"
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                yield from (alias.name for alias in node.names)


def topics_in_code(service: str) -> set[str]:
    """The topics a service names: the topic constants it imports, and the
    topic of every event class it imports (to build or to parse)."""
    found: set[str] = set()
    for name in _imported(service, "comfyserve.contracts.topics"):
        value = getattr(topics, name)
        if isinstance(value, str) and name != "DLQ_SUFFIX":
            found.add(value)
        elif isinstance(value, tuple):
            found.update(value)
    for name in _imported(service, "comfyserve.contracts.events"):
        value = getattr(events, name)
        if isinstance(value, type) and value in events.EVENT_CLASSES:
            found.add(topics.TOPIC_FOR_EVENT_TYPE[events.event_type_of(value)])
    return found


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_committed_document_is_current(service: str) -> None:
    doc = committed(service)

    assert doc["asyncapi"] == "3.0.0"
    assert doc == fresh(service), "stale: run `make gen` and commit it"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_document_names_the_services_topics(service: str) -> None:
    doc = committed(service)
    table = SERVICES[service]

    assert addresses(doc, "receive") == set(table.consumes)
    assert addresses(doc, "send") == set(table.produces)
    plain = {topic for topic in table.topics if not topic.endswith(DLQ_SUFFIX)}
    assert plain == topics_in_code(service)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_message_is_its_topics_event(service: str) -> None:
    doc = committed(service)
    schemas = doc["components"]["schemas"]
    for channel in doc["channels"].values():
        [message] = channel["messages"].values()
        name = message["$ref"].rsplit("/", 1)[-1]
        payload = doc["components"]["messages"][name]["payload"]["$ref"]
        model = payload.rsplit("/", 1)[-1]
        base = channel["address"].removesuffix(DLQ_SUFFIX)
        assert (
            base
            == topics.TOPIC_FOR_EVENT_TYPE[
                schemas[model]["properties"]["type"]["const"]
            ]
        )


def test_a_consumer_of_a_topic_finds_its_producer() -> None:
    produced = {t for s in SERVICES.values() for t in s.produces}
    consumed = {t for s in SERVICES.values() for t in s.consumes}

    # Internal teams produce submit-requested commands; no service does.
    assert consumed - produced == {topics.SUBMIT_REQUESTED}


def test_the_gateway_speaks_no_kafka() -> None:
    assert "gateway" not in SERVICES
    assert topics_in_code("gateway") == set()


def test_every_event_topic_is_documented() -> None:
    documented = {t for s in SERVICES.values() for t in s.topics}

    assert {spec.name for spec in topics.ALL_TOPICS} <= documented
