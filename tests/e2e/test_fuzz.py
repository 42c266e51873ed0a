"""The gateway's OpenAPI document, fuzzed with a valid token against the
running product: whatever a request holds, no answer is a 5xx and none
breaks the schema the document gives for it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.support import Product

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 15


@pytest.fixture(scope="session")
def fuzzer_token(product: Product) -> str:
    """A user of a tenant of its own, so the fuzzer's jobs, files and spent
    rate limits touch no other test."""
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    password = "fuzzing passphrase"
    with httpx.Client(base_url=product.base_url, timeout=30) as client:
        client.post(
            "/auth/register", json={"email": email, "password": password}
        ).raise_for_status()
        tokens = client.post(
            "/auth/token", data={"username": email, "password": password}
        )
        tokens.raise_for_status()
    token: str = tokens.json()["access_token"]
    return token


def test_no_request_gets_a_server_error_or_an_undocumented_body(
    product: Product, fuzzer_token: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{product.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzzer_token}"}
    failures: dict[str, str] = {}
    calls: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10, "the document lists the gateway's routes"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            # The same examples on every run, so CI never fails by luck.
            derandomize=True,
        )
        def fuzz(case: Any) -> None:
            calls.append(1)
            case.call_and_validate(
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )

        try:
            fuzz()
        except Exception as failure:  # every operation is fuzzed, then all told
            failures[operation.label] = str(failure)[:2000]
    assert failures == {}
    assert len(calls) >= 5 * len(operations)
