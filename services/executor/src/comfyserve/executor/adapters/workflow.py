"""WorkflowService.ClaimJob, retried while the workflow service is unreachable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import structlog

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from comfyserve.executor.jobs.models import Claim

log = structlog.get_logger(__name__)

# Definite answers about this job; anything else may pass, so it is retried.
_REFUSING_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_EXPECTED_OUTAGES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)


class GrpcClaims:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout_s: float,
        *,
        backoff_max_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._stub = wf_grpc.WorkflowServiceStub(channel)
        self._timeout_s = timeout_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep

    async def claim(self, tenant_id: str, job_id: str, worker_id: str) -> Claim:
        request = wf.ClaimJobRequest(
            tenant_id=tenant_id, job_id=job_id, worker_id=worker_id
        )
        delay = 0.2
        tries = 0
        while True:
            tries += 1
            try:
                answer = await self._stub.ClaimJob(request, timeout=self._timeout_s)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in _REFUSING_CODES:
                    log.warning(
                        "executor.claim.refused_by_error",
                        job_id=job_id,
                        code=code.name,
                        details=exc.details(),
                    )
                    return Claim(granted=False, reason=f"{code.name}: {exc.details()}")
                level = log.warning if code in _EXPECTED_OUTAGES else log.error
                level(
                    "executor.claim.retry",
                    job_id=job_id,
                    code=code.name,
                    details=exc.details(),
                    tries=tries,
                )
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff_max_s)
                continue
            if not answer.granted:
                return Claim(granted=False, reason=answer.reason)
            return Claim(granted=True, attempt=max(answer.attempt, 1))
