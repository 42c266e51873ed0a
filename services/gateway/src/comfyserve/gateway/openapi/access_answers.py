"""Documented answers of access (limits, suspension), `/auth` and `/admin`."""

from __future__ import annotations

from comfyserve.gateway.errors import UNAVAILABLE_RETRY_AFTER_SECONDS
from comfyserve.gateway.openapi.answers import Answer

_RATE_HEADERS = {
    "Retry-After": "Seconds until one more request is allowed.",
    "RateLimit-Policy": (
        'The route class\'s policy (draft-ietf-httpapi-ratelimit-headers): `"submit"'
        ";q=<burst>;w=<seconds a spent burst takes to refill>`; also on answers "
        "that were let through."
    ),
    "RateLimit": (
        '`"submit";r=<requests left>;t=<seconds until one more>`; also on '
        "answers that were let through."
    ),
}
_RETRY_LATER = {"Retry-After": f"`{UNAVAILABLE_RETRY_AFTER_SECONDS}` (seconds)"}

# Every guarded route.
AUTH_UNAVAILABLE = Answer(
    "auth_unavailable",
    503,
    "service_unavailable",
    "The credential is one the auth service must check (an API key, or a token "
    "signed by a key not seen yet) and it cannot be asked.",
    "Credentials cannot be checked now; retry later",
    headers=_RETRY_LATER,
)
RATE_LIMITED = Answer(
    "rate_limited",
    429,
    "rate_limited",
    "The caller (the client address, on public routes) has spent its allowance "
    "for this class of route; wait `Retry-After` seconds.",
    "Too many submit requests; retry in 2 s",
    headers=_RATE_HEADERS,
)
LIMITS_UNAVAILABLE = Answer(
    "limits_unavailable",
    503,
    "limits_unavailable",
    "A write while Redis, which keeps rate limits and suspensions, cannot be "
    "reached: writes are refused (reads are served) until it is back.",
    "Rate limiting is unavailable (Redis cannot be reached): writes are refused "
    "until it is back; reads are served meanwhile",
    headers=_RETRY_LATER,
)
TENANT_SUSPENDED = Answer(
    "tenant_suspended",
    403,
    "tenant_suspended",
    "The caller's tenant is suspended: it may read, not write.",
    "This tenant is suspended: it may read but not write",
)
QUEUE_FULL = Answer(
    "queue_full",
    429,
    "queue_full",
    "The tenant has as many executions queued as its quota allows; retry after "
    "`Retry-After` seconds.",
    "queue_full: this tenant already has 100 jobs queued, its limit; retry once "
    "some have started",
    headers={"Retry-After": "Seconds to wait."},
)
REFUSED_ARGUMENT = Answer(
    "refused_argument",
    422,
    "invalid_argument",
    "The backing service refused a value; `fields` names it (a password under "
    "10 characters, an e-mail that is no address, a cursor it did not issue).",
    "password: at least 10 characters are required",
    {"fields": [{"field": "password", "message": "at least 10 characters"}]},
)

# /auth.
EMAIL_TAKEN = Answer(
    "email_taken",
    409,
    "email_taken",
    "A user with this e-mail exists.",
    "A user with this e-mail exists",
)
INVALID_LOGIN = Answer(
    "invalid_login",
    401,
    "invalid_credentials",
    "A wrong password or an unknown e-mail: the same answer for both.",
    "Invalid e-mail or password",
    headers={"WWW-Authenticate": "`Bearer`"},
)
LOGIN_THROTTLED = Answer(
    "login_throttled",
    429,
    "too_many_attempts",
    "Too many failed sign-ins for this account or address; wait `Retry-After` seconds.",
    "Too many failed sign-ins; retry later",
    headers={"Retry-After": "Seconds to wait."},
)
INVALID_REFRESH_TOKEN = Answer(
    "invalid_refresh_token",
    401,
    "unauthorized",
    "The refresh token is expired, revoked or was used before (which revokes "
    "its whole session).",
    "The refresh token is not valid (expired, revoked or already used)",
    headers={"WWW-Authenticate": "`Bearer`"},
)
BOOTSTRAP_KEY = Answer(
    "bootstrap_key",
    403,
    "bootstrap_key",
    "The caller is a bootstrap key (`GATEWAY_API_KEYS`), which the auth service "
    "does not know; this route acts through it.",
    "A bootstrap key (GATEWAY_API_KEYS) is unknown to the auth service; use an "
    "access token or an API key it issued",
)
AUTH_FORBIDDEN = Answer(
    "auth_forbidden",
    403,
    "forbidden",
    "The auth service refused the caller: scopes beyond its own, a suspended tenant.",
    "missing scope: admin",
)
KEY_LIMIT = Answer(
    "key_limit",
    409,
    "key_limit",
    "The tenant has as many active API keys as it may; revoke one first.",
    "the tenant has 50 active API keys, the most it may; revoke one",
)
KEY_NOT_FOUND = Answer(
    "key_not_found",
    404,
    "not_found",
    "No such API key, or another tenant's.",
    "api key '6f1c…' not found",
)

# /admin.
TENANT_NOT_FOUND = Answer(
    "tenant_not_found",
    404,
    "not_found",
    "No such tenant.",
    "tenant '6f1c…' not found",
)
