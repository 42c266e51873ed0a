"""Each of the service's errors and how it is answered over gRPC."""

import grpc
import pytest

from comfyserve.auth.errors import (
    EmailTakenError,
    InvalidArgumentError,
    InvalidCredentialError,
    InvalidLoginError,
    KeyLimitError,
    LastSigningKeyError,
    MissingScopeError,
    NotFoundError,
    TenantSuspendedError,
    TooManyAttemptsError,
)
from comfyserve.runtime.grpc import rpc_status


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidCredentialError(), grpc.StatusCode.UNAUTHENTICATED),
        (InvalidLoginError(), grpc.StatusCode.UNAUTHENTICATED),
        (MissingScopeError(["admin"]), grpc.StatusCode.PERMISSION_DENIED),
        (TenantSuspendedError(), grpc.StatusCode.PERMISSION_DENIED),
        (NotFoundError("api key", "k"), grpc.StatusCode.NOT_FOUND),
        (EmailTakenError(), grpc.StatusCode.ALREADY_EXISTS),
        (TooManyAttemptsError(30), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (KeyLimitError(100), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (LastSigningKeyError("kid"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_each_error_has_its_code_and_reason(error, code):
    status = rpc_status(error)
    assert status is not None
    assert (status.code, status.message, status.field) == (code, error.message, None)
    assert status.reason == error.reason


def test_a_throttled_login_says_when_to_retry():
    status = rpc_status(TooManyAttemptsError(42))
    assert status is not None
    assert (status.reason, status.retry_after_s) == ("too_many_attempts", 42)


def test_an_invalid_argument_names_its_field():
    status = rpc_status(InvalidArgumentError("rate_limit.burst", "too large"))
    assert status is not None
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (status.field, status.problem) == ("rate_limit.burst", "too large")
    assert status.reason == "invalid_argument"


def test_a_missing_scope_is_named():
    assert MissingScopeError(["keys:manage"]).message == "missing scope: keys:manage"


def test_anything_else_is_not_expected():
    assert rpc_status(RuntimeError("boom")) is None
