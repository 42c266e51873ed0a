"""The checks a message's principal gets, as a call's does."""

import pytest

from comfyserve.contracts.scopes import SERVICE_SCOPE
from comfyserve.runtime.auth import Principal, PrincipalKind
from comfyserve.runtime.grpc_auth import Forbidden, bearer_credential, tenant_for


def key(*scopes: str, suspended: bool = False) -> Principal:
    return Principal(
        kind=PrincipalKind.API_KEY,
        subject="key:k1",
        tenant_id="t1",
        scopes=frozenset(scopes),
        tenant_suspended=suspended,
    )


def test_a_key_acts_for_its_own_tenant() -> None:
    assert tenant_for(key("workflows:write"), "", "workflows:write") == "t1"
    assert tenant_for(key("workflows:write"), "t1", "workflows:write") == "t1"


@pytest.mark.parametrize(
    ("principal", "requested", "problem"),
    [
        (key("workflows:read"), "", "missing scope: workflows:write"),
        (key("workflows:write"), "t2", "not the credential's tenant"),
        (key("workflows:write", suspended=True), "", "suspended"),
    ],
)
def test_a_key_is_refused(principal: Principal, requested: str, problem: str) -> None:
    with pytest.raises(Forbidden, match=problem):
        tenant_for(principal, requested, "workflows:write")


def test_a_service_names_the_tenant() -> None:
    service = Principal(
        kind=PrincipalKind.SERVICE,
        subject="service:gateway",
        tenant_id="",
        scopes=frozenset({SERVICE_SCOPE}),
    )

    assert tenant_for(service, "t9", "workflows:write") == "t9"


@pytest.mark.parametrize(
    ("value", "credential"),
    [("Bearer csk_1", "csk_1"), ("bearer  a.b.c ", "a.b.c"), ("Basic x", ""), ("", "")],
)
def test_bearer_credential(value: str, credential: str) -> None:
    assert bearer_credential(value) == credential
