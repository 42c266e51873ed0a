import base64
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from comfyserve.workflow.errors import InvalidCursorError
from comfyserve.workflow.jobs.cursor import Cursor


def test_round_trip_keeps_microseconds_and_id():
    cursor = Cursor(datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC), uuid4())
    token = cursor.encode()
    assert "=" not in token
    assert Cursor.decode(token) == cursor


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "!!!",
        Cursor(datetime(2025, 1, 1, tzinfo=UTC), uuid4()).encode()[:-3],
    ],
)
def test_foreign_tokens_are_rejected(token: str):
    with pytest.raises(InvalidCursorError):
        Cursor.decode(token)


def test_naive_timestamps_are_rejected():
    token = base64.urlsafe_b64encode(
        f"1|2025-01-01T00:00:00|{uuid4()}".encode()
    ).decode()
    with pytest.raises(InvalidCursorError):
        Cursor.decode(token)
