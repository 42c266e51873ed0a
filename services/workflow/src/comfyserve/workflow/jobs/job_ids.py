"""Job ids a caller chooses (ComfyUI's `prompt_id`)."""

from __future__ import annotations

import uuid

import grpc

from comfyserve.workflow.errors import InvalidArgumentError, WorkflowError


class JobIdTakenError(WorkflowError):
    """The id is some job's already. The answer names no tenant and no job
    state: the caller learns only that the id is not free."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "job_id_taken"

    def __init__(self) -> None:
        super().__init__("job_id_taken: a job with this job_id already exists")


def chosen_job_id(value: str | None) -> uuid.UUID:
    """The caller's id, which must be a canonical lowercase UUID so every
    surface spells the job the same way; a fresh id when there is none."""
    if value is None:
        return uuid.uuid4()
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value:
        raise InvalidArgumentError("job_id", "must be a canonical lowercase UUID")
    return parsed
