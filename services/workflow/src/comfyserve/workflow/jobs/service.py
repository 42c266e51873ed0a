"""Job operations: submit, read, list, cancel, watch and claim. No transport types."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.contracts.events import InputFile, Priority
from comfyserve.contracts.workflow_format import (
    InvalidAssetRefError,
    find_asset_refs,
    replace_asset_refs,
)
from comfyserve.workflow.adapters.files import FileLookup, StoredFile
from comfyserve.workflow.db import JOBS_CHANNEL, notify
from comfyserve.workflow.errors import (
    CatalogUnavailableError,
    IdempotencyKeyReuseError,
    InvalidArgumentError,
    JobNotFoundError,
)
from comfyserve.workflow.jobs import events, repository
from comfyserve.workflow.jobs.cursor import Cursor
from comfyserve.workflow.jobs.hashing import request_hash
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.state import Transition, exhaust, request_cancel
from comfyserve.workflow.jobs.watch import JobChangeListener
from comfyserve.workflow.outbox import repository as outbox
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.validation import (
    ErrorType,
    InvalidWorkflowError,
    PromptError,
    normalise_workflow,
    validate,
)
from comfyserve.workflow.workers.service import CatalogCache

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
ComfyErrors = dict[str, Any]
"""`{"error": {...}, "node_errors": {...}}`, ComfyUI's /prompt error shape."""

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MISSING_ASSET = "missing_asset"


class ClaimRefusal(StrEnum):
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    CANCEL_REQUESTED = "cancel_requested"
    RUNNING_ON_LIVE_WORKER = "running_on_live_worker"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"


class UpdateKind(StrEnum):
    STATUS = "status"
    PROGRESS = "progress"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    tenant_id: str
    workflow_json: str
    priority: Priority = Priority.NORMAL
    webhook_url: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    job: JobRecord | None = None
    errors: ComfyErrors | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    job: JobRecord
    granted: bool
    reason: ClaimRefusal | None = None


