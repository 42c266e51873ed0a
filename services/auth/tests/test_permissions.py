"""Scopes by role, and the checks made of a caller."""

import pytest

from comfyserve.auth.errors import InvalidArgumentError, MissingScopeError
from comfyserve.auth.permissions import parse_scopes, require, scopes_for, within
from comfyserve.auth.users.models import Role
from comfyserve.contracts.scopes import ALL_SCOPES, Scope
from comfyserve.runtime.auth import Principal, PrincipalKind


def test_an_owner_holds_every_scope_but_admin():
    assert scopes_for(Role.OWNER, is_admin=False) == ALL_SCOPES - {Scope.ADMIN}


def test_a_member_works_with_workflows_and_files():
    assert scopes_for(Role.MEMBER, is_admin=False) == {
        "workflows:read",
        "workflows:write",
        "files:read",
        "files:write",
    }


def test_admin_comes_only_with_the_admin_flag():
    assert Scope.ADMIN in scopes_for(Role.MEMBER, is_admin=True)
    assert scopes_for(Role.OWNER, is_admin=True) == ALL_SCOPES


def test_only_known_scopes_parse():
    assert parse_scopes(["files:read", "files:read"]) == {"files:read"}
    for unknown in ("service", "files:*", ""):
        with pytest.raises(InvalidArgumentError) as refused:
            parse_scopes([unknown])
        assert refused.value.field == "scopes"


def test_scopes_beyond_the_allowed_are_named():
    with pytest.raises(MissingScopeError, match="admin, keys:manage"):
        within(frozenset({"admin", "keys:manage", "files:read"}), {"files:read"})


def test_require_names_the_missing_scope():
    caller = Principal(PrincipalKind.USER, "user:u", "t", frozenset({"files:read"}))
    require(caller, Scope.FILES_READ)
    with pytest.raises(MissingScopeError, match="keys:manage"):
        require(caller, Scope.KEYS_MANAGE)
