"""What a submit-requested command becomes, with hand-written fakes for the
credential check and the submission path."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from comfyserve.contracts.events import (
    JobRejected,
    Priority,
    RejectionCode,
    SubmitRequested,
    SubmitRequestedData,
    dump_event,
    submitted_job_id,
)
from comfyserve.contracts.scopes import SERVICE_SCOPE
from comfyserve.runtime.auth import Principal, PrincipalKind, Unauthenticated
from comfyserve.workflow.errors import (
    CatalogUnavailableError,
    InvalidArgumentError,
    QueueFullError,
)
from comfyserve.workflow.ingress.service import (
    Accepted,
    Command,
    IngressService,
    Refused,
    Unreadable,
)
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.submission import SubmitOutcome, SubmitRequest

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
NODE_ERRORS = {
    "error": {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    },
    "node_errors": {"1": {"errors": [], "dependent_outputs": [], "class_type": "X"}},
}


def key_principal(*scopes: str, tenant: str = "t1") -> Principal:
    return Principal(
        kind=PrincipalKind.API_KEY,
        subject="key:k1",
        tenant_id=tenant,
        scopes=frozenset(scopes or {"workflows:write"}),
    )


class FakeVerifier:
    def __init__(self, known: dict[str, Principal]) -> None:
        self.known = known

    async def verify(self, credential: str) -> Principal:
        try:
            return self.known[credential]
        except KeyError:
            raise Unauthenticated("unknown") from None


class FakeSubmissions:
    """Accepts every request, or answers `errors`, or raises `error`."""

    def __init__(
        self, *, errors: dict | None = None, error: Exception | None = None
    ) -> None:
        self.requests: list[SubmitRequest] = []
        self.errors = errors
        self.error = error

    async def submit(self, request: SubmitRequest) -> SubmitOutcome:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        if self.errors is not None:
            return SubmitOutcome(errors=self.errors)
        now = datetime.now(UTC)
        job = JobRecord(
            id=uuid.UUID(request.job_id or str(uuid.uuid4())),
            tenant_id=request.tenant_id,
            status=JobStatus.PENDING,
            priority=request.priority,
            pool="default",
            workflow=json.loads(request.workflow_json),
            inputs=[],
            created_at=now,
            deadline=now,
            timeout_seconds=60,
            attempt=0,
            updated_at=now,
        )
        return SubmitOutcome(job=job)


def command_bytes(request_id: str = "req-1", **changes) -> bytes:
    data = {"request_id": request_id, "workflow": GRAPH, **changes}
    return dump_event(
        SubmitRequested(
            source="team-a", subject=request_id, data=SubmitRequestedData(**data)
        )
    )


def service(submissions: FakeSubmissions, **principals: Principal) -> IngressService:
    known = principals or {"csk_good": key_principal()}
    return IngressService(
        submissions=submissions, verifier=FakeVerifier(known), source="workflow/t"
    )


def rejection(outcome) -> JobRejected:
    assert isinstance(outcome, Refused)
    return outcome.event


async def test_a_command_is_submitted_as_the_credentials_tenant() -> None:
    submissions = FakeSubmissions()

    outcome = await service(submissions).on_submit_requested(
        Command(
            command_bytes(priority=Priority.HIGH, metadata={"a": "b"}),
            b"req-1",
            "csk_good",
        )
    )

    job_id = str(submitted_job_id("t1", "req-1"))
    assert outcome == Accepted(job_id=job_id, replayed=False)
    [request] = submissions.requests
    assert request.tenant_id == "t1"
    assert request.job_id == job_id
    assert request.idempotency_key == "kafka:req-1"
    assert request.priority is Priority.HIGH
    assert dict(request.metadata) == {"a": "b"}
    assert json.loads(request.workflow_json) == GRAPH


async def test_a_chosen_job_id_is_kept() -> None:
    submissions = FakeSubmissions()
    chosen = uuid.uuid4()

    await service(submissions).on_submit_requested(
        Command(command_bytes(job_id=chosen), b"req-1", "csk_good")
    )

    assert submissions.requests[0].job_id == str(chosen)


async def test_a_service_names_the_tenant_it_acts_for() -> None:
    submissions = FakeSubmissions()
    gateway = Principal(
        kind=PrincipalKind.SERVICE,
        subject="service:batch",
        tenant_id="",
        scopes=frozenset({SERVICE_SCOPE}),
    )
    value = json.loads(command_bytes())
    value["tenant_id"] = "t7"

    await service(submissions, csk_svc=gateway).on_submit_requested(
        Command(json.dumps(value).encode(), b"req-1", "csk_svc")
    )

    assert submissions.requests[0].tenant_id == "t7"


async def test_an_invalid_graph_is_rejected_with_its_node_errors() -> None:
    submissions = FakeSubmissions(errors=NODE_ERRORS)

    event = rejection(
        await service(submissions).on_submit_requested(
            Command(command_bytes(), b"req-1", "csk_good")
        )
    )

    assert event.subject == "req-1"
    assert event.tenant_id == "t1"
    assert event.data.code is RejectionCode.INVALID_WORKFLOW
    assert event.data.message == "Prompt outputs failed validation"
    assert event.data.node_errors == NODE_ERRORS["node_errors"]
    assert event.data.error == NODE_ERRORS["error"]


@pytest.mark.parametrize("credential", ["", "csk_unknown"])
async def test_without_a_valid_credential_nothing_is_submitted(credential) -> None:
    submissions = FakeSubmissions()

    event = rejection(
        await service(submissions).on_submit_requested(
            Command(command_bytes(), b"req-1", credential)
        )
    )

    assert event.data.code is RejectionCode.UNAUTHENTICATED
    assert event.tenant_id is None
    assert submissions.requests == []


@pytest.mark.parametrize(
    ("principal", "tenant", "problem"),
    [
        (key_principal("workflows:read"), None, "missing scope: workflows:write"),
        (key_principal(), "t2", "not the credential's tenant"),
    ],
)
async def test_a_credential_that_may_not_submit_is_forbidden(
    principal, tenant, problem
) -> None:
    submissions = FakeSubmissions()
    value = json.loads(command_bytes())
    value["tenant_id"] = tenant

    event = rejection(
        await service(submissions, csk_x=principal).on_submit_requested(
            Command(json.dumps(value).encode(), b"req-1", "csk_x")
        )
    )

    assert event.data.code is RejectionCode.FORBIDDEN
    assert problem in event.data.message
    assert submissions.requests == []


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"not json{", None),
        (b'{"type": "workflow.job.submit-requested"}', "source"),
        (
            command_bytes().replace(b'"timeout_seconds":0', b'"timeout_seconds":-1'),
            "data.timeout_seconds",
        ),
    ],
)
async def test_an_unreadable_command_with_a_key_is_rejected(value, field) -> None:
    event = rejection(
        await service(FakeSubmissions()).on_submit_requested(
            Command(value, b"req-9", "csk_good")
        )
    )

    assert event.subject == "req-9"
    assert event.tenant_id == "t1"
    assert event.data.code is RejectionCode.INVALID_COMMAND
    assert event.data.field == field


async def test_an_unreadable_record_without_a_key_is_for_the_dlq() -> None:
    outcome = await service(FakeSubmissions()).on_submit_requested(
        Command(b"not json{", None, "csk_good")
    )

    assert isinstance(outcome, Unreadable)
    assert outcome.reason.startswith("not a submit-requested command")


@pytest.mark.parametrize(
    ("error", "code", "field"),
    [
        (QueueFullError(10, 5.0), RejectionCode.QUEUE_FULL, None),
        (
            InvalidArgumentError("webhook_url", "private address"),
            RejectionCode.INVALID_ARGUMENT,
            "webhook_url",
        ),
    ],
)
async def test_a_refusal_of_the_submission_path_is_rejected(error, code, field) -> None:
    event = rejection(
        await service(FakeSubmissions(error=error)).on_submit_requested(
            Command(command_bytes(), b"req-1", "csk_good")
        )
    )

    assert event.data.code is code
    assert event.data.field == field
    assert event.data.message == error.message


async def test_an_outage_propagates_for_a_retry() -> None:
    submissions = FakeSubmissions(error=CatalogUnavailableError())

    with pytest.raises(CatalogUnavailableError):
        await service(submissions).on_submit_requested(
            Command(command_bytes(), b"req-1", "csk_good")
        )
