"""Accepting jobs: parse, normalise, resolve assets (`assets`), pick a pool
whose node catalog validates the graph (`pools`), and store the job with its
idempotency record and `submitted` event in one transaction. No transport
types."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from comfyserve.contracts.events import InputFile, Priority
from comfyserve.contracts.workflow_format import replace_asset_refs
from comfyserve.runtime.telemetry import current_trace_id, current_traceparent
from comfyserve.workflow.adapters.files import FileLookup
from comfyserve.workflow.adapters.partner_keys import PartnerKeys
from comfyserve.workflow.db import QUEUE_CHANNEL
from comfyserve.workflow.errors import (
    CatalogUnavailableError,
    IdempotencyKeyReuseError,
    InvalidArgumentError,
    PartnerKeysUnavailableError,
)
from comfyserve.workflow.jobs import events, repository
from comfyserve.workflow.jobs.assets import resolve_assets, resolve_named_inputs
from comfyserve.workflow.jobs.hashing import request_hash
from comfyserve.workflow.jobs.job_ids import JobIdTakenError, chosen_job_id
from comfyserve.workflow.jobs.models import JobRecord, JobStatus
from comfyserve.workflow.jobs.pools import PoolChoice, choose_pool
from comfyserve.workflow.jobs.reads import JobReader, require_tenant
from comfyserve.workflow.jobs.webhooks import check_webhook_url
from comfyserve.workflow.outbox import repository as outbox
from comfyserve.workflow.settings import Settings
from comfyserve.workflow.telemetry import Metrics
from comfyserve.workflow.tenants.service import queue_full, quota_defaults
from comfyserve.workflow.validation import (
    ComfyErrors,
    ErrorType,
    InvalidWorkflowError,
    PromptError,
    normalise_workflow,
)
from comfyserve.workflow.workers.service import CatalogCache, Fleet

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# Validation takes about 10 us a node; up to this many nodes it runs on the
# event loop, where a hand-off to a thread would cost more than it spares.
_INLINE_NODES = 32


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    tenant_id: str
    workflow_json: str
    priority: Priority = Priority.NORMAL
    webhook_url: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0
    idempotency_key: str | None = None
    job_id: str | None = None
    client_id: str | None = None
    # Secret: kept in `PartnerKeys` only, never with the job (ADR 0006).
    partner_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    job: JobRecord | None = None
    errors: ComfyErrors | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A graph ready to store: normalised, assets resolved, validated."""

    graph: dict[str, Any]
    inputs: list[InputFile]
    pool: str
    file_inputs: list[dict[str, str]]


