"""ListTenants cursors round-trip, and anything else is refused by name."""

import uuid
from datetime import UTC, datetime

import pytest

from comfyserve.auth.errors import InvalidArgumentError
from comfyserve.auth.tenants import cursor


def test_a_cursor_round_trips():
    at, tenant_id = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), uuid.uuid4()
    assert cursor.decode(cursor.encode(at, tenant_id)) == (at, tenant_id)


@pytest.mark.parametrize(
    "value",
    ["garbage!", "e30", "WyJ4Il0", "WyIyMDI2LTAxLTAyVDAzOjA0OjA1IiwgInUiXQ"],
)
def test_anything_else_is_invalid(value):
    with pytest.raises(InvalidArgumentError) as refused:
        cursor.decode(value)
    assert refused.value.field == "cursor"
