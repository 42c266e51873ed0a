"""Registration and the password login."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from comfyserve.auth import permissions
from comfyserve.auth.addresses import client_address
from comfyserve.auth.clock import Clock
from comfyserve.auth.errors import (
    EmailTakenError,
    InvalidArgumentError,
    InvalidLoginError,
    TooManyAttemptsError,
)
from comfyserve.auth.telemetry import Metrics
from comfyserve.auth.tenants import repository as tenants
from comfyserve.auth.tokens.models import TokenPair
from comfyserve.auth.tokens.service import TokenService
from comfyserve.auth.users import repository
from comfyserve.auth.users.models import Role, User
from comfyserve.auth.users.passwords import Passwords
from comfyserve.auth.users.rules import (
    MAX_EMAIL_CHARS,
    MAX_PASSWORD_CHARS,
    check_password,
    normalise_email,
    tenant_name,
)
from comfyserve.auth.users.throttle import LoginThrottle
from comfyserve.runtime.database import autocommit

log = structlog.get_logger(__name__)

_EMAIL_TAKEN = "users_email_key"


@dataclass(frozen=True, slots=True)
class Registration:
    email: str
    password: str
    tenant_name: str


@dataclass(frozen=True, slots=True)
class Login:
    email: str
    password: str
    client_address: str
    scopes: list[str]


class RegistrationService:
    def __init__(self, engine: AsyncEngine, passwords: Passwords, clock: Clock) -> None:
        self._engine = engine
        self._passwords = passwords
        self._clock = clock

    async def register(self, request: Registration) -> User:
        """A new user, owner of a new tenant."""
        email = normalise_email(request.email)
        password = check_password(request.password)
        name = tenant_name(request.tenant_name, email)
        password_hash = await self._passwords.hash(password)
        now = self._clock()
        user = User(
            id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            email=email,
            role=Role.OWNER,
            is_admin=False,
            created_at=now,
        )
        try:
            async with self._engine.begin() as conn:
                await tenants.add(conn, user.tenant_id, name, now)
                await repository.add(conn, user, password_hash)
        except IntegrityError as error:
            if _EMAIL_TAKEN in str(error.orig):
                raise EmailTakenError() from None
            raise
        log.info("auth.user.registered", user_id=str(user.id))
        return user


class LoginService:
    def __init__(
        self,
        engine: AsyncEngine,
        passwords: Passwords,
        throttle: LoginThrottle,
        tokens: TokenService,
        *,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._passwords = passwords
        self._throttle = throttle
        self._tokens = tokens
        self._metrics = metrics
        self._clock = clock

    async def login(self, request: Login) -> TokenPair:
        """A token pair for the right e-mail and password. An unknown e-mail
        and a wrong password take the same path (a lookup, one argon2 verify)
        to the same answer."""
        email = request.email.strip().lower()
        if not email:
            raise InvalidArgumentError("email", "required")
        if len(email) > MAX_EMAIL_CHARS:
            raise InvalidArgumentError("email", "not an e-mail address")
        if not request.password:
            raise InvalidArgumentError("password", "required")
        if len(request.password) > MAX_PASSWORD_CHARS:
            raise InvalidArgumentError(
                "password", f"at most {MAX_PASSWORD_CHARS} characters"
            )
        address = client_address(request.client_address)
        requested = permissions.parse_scopes(request.scopes)
        # Committed before the password is checked: see LoginThrottle.
        async with self._engine.begin() as conn:
            wait = await self._throttle.admit(conn, email, address, self._clock())
        if wait is not None:
            self._metrics.logins.labels("throttled").inc()
            raise TooManyAttemptsError(wait)
        async with autocommit(self._engine) as conn:
            stored = await repository.by_email(conn, email)
        verified = await self._passwords.verify(
            None if stored is None else stored.password_hash, request.password
        )
        if stored is None or not verified:
            self._metrics.logins.labels("refused").inc()
            raise InvalidLoginError()
        user = stored.user
        allowed = permissions.scopes_for(user.role, is_admin=user.is_admin)
        scopes = permissions.within(requested, allowed) if requested else allowed
        rehashed = (
            await self._passwords.hash(request.password)
            if self._passwords.needs_rehash(stored.password_hash)
            else None
        )
        async with self._engine.begin() as conn:
            await self._throttle.succeeded(conn, email, address)
            if rehashed is not None:
                await repository.set_password_hash(conn, user.id, rehashed)
            pair = await self._tokens.start(conn, user, scopes, address)
        self._metrics.logins.labels("success").inc()
        log.info("auth.login", user_id=str(user.id), rehashed=rehashed is not None)
        return pair
