"""The first administrator: a user flagged admin, owner of a tenant of its
own, and an API key of its tenant with every scope.

Idempotent: a second run finds the user and its key and creates nothing. The
password and the key are in the answer only when this run made them (the
password only when none was configured), so whoever runs it keeps them then.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.auth.clock import Clock
from comfyserve.auth.db import lock
from comfyserve.auth.keys import repository as keys
from comfyserve.auth.keys.models import BOOTSTRAP_KEY_NAME
from comfyserve.auth.keys.service import add_tenant_key
from comfyserve.auth.tenants import repository as tenants
from comfyserve.auth.users import repository as users
from comfyserve.auth.users.models import Role, User
from comfyserve.auth.users.passwords import Passwords
from comfyserve.auth.users.rules import check_password, normalise_email
from comfyserve.contracts.scopes import ALL_SCOPES

log = structlog.get_logger(__name__)

ADMIN_TENANT_NAME = "admin"
_BOOTSTRAP_LOCK = 0x61757468_626F6F74


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    email: str
    user_id: UUID
    tenant_id: UUID
    # Set only when this run generated it, or made the key.
    password: str | None
    api_key: str | None

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "email": self.email,
            "user_id": str(self.user_id),
            "tenant_id": str(self.tenant_id),
        }
        if self.password is not None:
            answer["password"] = self.password
        if self.api_key is not None:
            answer["api_key"] = self.api_key
        return answer


async def bootstrap(
    engine: AsyncEngine,
    passwords: Passwords,
    *,
    email: str,
    password: str | None,
    clock: Clock,
) -> Bootstrapped:
    address = normalise_email(email, field="AUTH_BOOTSTRAP_ADMIN_EMAIL")
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(18)
    password_hash = await passwords.hash(
        check_password(password, field="AUTH_BOOTSTRAP_ADMIN_PASSWORD")
    )
    now = clock()
    async with engine.begin() as conn:
        await lock(conn, _BOOTSTRAP_LOCK)
        stored = await users.by_email(conn, address)
        if stored is None:
            user = User(
                id=uuid.uuid4(),
                tenant_id=uuid.uuid4(),
                email=address,
                role=Role.OWNER,
                is_admin=True,
                created_at=now,
            )
            await tenants.add(conn, user.tenant_id, ADMIN_TENANT_NAME, now)
            await users.add(conn, user, password_hash)
            log.info("auth.bootstrap.admin_created", user_id=str(user.id))
        else:
            # An existing account keeps its password; it only becomes admin.
            user = stored.user
            if not user.is_admin:
                await users.make_admin(conn, user.id)
                log.info("auth.bootstrap.admin_granted", user_id=str(user.id))
        created = None
        if await keys.bootstrap_key(conn, user.tenant_id) is None:
            created = await add_tenant_key(
                conn,
                tenant_id=user.tenant_id,
                name=BOOTSTRAP_KEY_NAME,
                scopes=frozenset(ALL_SCOPES),
                created_by=None,
                now=now,
            )
            log.info("auth.bootstrap.key_created", key_id=str(created.key.id))
    return Bootstrapped(
        email=address,
        user_id=user.id,
        tenant_id=user.tenant_id,
        password=generated if stored is None else None,
        api_key=None if created is None else created.secret,
    )
