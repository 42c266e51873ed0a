"""The events an attempt reports, and the text they carry: clipped to the
event limits, and free of this machine's paths; and how the intermediate ones
are sent without holding up the job."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from comfyserve.contracts.events import (
    Event,
    FailureCode,
    JobCancelled,
    JobCancelledData,
    JobCompleted,
    JobCompletedData,
    JobFailed,
    JobFailedData,
    JobStarted,
    JobStartedData,
    OutputFile,
)
from comfyserve.contracts.limits import (
    MAX_OUTPUTS_PER_JOB,
    TEXT_FIELD_MAX_CHARS,
    TRACEBACK_MAX_CHARS,
)
from comfyserve.executor.engine import ExecutionFailed, PromptRejected
from comfyserve.executor.jobs.models import JobResult, Outcome
from comfyserve.executor.jobs.ports import Publisher
from comfyserve.executor.jobs.staging import output_folder
from comfyserve.executor.jobs.state import JobState, StopReason

log = structlog.get_logger(__name__)

_E = TypeVar("_E", bound=Event)


def clip(text: str, limit: int = TEXT_FIELD_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_tail(text: str, limit: int = TRACEBACK_MAX_CHARS) -> str:
    """A traceback's end says what failed; its start goes first."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


class PathScrubber:
    """Replaces this machine's paths in text shown to a job's owner with the
    names the job knows (`photo.png`, not `/srv/.../input/<job>/photo.png`)."""

    def __init__(self, roots: Sequence[Path], job_id: str, attempt: int) -> None:
        folders = "|".join(
            re.escape(name) for name in (output_folder(job_id, attempt), job_id)
        )
        # Any path, absolute or relative, through the job's own folders.
        self._job_folders = re.compile(rf"(?:[^\s'\"]*/)?(?:{folders})/")
        self._roots = sorted((str(root) for root in roots), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = self._job_folders.sub("", text)
        for root in self._roots:
            text = text.replace(root + "/", "").replace(root, "")
        return text


def describe_rejection(rejected: PromptRejected) -> str:
    """ComfyUI's /prompt validation answer as one readable message."""
    body = rejected.body
    if not isinstance(body, dict):
        return f"ComfyUI rejected the prompt (HTTP {rejected.status}): {body}"
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):
        parts.append(_error_item(error))
    elif error:
        parts.append(str(error))
    for node_id, node_error in rejected.node_errors.items():
        if not isinstance(node_error, dict):
            continue
        items = node_error.get("errors")
        details = "; ".join(
            _error_item(item) for item in items or () if isinstance(item, dict)
        )
        class_type = node_error.get("class_type") or "?"
        parts.append(f"node {node_id} ({class_type}): {details}")
    return " | ".join(parts) or json.dumps(body)


def _error_item(item: Mapping[str, Any]) -> str:
    text = str(item.get("message") or item.get("type") or "error")
    details = item.get("details")
    return f"{text}: {details}" if details else text


