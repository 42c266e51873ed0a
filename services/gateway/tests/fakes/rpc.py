"""gRPC errors as a grpc.aio stub raises them, and protobuf timestamps."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2


def make_rpc_error(
    code: grpc.StatusCode,
    details: str,
    violations: dict[str, str] | None = None,
    *,
    reason: str | None = None,
    retry_after_s: float | None = None,
) -> grpc.aio.AioRpcError:
    """The error a grpc.aio stub raises, optionally with the details our
    services attach (BadRequest, ErrorInfo, RetryInfo)."""
    trailing = grpc.aio.Metadata()
    status = status_pb2.Status(code=code.value[0], message=details)
    if violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=name, description=text
                )
                for name, text in violations.items()
            ]
        )
        status.details.add().Pack(bad_request)
    if reason is not None:
        status.details.add().Pack(
            error_details_pb2.ErrorInfo(reason=reason, domain="comfyserve")
        )
    if retry_after_s is not None:
        delay = Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    if status.details:
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), trailing, details=details, debug_error_string=None
    )


def timestamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def cursor_start(cursor: str) -> int:
    """Where a page starts, as the fakes' cursors say; one they never issued
    is INVALID_ARGUMENT naming `cursor`, as the services answer."""
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit()):
        raise make_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "cursor: not a cursor this service issued",
            {"cursor": "not a cursor this service issued"},
        )
    return int(cursor)
