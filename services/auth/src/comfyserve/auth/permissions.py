"""Who may do what: the scopes a role grants, and the checks every feature
makes of its caller."""

from __future__ import annotations

from collections.abc import Iterable

from comfyserve.auth.errors import InvalidArgumentError, MissingScopeError
from comfyserve.auth.users.models import Role
from comfyserve.contracts.scopes import ALL_SCOPES, Scope
from comfyserve.runtime.auth import Principal

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.OWNER: ALL_SCOPES - {Scope.ADMIN},
    Role.MEMBER: frozenset(
        {
            Scope.WORKFLOWS_READ,
            Scope.WORKFLOWS_WRITE,
            Scope.FILES_READ,
            Scope.FILES_WRITE,
        }
    ),
}


def scopes_for(role: Role, *, is_admin: bool) -> frozenset[str]:
    """Every scope a user may hold: its role's, and `admin` only for users
    flagged admin (the bootstrap admin)."""
    granted = set(ROLE_SCOPES[role])
    if is_admin:
        granted.add(Scope.ADMIN)
    return frozenset(granted)


def parse_scopes(values: Iterable[str], field: str = "scopes") -> frozenset[str]:
    """Requested scope names, each one of `Scope` (never `service`, which only
    configured service keys hold)."""
    scopes = frozenset(values)
    unknown = sorted(scopes - {scope.value for scope in Scope})
    if unknown:
        raise InvalidArgumentError(field, f"unknown scope {unknown[0]!r}")
    return scopes


def within(requested: frozenset[str], allowed: frozenset[str]) -> frozenset[str]:
    """`requested`, refused with the scopes beyond `allowed` named."""
    beyond = requested - allowed
    if beyond:
        raise MissingScopeError(beyond)
    return requested


def require(caller: Principal, scope: Scope) -> None:
    if scope not in caller.scopes:
        raise MissingScopeError([scope])