class Reporter:
    """Builds the events of one attempt."""

    def __init__(
        self, state: JobState, *, worker_id: str, source: str, scrub: PathScrubber
    ) -> None:
        self._state = state
        self._worker_id = worker_id
        self._source = source
        self._scrub = scrub

    def event(self, cls: type[_E], data: Any) -> _E:
        return cls.model_validate(
            {
                "source": self._source,
                "subject": self._state.job_id,
                "tenant_id": self._state.tenant_id,
                "data": data,
            }
        )

    def started(self) -> JobStarted:
        return self.event(
            JobStarted,
            JobStartedData(attempt=self._state.attempt, worker_id=self._worker_id),
        )

    def completed(self, duration_ms: int, outputs: list[OutputFile]) -> JobCompleted:
        return self.event(
            JobCompleted,
            JobCompletedData(
                attempt=self._state.attempt,
                worker_id=self._worker_id,
                outputs=outputs,
                duration_ms=max(duration_ms, 0),
            ),
        )

    def failed(
        self,
        code: FailureCode,
        message: str,
        *,
        retryable: bool,
        node_id: str | None = None,
        class_type: str | None = None,
        traceback: str | None = None,
    ) -> JobFailed:
        return self.event(
            JobFailed,
            JobFailedData(
                attempt=self._state.attempt,
                worker_id=self._worker_id,
                code=code,
                message=clip(self._scrub(message)),
                node_id=node_id,
                class_type=class_type,
                traceback=None
                if traceback is None
                else clip_tail(self._scrub(traceback)),
                retryable=retryable,
            ),
        )

    def node_failed(self, failed: ExecutionFailed) -> JobFailed:
        kind = failed.exception_type or "Error"
        return self.failed(
            FailureCode.NODE_EXECUTION_ERROR,
            f"{kind}: {failed.exception_message}",
            retryable=False,
            node_id=failed.node_id,
            class_type=failed.node_type or self._state.class_type(failed.node_id),
            traceback="".join(failed.traceback) or None,
        )

    def rejected(self, rejected: PromptRejected) -> JobFailed:
        return self.failed(
            FailureCode.INVALID_WORKFLOW, describe_rejection(rejected), retryable=False
        )

    def cancelled(self) -> JobCancelled:
        return self.event(
            JobCancelled,
            JobCancelledData(
                attempt=self._state.attempt,
                worker_id=self._worker_id,
                reason=self._state.cancel_reason or "cancel requested",
            ),
        )

    def stopped(self) -> Event | None:
        """The final event of an attempt stopped for `state.stop`."""
        state = self._state
        match state.stop:
            case StopReason.CANCEL:
                return self.cancelled()
            case StopReason.SUPERSEDED:
                return None
            case StopReason.TIMEOUT:
                return self.failed(
                    FailureCode.TIMEOUT,
                    f"the job did not finish within "
                    f"{state.assignment.timeout_seconds}s or before its deadline",
                    retryable=False,
                )
            case StopReason.OUTPUT_LIMIT:
                return self.failed(
                    FailureCode.OUTPUT_LIMIT_EXCEEDED,
                    f"the job produced more than {MAX_OUTPUTS_PER_JOB} outputs",
                    retryable=False,
                )
        return self.failed(
            FailureCode.INTERNAL_ERROR,
            "ComfyUI interrupted the prompt without a request from this worker",
            retryable=True,
        )


def result_of(event: Event | None, duration_s: float) -> JobResult:
    if event is None:
        return JobResult(Outcome.ABANDONED, duration_s=duration_s)
    if isinstance(event, JobCompleted):
        return JobResult(Outcome.COMPLETED, duration_s=duration_s)
    if isinstance(event, JobCancelled):
        return JobResult(Outcome.CANCELLED, duration_s=duration_s)
    if isinstance(event, JobFailed):
        return JobResult(Outcome.FAILED, event.data.code, duration_s)
    raise TypeError(f"{type(event).__name__} does not end a job")


async def send(publisher: Publisher, state: JobState, event: Event) -> None:
    """Queues an intermediate event without waiting for Kafka, so the job
    runs on meanwhile; a failed one is logged, never retried: the final
    event carries everything the job needs."""
    try:
        delivery = asyncio.ensure_future(await publisher.enqueue(event))
    except Exception as exc:  # a broker outage or an oversized event
        log.warning(
            "executor.event.not_queued",
            job_id=state.job_id,
            event_type=event.type,
            error=repr(exc),
        )
        return
    delivery.add_done_callback(
        lambda done: _log_failed_delivery(done, state.job_id, event.type)
    )
    state.deliveries.append(delivery)


def _log_failed_delivery(
    delivery: asyncio.Future[object], job_id: str, event_type: str
) -> None:
    # Also retrieves the error of a delivery nobody awaits (the job was stopped).
    if delivery.cancelled():
        return
    error = delivery.exception()
    if error is not None:
        log.warning(
            "executor.event.send_failed",
            job_id=job_id,
            event_type=event_type,
            error=repr(error),
        )
