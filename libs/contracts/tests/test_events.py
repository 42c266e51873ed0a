import json
from datetime import datetime

import pytest
from pydantic import ValidationError

from comfyserve.contracts.events import (
    EVENT_CLASSES,
    TERMINAL_EVENT_TYPES,
    Event,
    JobCompleted,
    JobProgressData,
    JobStarted,
    JobSubmitted,
    SubmitRequested,
    dump_event,
    event_classes_by_type,
    event_type_of,
    parse_event,
    parse_job_event,
    submitted_job_id,
)

from .conftest import make_all_events, make_submitted


def test_every_event_class_has_a_sample() -> None:
    assert {type(e) for e in make_all_events()} == set(EVENT_CLASSES)


def test_round_trip(any_event: Event) -> None:
    parsed = parse_event(dump_event(any_event))

    assert type(parsed) is type(any_event)
    assert parsed == any_event


def test_parse_accepts_str() -> None:
    event = make_submitted()

    assert parse_event(dump_event(event).decode()) == event


def test_dump_is_json_envelope() -> None:
    event = make_submitted()

    body = json.loads(dump_event(event))

    assert body["type"] == "workflow.job.submitted.v2"
    assert body["subject"] == "job-1"
    assert body["id"] == str(event.id)
    assert body["data"]["priority"] == "normal"


def test_unknown_fields_are_ignored() -> None:
    body = json.loads(dump_event(make_submitted()))
    body["specversion"] = "1.0"
    body["data"]["future_field"] = {"x": 1}

    parsed = parse_event(json.dumps(body))

    assert parsed == make_submitted().model_copy(update={"id": parsed.id})


def test_unknown_event_type_is_rejected() -> None:
    body = json.loads(dump_event(make_submitted()))
    body["type"] = "workflow.job.teleported"

    with pytest.raises(ValidationError):
        parse_event(json.dumps(body))


def test_naive_datetime_is_rejected() -> None:
    body = json.loads(dump_event(make_submitted()))
    body["time"] = "2026-01-02T03:04:05"

    with pytest.raises(ValidationError, match="timezone"):
        parse_event(json.dumps(body))


def test_naive_deadline_is_rejected() -> None:
    body = json.loads(dump_event(make_submitted()))
    body["data"]["deadline"] = "2026-01-02T03:04:05"

    with pytest.raises(ValidationError, match="timezone"):
        parse_event(json.dumps(body))


def test_defaults_fill_envelope() -> None:
    started = JobStarted.model_validate(
        {
            "source": "executor/w1",
            "subject": "job-1",
            "data": {"attempt": 1, "worker_id": "w1"},
        }
    )
    other = JobStarted.model_validate(started.model_dump())

    assert started.type == "executor.job.started"
    assert started.time.tzinfo is not None
    assert started.tenant_id is None
    assert started.id != JobStarted(source="s", subject="j", data=started.data).id
    assert other == started


def test_events_are_frozen() -> None:
    event = make_submitted()

    with pytest.raises(ValidationError):
        event.subject = "other"  # type: ignore[misc]


def test_fraction_is_bounded() -> None:
    with pytest.raises(ValidationError):
        JobProgressData(
            attempt=1, worker_id="w", fraction=1.5, nodes_done=0, nodes_total=1
        )


def test_parse_job_event_accepts_executor_job_events_only() -> None:
    completed = next(e for e in make_all_events() if isinstance(e, JobCompleted))

    assert parse_job_event(dump_event(completed)) == completed
    with pytest.raises(ValidationError):
        parse_job_event(dump_event(make_submitted()))


def test_event_types_are_unique_and_named_by_owner() -> None:
    types = [event_type_of(cls) for cls in EVENT_CLASSES]

    assert len(set(types)) == len(types)
    assert set(event_classes_by_type()) == set(types)
    assert all(t.split(".")[0] in {"workflow", "executor", "notifier"} for t in types)


def test_terminal_event_types() -> None:
    assert TERMINAL_EVENT_TYPES == {
        "executor.job.completed",
        "executor.job.failed",
        "executor.job.cancelled",
    }
    assert TERMINAL_EVENT_TYPES <= set(event_classes_by_type())


def test_new_payload_fields_have_defaults() -> None:
    # Every optional-looking (nullable) field must be omittable, or adding it
    # would have broken old producers.
    for cls in EVENT_CLASSES:
        data_model = cls.model_fields["data"].annotation
        assert isinstance(data_model, type)
        for name, field in data_model.model_fields.items():
            if field.is_required():
                assert "None" not in str(field.annotation), (cls, name)


def test_time_is_timezone_aware_by_default() -> None:
    event = JobSubmitted(source="s", subject="j", data=make_submitted().data)

    assert isinstance(event.time, datetime)
    assert event.time.utcoffset() is not None


def test_a_submit_command_is_keyed_by_its_request_id() -> None:
    command = next(e for e in make_all_events() if isinstance(e, SubmitRequested))
    body = json.loads(dump_event(command))
    body["subject"] = "another"

    with pytest.raises(ValidationError, match="subject must be the request id"):
        parse_event(json.dumps(body))


def test_a_submitted_job_id_is_one_per_tenant_and_request() -> None:
    assert submitted_job_id("t1", "r") == submitted_job_id("t1", "r")
    assert submitted_job_id("t1", "r") != submitted_job_id("t2", "r")
    assert submitted_job_id("t1", "r") != submitted_job_id("t1", "r2")
