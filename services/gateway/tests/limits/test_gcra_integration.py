"""Rate limits and suspensions against the stack's Redis: GCRA's burst, its
headers and its refill, per-key overrides, and a suspension every write sees."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as au
from comfyserve.contracts.scopes import ALL_SCOPES
from comfyserve.gateway.auth.principal import tenant_id_for_key
from comfyserve.gateway.limits.gcra import bucket_key
from comfyserve.gateway.limits.policy import Quota
from comfyserve.runtime.auth import Principal, PrincipalKind
from comfyserve.runtime.redis import redis_client

from ..fakes.auth import ADMIN_TOKEN, user_principal

pytestmark = pytest.mark.integration

# One request's allowance comes back each second; three may come at once.
PER_MINUTE = 60
BURST = 3
INTERVAL_MS = 1000


@pytest.fixture
async def redis(stack):
    client = redis_client(stack["REDIS_URL"], timeout_seconds=2)
    yield client
    await client.aclose()


@pytest.fixture
def key(unique):
    """A bootstrap key of this test's own: its buckets are new."""
    return f"key-{unique}"


@pytest.fixture
async def limited(make_app, settings, serve_app, key):
    limits = {"rate_read_per_minute": PER_MINUTE, "rate_read_burst": BURST}
    app = make_app(settings.model_copy(update={**limits, "api_keys": [SecretStr(key)]}))
    async with serve_app(app) as client:
        yield client


async def _redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _until_one_is_back(redis: Redis, bucket: str, quota: Quota) -> None:
    """Waits, on Redis' clock, until the bucket allows one more request."""
    async with asyncio.timeout(10):
        while True:
            tat = int(await redis.get(bucket))
            allowed_at = tat - (quota.burst - 1) * quota.interval_ms
            if await _redis_ms(redis) >= allowed_at:
                return
            await asyncio.sleep(0.02)


async def test_exactly_the_burst_passes_then_429_until_it_refills(limited, redis, key):
    headers = {"Authorization": f"Bearer {key}"}
    bucket = bucket_key("read", f"bootstrap:{tenant_id_for_key(key)}")

    passed = [await limited.get("/workflows", headers=headers) for _ in range(BURST)]
    refused = await limited.get("/workflows", headers=headers)
    wait_ms = int(await redis.get(bucket)) - (BURST - 1) * INTERVAL_MS
    wait_ms -= await _redis_ms(redis)

    assert [r.status_code for r in passed] == [200] * BURST
    assert [r.headers["RateLimit"] for r in passed] == [
        f'"read";r={left};t=1' for left in (2, 1, 0)
    ]
    policy = f'"read";q={BURST};w={BURST * INTERVAL_MS // 1000}'
    assert {r.headers["RateLimit-Policy"] for r in passed} == {policy}
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["RateLimit-Policy"] == policy
    # Redis still counts the bucket empty after the answer, for at most one
    # interval: the wait until one more, rounded up to whole seconds.
    assert 0 < wait_ms <= INTERVAL_MS
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit"] == '"read";r=0;t=1'

    await _until_one_is_back(redis, bucket, Quota(PER_MINUTE, BURST))
    refilled = await limited.get("/workflows", headers=headers)

    assert refilled.status_code == 200
    assert refilled.headers["RateLimit"].startswith('"read";r=0;')


async def test_an_api_keys_own_limits_replace_the_defaults(
    make_app, settings, serve_app, principals, unique
):
    credential = f"csk_{unique}"
    principals[credential] = Principal(
        kind=PrincipalKind.API_KEY,
        subject=f"key:{unique}",
        tenant_id=str(uuid.uuid4()),
        scopes=frozenset(ALL_SCOPES),
        rate_limit_per_minute=30,
        rate_limit_burst=2,
    )
    headers = {"Authorization": f"Bearer {credential}"}

    async with serve_app(make_app(settings)) as client:
        answers = [await client.get("/workflows", headers=headers) for _ in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 429]
    # Two at once, refilling one every 2 s: 4 s to refill the burst.
    assert answers[0].headers["RateLimit-Policy"] == '"read";q=2;w=4'
    assert answers[2].headers["Retry-After"] == "2"


async def test_a_suspension_refuses_the_tenants_writes_at_once_and_serves_reads(
    make_app, settings, serve_app, principals, auth, api_workflow
):
    tenant = str(uuid.uuid4())
    auth.tenants[tenant] = au.Tenant(id=tenant, name="suspended")
    credential = f"tok.{tenant}.x"
    principals[credential] = user_principal(credential, tenant, frozenset(ALL_SCOPES))
    headers = {"Authorization": f"Bearer {credential}"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    submit = {"workflow": api_workflow}

    # Two gateways: one suspends, the other refuses at once.
    async with (
        serve_app(make_app(settings)) as first,
        serve_app(make_app(settings)) as second,
    ):
        suspended = await first.post(f"/admin/tenants/{tenant}/suspend", headers=admin)
        write = await second.post("/workflows/execute", headers=headers, json=submit)
        read = await second.get("/workflows", headers=headers)
        await first.post(f"/admin/tenants/{tenant}/reinstate", headers=admin)
        again = await second.post("/workflows/execute", headers=headers, json=submit)

    assert suspended.status_code == 200
    assert suspended.json()["suspended"] is True
    assert write.status_code == 403
    assert write.json()["error"] == "tenant_suspended"
    assert read.status_code == 200
    assert again.status_code == 202
