"""Turning a `submit-requested` command into a job, or into the reason it is
refused. The command takes the same path as `SubmitJob` (validation against
the live catalogs, quotas, idempotency, the outbox); no transport types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from comfyserve.contracts.events import (
    JobRejected,
    JobRejectedData,
    RejectionCode,
    SubmitRequested,
    submitted_job_id,
)
from comfyserve.contracts.limits import REQUEST_ID_MAX_CHARS
from comfyserve.contracts.scopes import Scope
from comfyserve.runtime.auth import Principal, Unauthenticated
from comfyserve.runtime.grpc_auth import Forbidden, tenant_for
from comfyserve.workflow.errors import (
    CatalogUnavailableError,
    IdempotencyKeyReuseError,
    InvalidArgumentError,
    QueueFullError,
    StorageUnavailableError,
    WorkflowError,
)
from comfyserve.workflow.jobs.job_ids import JobIdTakenError
from comfyserve.workflow.jobs.submission import SubmitOutcome, SubmitRequest

__all__ = [
    "IDEMPOTENCY_PREFIX",
    "Accepted",
    "Command",
    "IngressService",
    "Outcome",
    "Refused",
    "Unreadable",
]

IDEMPOTENCY_PREFIX = "kafka:"
"""Request ids share the idempotency records of REST's `Idempotency-Key`; the
prefix keeps a request id from ever matching a key sent over HTTP."""

# Worth retrying: the record waits (uncommitted) until they pass.
_RETRYABLE = (CatalogUnavailableError, StorageUnavailableError)
_CODES: tuple[tuple[type[WorkflowError], RejectionCode], ...] = (
    (QueueFullError, RejectionCode.QUEUE_FULL),
    (IdempotencyKeyReuseError, RejectionCode.IDEMPOTENCY_KEY_REUSE),
    (JobIdTakenError, RejectionCode.JOB_ID_TAKEN),
)


class Verifier(Protocol):
    async def verify(self, credential: str) -> Principal: ...


class Submitter(Protocol):
    async def submit(self, request: SubmitRequest) -> SubmitOutcome: ...


@dataclass(frozen=True, slots=True)
class Command:
    """One record of the topic, as the transport read it."""

    value: bytes
    key: bytes | None
    credential: str


@dataclass(frozen=True, slots=True)
class Accepted:
    job_id: str
    replayed: bool


@dataclass(frozen=True, slots=True)
class Refused:
    event: JobRejected


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Not a command, and without a request id to answer: for the DLQ."""

    reason: str


Outcome = Accepted | Refused | Unreadable


class IngressService:
    def __init__(
        self, *, submissions: Submitter, verifier: Verifier | None, source: str
    ) -> None:
        self._submissions = submissions
        self._verifier = verifier
        self._source = source

    async def on_submit_requested(self, command: Command) -> Outcome:
        """Accept or refuse one command. `AuthUnavailable`, the retryable
        workflow errors and database errors propagate: the caller retries."""
        parsed = _parse(command.value)
        if isinstance(parsed, _Problem):
            request_id = _key_of(command.key)
            if request_id is None:
                return Unreadable(parsed.reason)
        else:
            request_id = parsed.data.request_id
        refusal = _Refusal(request_id, self._source)
        try:
            principal = await self._principal(command.credential)
        except Unauthenticated:
            return refusal.of(
                RejectionCode.UNAUTHENTICATED,
                "the authorization header holds no credential this product accepts",
            )
        if isinstance(parsed, _Problem):
            refusal.tenant_id = _own_tenant(principal)
            return refusal.of(
                RejectionCode.INVALID_COMMAND, parsed.reason, field=parsed.field
            )
        try:
            tenant_id = tenant_for(
                principal, parsed.tenant_id or "", Scope.WORKFLOWS_WRITE
            )
        except Forbidden as error:
            refusal.tenant_id = _own_tenant(principal)
            return refusal.of(RejectionCode.FORBIDDEN, str(error))
        refusal.tenant_id = tenant_id or None
        try:
            outcome = await self._submissions.submit(_request(tenant_id, parsed))
        except _RETRYABLE:
            raise
        except InvalidArgumentError as error:
            return refusal.of(
                RejectionCode.INVALID_ARGUMENT, error.message, field=error.field
            )
        except WorkflowError as error:
            code = next(
                (code for kind, code in _CODES if isinstance(error, kind)),
                RejectionCode.INVALID_ARGUMENT,
            )
            return refusal.of(code, error.message)
        if outcome.job is None:
            return refusal.invalid_workflow(outcome.errors or {})
        return Accepted(job_id=str(outcome.job.id), replayed=outcome.replayed)

    async def _principal(self, credential: str) -> Principal | None:
        if self._verifier is None:
            # Credentials are not checked (a service tested alone): the
            # command's tenant stands, as a call's does.
            return None
        return await self._verifier.verify(credential)


@dataclass(frozen=True, slots=True)
class _Problem:
    reason: str
    field: str | None


@dataclass(slots=True)
class _Refusal:
    request_id: str
    source: str
    tenant_id: str | None = None

    def of(
        self,
        code: RejectionCode,
        message: str,
        *,
        field: str | None = None,
        error: dict[str, Any] | None = None,
        node_errors: dict[str, Any] | None = None,
    ) -> Refused:
        return Refused(
            JobRejected(
                source=self.source,
                subject=self.request_id,
                tenant_id=self.tenant_id,
                data=JobRejectedData(
                    request_id=self.request_id,
                    code=code,
                    message=message,
                    field=field,
                    error=error,
                    node_errors=node_errors or {},
                ),
            )
        )

    def invalid_workflow(self, errors: dict[str, Any]) -> Refused:
        error = errors.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return self.of(
            RejectionCode.INVALID_WORKFLOW,
            message if isinstance(message, str) else "the workflow is not valid",
            field="data.workflow",
            error=error if isinstance(error, dict) else None,
            node_errors=errors.get("node_errors") or {},
        )


def _parse(value: bytes) -> SubmitRequested | _Problem:
    try:
        return SubmitRequested.model_validate_json(value)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        shown = f"{field}: " if field else ""
        return _Problem(
            f"not a submit-requested command ({error.error_count()} errors): "
            f"{shown}{first['msg']}",
            field,
        )


def _key_of(key: bytes | None) -> str | None:
    """The request id the record's key names, where a command cannot be read."""
    try:
        text = (key or b"").decode()
    except UnicodeDecodeError:
        return None
    return text if 0 < len(text) <= REQUEST_ID_MAX_CHARS else None


def _own_tenant(principal: Principal | None) -> str | None:
    if principal is None or principal.is_service:
        return None
    return principal.tenant_id


def _request(tenant_id: str, command: SubmitRequested) -> SubmitRequest:
    data = command.data
    job_id = data.job_id or (
        submitted_job_id(tenant_id, data.request_id) if tenant_id else None
    )
    return SubmitRequest(
        tenant_id=tenant_id,
        workflow_json=json.dumps(data.workflow, separators=(",", ":")),
        priority=data.priority,
        webhook_url=data.webhook_url,
        metadata=data.metadata,
        timeout_seconds=data.timeout_seconds,
        idempotency_key=IDEMPOTENCY_PREFIX + data.request_id,
        job_id=None if job_id is None else str(job_id),
    )