@dataclass(frozen=True, slots=True)
class JobUpdate:
    job: JobRecord
    kind: UpdateKind
    new_outputs: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A graph ready to store: normalised, assets resolved, validated."""

    graph: dict[str, Any]
    inputs: list[InputFile]


async def persist_transition(
    conn: AsyncConnection,
    transition: Transition,
    *,
    now: datetime,
    source: str,
    cancel_reason: str,
) -> None:
    """Write a state change with the events it implies, and tell watchers."""
    if not transition.changed:
        return
    job = transition.job
    await repository.save_job(conn, job, now)
    if transition.requeue:
        await outbox.add_event(conn, events.submitted(job, source), now)
    if transition.broadcast_cancel:
        event = events.cancel_requested(job, source, cancel_reason)
        await outbox.add_event(conn, event, now)
    await notify(conn, JOBS_CHANNEL, str(job.id))


def count_transition(
    metrics: Metrics, before: JobStatus, transition: Transition
) -> None:
    if transition.changed and transition.job.status is not before:
        metrics.job_transitions.labels(transition.job.status.value).inc()


def parse_job_id(job_id: str) -> UUID:
    """A malformed id names no job, so it is NOT_FOUND like any unknown one."""
    try:
        return UUID(job_id)
    except ValueError:
        raise JobNotFoundError(job_id) from None


def require_tenant(tenant_id: str) -> None:
    if not tenant_id:
        raise InvalidArgumentError("tenant_id", "is required")


class JobService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        files: FileLookup,
        listener: JobChangeListener,
        metrics: Metrics,
        source: str,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._files = files
        self._listener = listener
        self._metrics = metrics
        self._source = source
        self._clock = clock
        self._catalogs = CatalogCache()

    # -- submit and validate ---------------------------------------------

    async def submit(self, request: SubmitRequest) -> SubmitOutcome:
        require_tenant(request.tenant_id)
        timeout = self._timeout(request.timeout_seconds)
        _check_webhook(request.webhook_url)
        try:
            raw = _parse_json(request.workflow_json)
            graph = normalise_workflow(raw)
        except InvalidWorkflowError as error:
            return SubmitOutcome(errors=error.to_comfy())
        fingerprint = request_hash(
            workflow=raw,
            priority=request.priority,
            timeout_seconds=timeout,
            webhook_url=request.webhook_url,
            metadata=request.metadata,
        )
        key = request.idempotency_key
        if key is not None:
            replay = await self._replay(request.tenant_id, key, fingerprint)
            if replay is not None:
                return replay
        prepared = await self._prepare(request.tenant_id, graph)
        if not isinstance(prepared, _Prepared):
            return SubmitOutcome(errors=prepared)
        now = self._clock()
        job = JobRecord(
            id=uuid.uuid4(),
            tenant_id=request.tenant_id,
            status=JobStatus.PENDING,
            priority=request.priority,
            workflow=prepared.graph,
            inputs=[item.model_dump(mode="json") for item in prepared.inputs],
            created_at=now,
            deadline=now
            + timedelta(seconds=timeout + self._settings.queue_timeout_seconds),
            timeout_seconds=timeout,
            attempt=0,
            updated_at=now,
            metadata=dict(request.metadata),
            webhook_url=request.webhook_url,
            idempotency_key=request.idempotency_key,
        )
        if not await self._store(job, fingerprint):
            # A concurrent request with the same key won the race.
            replay = (
                None
                if key is None
                else await self._replay(request.tenant_id, key, fingerprint)
            )
            if replay is None:
                raise IdempotencyKeyReuseError()
            return replay
        self._metrics.jobs_submitted.labels(job.priority.value).inc()
        self._metrics.job_transitions.labels(JobStatus.PENDING.value).inc()
        log.info("workflow.job.submitted", job_id=str(job.id), tenant_id=job.tenant_id)
        return SubmitOutcome(job=await self.get(job.tenant_id, str(job.id)))

    async def _store(self, job: JobRecord, fingerprint: str) -> bool:
        """Job, idempotency record and `submitted` in one transaction; False
        (nothing written) when the idempotency key is taken."""
        now = job.created_at
        async with self._engine.connect() as conn, conn.begin() as transaction:
            await repository.insert_job(conn, job)
            if job.idempotency_key is not None:
                recorded = await repository.insert_idempotency(
                    conn,
                    tenant_id=job.tenant_id,
                    key=job.idempotency_key,
                    request_hash=fingerprint,
                    job_id=job.id,
                    now=now,
                    expired_before=self._idempotency_cutoff(now),
                )
                if not recorded:
                    await transaction.rollback()
                    return False
            await outbox.add_event(conn, events.submitted(job, self._source), now)
        return True

    async def _replay(
        self, tenant_id: str, key: str, fingerprint: str
    ) -> SubmitOutcome | None:
        async with self._engine.connect() as conn:
            record = await repository.find_idempotency(
                conn,
                tenant_id,
                key,
                not_before=self._idempotency_cutoff(self._clock()),
            )
        if record is None:
            return None
        if record.request_hash != fingerprint:
            raise IdempotencyKeyReuseError()
        job = await self.get(tenant_id, str(record.job_id))
        return SubmitOutcome(job=job, replayed=True)

    def _idempotency_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(hours=self._settings.idempotency_ttl_hours)

    def _timeout(self, requested: int) -> int:
        if requested < 0:
            raise InvalidArgumentError("timeout_seconds", "must not be negative")
        if requested > self._settings.max_timeout_seconds:
            raise InvalidArgumentError(
                "timeout_seconds",
                f"must be at most {self._settings.max_timeout_seconds}",
            )
        return requested or self._settings.default_timeout_seconds

    async def validate_workflow(
        self, tenant_id: str, workflow_json: str
    ) -> ComfyErrors | None:
        """None when the workflow would be accepted, else its errors."""
        require_tenant(tenant_id)
        try:
            graph = normalise_workflow(_parse_json(workflow_json))
        except InvalidWorkflowError as error:
            return error.to_comfy()
        prepared = await self._prepare(tenant_id, graph)
        return None if isinstance(prepared, _Prepared) else prepared

    async def _prepare(
        self, tenant_id: str, graph: dict[str, Any]
    ) -> _Prepared | ComfyErrors:
        async with self._engine.connect() as conn:
            catalog = await self._catalogs.current(conn)
        if catalog is None:
            raise CatalogUnavailableError()
        resolved = await self._resolve_assets(tenant_id, graph)
        if not isinstance(resolved, _Prepared):
            return resolved
        names = {item.file_id: item.filename for item in resolved.inputs}
        # Validation is CPU-bound and a graph may hold hundreds of nodes.
        result = await asyncio.to_thread(
            validate,
            replace_asset_refs(graph, names),
            catalog,
            self._settings.allowlist,
        )
        if not result.ok:
            return result.to_comfy()
        return resolved

    async def _resolve_assets(
        self, tenant_id: str, graph: dict[str, Any]
    ) -> _Prepared | ComfyErrors:
        try:
            refs = find_asset_refs(graph)
        except InvalidAssetRefError as error:
            return _asset_errors(
                graph,
                {
                    error.node_id: [
                        _error_item(
                            ErrorType.INVALID_INPUT_TYPE.value,
                            str(error),
                            input_name=error.input_name,
                        )
                    ]
                },
                ErrorType.INVALID_PROMPT.value,
                "Invalid asset reference",
            )
        file_ids = sorted({ref.file_id for ref in refs})
        found = await asyncio.gather(
            *(self._files.get_file(tenant_id, file_id) for file_id in file_ids)
        )
        files = {
            file.file_id: file for file in found if file is not None and file.ready
        }
        missing: dict[str, list[dict[str, Any]]] = {}
        for ref in refs:
            if ref.file_id not in files:
                missing.setdefault(ref.node_id, []).append(
                    _error_item(
                        MISSING_ASSET,
                        f"File {ref.file_id} is not available",
                        details=(
                            f"{ref.input_name}: file {ref.file_id} does not exist "
                            "or its upload is not complete"
                        ),
                        input_name=ref.input_name,
                        file_id=ref.file_id,
                    )
                )
        if missing:
            return _asset_errors(
                graph,
                missing,
                MISSING_ASSET,
                "Referenced input files are not available",
            )
        names = _staged_names(files.values())
        inputs = [
            InputFile(
                file_id=ref.file_id,
                node_id=ref.node_id,
                input_name=ref.input_name,
                filename=names[ref.file_id],
                bucket=files[ref.file_id].bucket,
                key=files[ref.file_id].key,
                content_type=files[ref.file_id].content_type,
                size=files[ref.file_id].size,
                sha256=files[ref.file_id].sha256,
            )
            for ref in refs
        ]
        return _Prepared(graph=graph, inputs=inputs)

    # -- read ---------------------------------------------------------------

    async def get(self, tenant_id: str, job_id: str) -> JobRecord:
        require_tenant(tenant_id)
        async with self._engine.connect() as conn:
            return await self._read(conn, tenant_id, parse_job_id(job_id))

    async def _read(
        self, conn: AsyncConnection, tenant_id: str, job_id: UUID
    ) -> JobRecord:
        job = await repository.get_job(conn, job_id, tenant_id=tenant_id)
        if job is None:
            raise JobNotFoundError(str(job_id))
        if job.status is JobStatus.PENDING:
            position = await repository.queue_position(conn, job)
            return _with_position(job, position)
        return job

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        page_size: int,
        cursor: str,
        statuses: Sequence[JobStatus],
    ) -> JobPage:
        require_tenant(tenant_id)
        if page_size < 0:
            raise InvalidArgumentError("page_size", "must not be negative")
        limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = Cursor.decode(cursor) if cursor else None
        async with self._engine.connect() as conn:
            rows = await repository.list_jobs(
                conn, tenant_id, statuses=statuses, after=after, limit=limit + 1
            )
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = Cursor(last.created_at, last.id).encode()
        return JobPage(jobs=page, next_cursor=next_cursor)

    # -- cancel ---------------------------------------------------------------

    async def cancel(self, tenant_id: str, job_id: str) -> JobRecord:
        require_tenant(tenant_id)
        job_uuid = parse_job_id(job_id)
        now = self._clock()
        async with self._engine.connect() as conn, conn.begin():
            job = await repository.get_job(
                conn, job_uuid, tenant_id=tenant_id, for_update=True
            )
            if job is None:
                raise JobNotFoundError(job_id)
            transition = request_cancel(job, now)
            await persist_transition(
                conn,
                transition,
                now=now,
                source=self._source,
                cancel_reason="cancelled by the client",
            )
        count_transition(self._metrics, job.status, transition)
        log.info(
            "workflow.job.cancel",
            job_id=job_id,
            status=transition.job.status.value,
            ignored=transition.ignored,
        )
        return await self.get(tenant_id, job_id)

    # -- watch ---------------------------------------------------------------

    async def watch(self, tenant_id: str, job_id: str) -> AsyncIterator[JobUpdate]:
        """The current state, then one update per observed change, ending after
        a final status. Changes are pushed by the listener, never polled."""
        require_tenant(tenant_id)
        job_uuid = parse_job_id(job_id)
        # Subscribe before the first read so no change falls in between.
        with self._listener.subscribe(str(job_uuid)) as changed:
            job = await self.get(tenant_id, job_id)
            yield JobUpdate(job=job, kind=UpdateKind.STATUS, new_outputs=[])
            seen = {output["file_id"] for output in job.outputs}
            while not job.status.is_final:
                await changed.wait()
                changed.clear()
                current = await self.get(tenant_id, job_id)
                new_outputs = [o for o in current.outputs if o["file_id"] not in seen]
                kind = _update_kind(job, current, new_outputs)
                job = current
                if kind is None:
                    continue
                seen.update(output["file_id"] for output in new_outputs)
                yield JobUpdate(job=job, kind=kind, new_outputs=new_outputs)

    # -- claim ---------------------------------------------------------------

    async def claim(self, tenant_id: str, job_id: str, worker_id: str) -> ClaimOutcome:
        require_tenant(tenant_id)
        if not worker_id:
            raise InvalidArgumentError("worker_id", "is required")
        job_uuid = parse_job_id(job_id)
        now = self._clock()
        stale_before = now - timedelta(seconds=self._settings.heartbeat_timeout_seconds)
        max_attempts = self._settings.max_attempts
        async with self._engine.connect() as conn, conn.begin():
            granted = await repository.claim(
                conn,
                job_uuid,
                tenant_id=tenant_id,
                worker_id=worker_id,
                now=now,
                stale_before=stale_before,
                max_attempts=max_attempts,
            )
            if granted is not None:
                await notify(conn, JOBS_CHANNEL, str(job_uuid))
                outcome = ClaimOutcome(job=granted, granted=True)
            else:
                outcome = await self._refuse(
                    conn, tenant_id, job_uuid, now, stale_before
                )
        if outcome.granted:
            self._metrics.job_transitions.labels(JobStatus.RUNNING.value).inc()
        elif outcome.reason is ClaimRefusal.ATTEMPTS_EXHAUSTED:
            self._metrics.job_transitions.labels(JobStatus.FAILED.value).inc()
        log.info(
            "workflow.job.claim",
            job_id=job_id,
            worker_id=worker_id,
            granted=outcome.granted,
            reason=outcome.reason,
            attempt=outcome.job.attempt,
        )
        return outcome

    async def _refuse(
        self,
        conn: AsyncConnection,
        tenant_id: str,
        job_id: UUID,
        now: datetime,
        stale_before: datetime,
    ) -> ClaimOutcome:
        job = await repository.get_job(
            conn, job_id, tenant_id=tenant_id, for_update=True
        )
        if job is None:
            raise JobNotFoundError(str(job_id))
        if job.status.is_final:
            return ClaimOutcome(job=job, granted=False, reason=_ENDED[job.status])
        if job.cancel_requested:
            return ClaimOutcome(
                job=job, granted=False, reason=ClaimRefusal.CANCEL_REQUESTED
            )
        if not await repository.is_claimable(conn, job_id, stale_before=stale_before):
            return ClaimOutcome(
                job=job, granted=False, reason=ClaimRefusal.RUNNING_ON_LIVE_WORKER
            )
        # Free to run but out of attempts: the job ends here.
        failed = exhaust(job, now, max_attempts=self._settings.max_attempts)
        await persist_transition(
            conn, failed, now=now, source=self._source, cancel_reason=""
        )
        return ClaimOutcome(
            job=failed.job, granted=False, reason=ClaimRefusal.ATTEMPTS_EXHAUSTED
        )


_ENDED = {
    JobStatus.COMPLETED: ClaimRefusal.JOB_COMPLETED,
    JobStatus.FAILED: ClaimRefusal.JOB_FAILED,
    JobStatus.CANCELLED: ClaimRefusal.JOB_CANCELLED,
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise InvalidWorkflowError(
            PromptError(
                type=ErrorType.INVALID_PROMPT,
                message="Workflow is not valid JSON",
                details=str(error),
            )
        ) from None


def _check_webhook(url: str | None) -> None:
    if url is not None and not url.startswith(("https://", "http://")):
        raise InvalidArgumentError("webhook_url", "must be an http(s) URL")


def _error_item(
    kind: str, message: str, details: str = "", **extra_info: Any
) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "details": details,
        "extra_info": extra_info,
    }


def _asset_errors(
    graph: Mapping[str, Any],
    items: Mapping[str, list[dict[str, Any]]],
    kind: str,
    message: str,
) -> ComfyErrors:
    details = "; ".join(
        f"node {node_id}: {item['message']}"
        for node_id, node_items in items.items()
        for item in node_items
    )
    return {
        "error": _error_item(kind, message, details),
        "node_errors": {
            node_id: {
                "errors": node_items,
                "dependent_outputs": [],
                "class_type": str(graph[node_id].get("class_type", "")),
            }
            for node_id, node_items in items.items()
        },
    }


def _staged_names(files: Iterable[StoredFile]) -> dict[str, str]:
    """File id to the name the engine sees: the file's own name, prefixed by its
    id when another input of the job has the same name."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for file in sorted(files, key=lambda item: item.file_id):
        name = (
            file.filename
            if file.filename not in taken
            else f"{file.file_id}-{file.filename}"
        )
        taken.add(name)
        names[file.file_id] = name
    return names


def _with_position(job: JobRecord, position: int) -> JobRecord:
    return replace(job, queue_position=position)


def _update_kind(
    before: JobRecord, after: JobRecord, new_outputs: list[dict[str, Any]]
) -> UpdateKind | None:
    if (
        after.status is not before.status
        or after.cancel_requested != before.cancel_requested
    ):
        return UpdateKind.STATUS
    if new_outputs:
        return UpdateKind.OUTPUT
    if after.progress != before.progress or after.attempt != before.attempt:
        return UpdateKind.PROGRESS
    return None