class SubmissionService:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        files: FileLookup,
        partner_keys: PartnerKeys,
        reader: JobReader,
        metrics: Metrics,
        source: str,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._files = files
        self._partner_keys = partner_keys
        self._reader = reader
        self._metrics = metrics
        self._source = source
        self._clock = clock
        self._catalogs = CatalogCache()
        self._quotas = quota_defaults(settings)

    async def submit(self, request: SubmitRequest) -> SubmitOutcome:
        require_tenant(request.tenant_id)
        job_id = chosen_job_id(request.job_id)
        timeout_s = self._timeout(request.timeout_seconds)
        if request.webhook_url is not None:
            await check_webhook_url(
                request.webhook_url,
                allow_loopback=self._settings.webhook_allow_loopback,
            )
        try:
            raw = _parse_json(request.workflow_json)
            graph = normalise_workflow(raw)
        except InvalidWorkflowError as error:
            return SubmitOutcome(errors=error.to_comfy())
        fingerprint = request_hash(
            workflow=raw,
            priority=request.priority,
            timeout_seconds=timeout_s,
            webhook_url=request.webhook_url,
            metadata=request.metadata,
        )
        key = request.idempotency_key
        # One connection and one transaction for the whole submit: the
        # look-up, the pools' read when one is due, and the store.
        async with self._engine.connect() as conn:
            record = (
                None
                if key is None
                else await self._recorded(conn, request.tenant_id, key)
            )
            if record is None:
                outcome = await self._accept(
                    conn, request, job_id, timeout_s, graph, fingerprint
                )
                if outcome is not None:
                    return outcome
        if record is not None:
            return await self._replayed(request.tenant_id, record, fingerprint)
        # A concurrent request with the same key won the race.
        replay = (
            None
            if key is None
            else await self._replay(request.tenant_id, key, fingerprint)
        )
        if replay is None:
            raise IdempotencyKeyReuseError()
        return replay

    async def _accept(
        self,
        conn: AsyncConnection,
        request: SubmitRequest,
        job_id: UUID,
        timeout_s: int,
        graph: dict[str, Any],
        fingerprint: str,
    ) -> SubmitOutcome | None:
        """The job stored, or the graph's errors; None (nothing written) when
        a concurrent request took the idempotency key."""
        if request.job_id is not None and await repository.job_exists(conn, job_id):
            raise JobIdTakenError()
        prepared = await self._prepare(conn, request.tenant_id, graph)
        if not isinstance(prepared, _Prepared):
            return SubmitOutcome(errors=prepared)
        job = self._new_job(request, job_id, timeout_s, prepared)
        stored = await self._store(conn, job, fingerprint, request.partner_key)
        if stored is None:
            return None
        self._metrics.jobs_submitted.labels(job.priority.value).inc()
        self._metrics.job_transitions.labels(JobStatus.PENDING.value).inc()
        log.info(
            "workflow.job.submitted",
            job_id=str(job.id),
            tenant_id=job.tenant_id,
            pool=job.pool,
        )
        return SubmitOutcome(job=stored)

    def _new_job(
        self, request: SubmitRequest, job_id: UUID, timeout_s: int, prepared: _Prepared
    ) -> JobRecord:
        now = self._clock()
        return JobRecord(
            id=job_id,
            tenant_id=request.tenant_id,
            status=JobStatus.PENDING,
            priority=request.priority,
            pool=prepared.pool,
            workflow=prepared.graph,
            inputs=[item.model_dump(mode="json") for item in prepared.inputs],
            file_inputs=prepared.file_inputs,
            created_at=now,
            deadline=now
            + timedelta(seconds=timeout_s + self._settings.queue_timeout_seconds),
            timeout_seconds=timeout_s,
            attempt=0,
            updated_at=now,
            metadata=dict(request.metadata),
            webhook_url=request.webhook_url,
            idempotency_key=request.idempotency_key,
            client_id=request.client_id or None,
            # The submit call's span: every attempt's spans join its trace.
            trace_id=current_trace_id(),
            traceparent=current_traceparent(),
        )

    async def _store(
        self,
        conn: AsyncConnection,
        job: JobRecord,
        fingerprint: str,
        partner_key: str | None,
    ) -> JobRecord | None:
        """Job, idempotency record and `submitted` in one transaction, which
        also answers the job's queue position; None (nothing written) when the
        idempotency key is taken. The partner key is kept last before the
        commit: an executor woken by the commit finds it, and a job id or
        idempotency key that is taken never replaces another job's."""
        now = job.created_at
        idempotency = (
            None
            if job.idempotency_key is None
            else repository.NewIdempotency(
                key=job.idempotency_key,
                request_hash=fingerprint,
                expired_before=self._idempotency_cutoff(now),
            )
        )
        kept = False
        try:
            try:
                queued = await repository.queue_job(
                    conn,
                    job,
                    default_max_queued=self._quotas.max_queued,
                    idempotency=idempotency,
                    # Delivered on commit, when the event below is in too.
                    notifications=[(QUEUE_CHANNEL, job.pool), outbox.WAKE_RELAY],
                )
            except IntegrityError:
                # Only a chosen id can collide, with a job stored since the
                # check in `submit`.
                raise JobIdTakenError() from None
            if queued.number is None:
                raise queue_full(queued.queued_limit, self._quotas)
            if not queued.key_recorded:
                await conn.rollback()
                return None
            submitted = events.submitted(job, self._source)
            await outbox.insert_events(conn, [(submitted, None)], now)
            if partner_key is not None:
                await self._partner_keys.keep(
                    str(job.id), partner_key, self._key_until(job)
                )
                kept = True
            await conn.commit()
        except BaseException:
            if kept:
                # The commit failed: keep no key for a job that does not exist.
                with contextlib.suppress(PartnerKeysUnavailableError):
                    await self._partner_keys.forget([str(job.id)])
            raise
        return replace(job, queue_position=queued.position, number=queued.number)

    def _key_until(self, job: JobRecord) -> datetime:
        # The sweeper ends a job this long after its deadline; until then an
        # attempt may still be granted, and needs the key.
        return job.deadline + timedelta(seconds=self._settings.deadline_grace_seconds)

    async def _replay(
        self, tenant_id: str, key: str, fingerprint: str
    ) -> SubmitOutcome | None:
        async with self._engine.connect() as conn:
            record = await self._recorded(conn, tenant_id, key)
        if record is None:
            return None
        return await self._replayed(tenant_id, record, fingerprint)

    async def _recorded(
        self, conn: AsyncConnection, tenant_id: str, key: str
    ) -> repository.IdempotencyRecord | None:
        return await repository.find_idempotency(
            conn, tenant_id, key, not_before=self._idempotency_cutoff(self._clock())
        )

    async def _replayed(
        self, tenant_id: str, record: repository.IdempotencyRecord, fingerprint: str
    ) -> SubmitOutcome:
        """The job a live idempotency record names, read on a connection of
        its own."""
        if record.request_hash != fingerprint:
            raise IdempotencyKeyReuseError()
        job = await self._reader.get(tenant_id, str(record.job_id))
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
        async with self._engine.connect() as conn:
            prepared = await self._prepare(conn, tenant_id, graph)
        return None if isinstance(prepared, _Prepared) else prepared

    async def _prepare(
        self, conn: AsyncConnection, tenant_id: str, graph: dict[str, Any]
    ) -> _Prepared | ComfyErrors:
        fleet = await self._fleet(conn)
        inputs = await resolve_assets(self._files, tenant_id, graph)
        if not isinstance(inputs, list):
            return inputs
        names = {item.file_id: item.filename for item in inputs}
        with_names = replace_asset_refs(graph, names)
        choice = await self._choose(with_names, fleet)
        if not choice.result.ok:
            # The pools were read up to `FRESH_FOR_S` ago: a catalog published
            # since may run the graph.
            fleet = await self._fleet(conn, stale=fleet)
            choice = await self._choose(with_names, fleet)
        if not choice.result.ok:
            return choice.result.to_comfy()
        named = await resolve_named_inputs(
            self._files, tenant_id, graph, choice.result.file_inputs, inputs
        )
        if not isinstance(named, list):
            return named
        inputs += named
        file_inputs = [
            {"node_id": ref.node_id, "input_name": ref.input_name}
            for ref in choice.result.file_inputs
        ]
        return _Prepared(
            graph=graph, inputs=inputs, pool=choice.pool, file_inputs=file_inputs
        )

    async def _fleet(self, conn: AsyncConnection, stale: Fleet | None = None) -> Fleet:
        seen_after = self._clock() - timedelta(
            seconds=self._settings.worker_timeout_seconds
        )
        fleet = await self._catalogs.current(conn, seen_after, stale=stale)
        if not fleet.catalogs:
            raise CatalogUnavailableError()
        return fleet

    async def _choose(self, graph: dict[str, Any], fleet: Fleet) -> PoolChoice:
        choose = partial(
            choose_pool, graph, fleet.catalogs, fleet.live, self._settings.allowlist
        )
        if len(graph) <= _INLINE_NODES:
            return choose()
        # Validation is CPU-bound and a graph may hold hundreds of nodes.
        return await asyncio.to_thread(choose)


def _parse_json(text: str) -> Any:
    # NaN and Infinity parse to floats here; normalise_workflow refuses them
    # with the node and input they sit in, as it does 1e400 (inf).
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InvalidWorkflowError(
            PromptError(
                type=ErrorType.INVALID_PROMPT,
                message="Workflow is not valid JSON",
                details=str(error),
            )
        ) from None
