"""Identity through the whole product: users, access tokens, refresh tokens,
API keys, tenants kept apart over REST and gRPC, limits and administration."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from comfyserve.auth.app import database, signing_keys
from comfyserve.auth.clock import system_clock
from comfyserve.auth.settings import Settings as AuthSettings
from comfyserve.contracts.pb.storage.v1 import storage_pb2 as st
from comfyserve.contracts.pb.storage.v1 import storage_pb2_grpc as st_grpc
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as wf
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as wf_grpc
from tests.e2e.support import (
    Product,
    invert_graph,
    png,
    slow_graph,
    submit,
    wait_final,
    wait_for_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "correct horse battery staple"


@dataclass
class User:
    email: str
    access: str
    refresh: str
    tenant_id: str

    def client(self, product: Product) -> httpx.AsyncClient:
        return product.client(self.access)


async def sign_up(product: Product) -> User:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        registered = await anonymous.post(
            "/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        tokens = await log_in(anonymous, email)
    return User(
        email,
        tokens["access_token"],
        tokens["refresh_token"],
        registered.json()["tenant_id"],
    )


async def log_in(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    answer = await client.post(
        "/auth/token", data={"username": email, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
async def alice(product: Product) -> User:
    return await sign_up(product)


@pytest.fixture
async def bob(product: Product) -> User:
    return await sign_up(product)


async def create_key(
    product: Product, user: User, scopes: list[str], **fields: Any
) -> dict[str, Any]:
    async with user.client(product) as client:
        created = await client.post(
            "/auth/api-keys",
            json={"name": f"key-{uuid.uuid4().hex[:6]}", "scopes": scopes, **fields},
        )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def refused_within(product: Product, credential: str, limit_s: float) -> None:
    """Polls with `credential` until it is refused; fails after `limit_s`."""
    async with product.client(credential) as client, asyncio.timeout(limit_s):
        while True:
            if (await client.get("/workflows")).status_code == 401:
                return
            await asyncio.sleep(0.2)


# --- the newcomer's path --------------------------------------------------------


async def test_register_log_in_make_a_key_and_run_a_job_with_it(
    product: Product, alice: User
) -> None:
    async with alice.client(product) as client:
        me = (await client.get("/auth/me")).json()
    assert (me["kind"], me["email"], me["tenant_id"]) == (
        "user",
        alice.email,
        alice.tenant_id,
    )
    assert me["role"] == "owner"
    key = await create_key(
        product, alice, ["workflows:write", "workflows:read", "files:read"]
    )
    assert key["secret"].startswith("csk_")

    async with product.client(key["secret"]) as client:
        job = await wait_final(
            client, (await submit(client, invert_graph((9, 9, 9))))["execution_id"]
        )
    assert job["status"] == "completed", job

    async with alice.client(product) as client:
        listed = (await client.get("/auth/api-keys")).json()["items"]
    mine = next(item for item in listed if item["id"] == key["id"])
    assert "secret" not in mine
    assert key["secret"] not in json.dumps(listed)
    assert mine["last_used_at"] is not None


# --- JWT attacks: each 401, never 500 -------------------------------------------


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.fixture
async def real_signer(product: Product) -> AsyncIterator[Any]:
    """The auth service's current signing key, read as the service reads it, so
    a forged claim is the only thing wrong with a token."""
    with mock.patch.dict(os.environ, product.services["auth"].env):
        settings = AuthSettings()
    async with database(settings) as engine:
        yield await signing_keys(engine, settings, system_clock).signer()


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def resigned(signer: Any, claims: dict[str, Any], kid: str | None = None) -> str:
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None},
        signer.key,
        algorithm="EdDSA",
        headers={"kid": kid or signer.kid},
    )


async def answer_to(product: Product, token: str) -> int:
    async with product.client(token) as client:
        return (await client.get("/workflows")).status_code


async def test_a_token_signed_again_with_the_real_key_is_accepted(
    product: Product, alice: User, real_signer: Any
) -> None:
    # What makes each attack below meaningful: only its one change is wrong.
    assert (
        await answer_to(product, resigned(real_signer, claims_of(alice.access))) == 200
    )


@pytest.mark.parametrize(
    "change",
    [
        # Times from the moment the test runs, not from collection: a long
        # suite would otherwise reach a "future" nbf before this test does.
        lambda now: {"exp": now - 120, "iat": now - 1000},
        lambda now: {"nbf": now + 600},
        lambda now: {"aud": "someone-else"},
        lambda now: {"iss": "someone-else"},
        lambda now: {"exp": None},
    ],
    ids=["expired", "nbf_in_future", "wrong_aud", "wrong_iss", "missing_exp"],
)
async def test_tokens_with_a_bad_claim_are_refused(
    product: Product,
    alice: User,
    real_signer: Any,
    change: Callable[[int], dict[str, Any]],
) -> None:
    token = resigned(
        real_signer, {**claims_of(alice.access), **change(int(time.time()))}
    )
    assert await answer_to(product, token) == 401


async def test_forged_tokens_are_refused(
    product: Product, alice: User, real_signer: Any, bob: User
) -> None:
    header, payload, signature = alice.access.split(".")
    kid = real_signer.kid
    public = real_signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64({"alg": "HS256", "kid": kid, "typ": "JWT"})
    mac = hmac.new(public, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    hs256 = f"{head}.{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    stolen = {**claims_of(alice.access), "tenant": bob.tenant_id}
    stranger = Ed25519PrivateKey.generate()
    forgeries = {
        "alg_none": f"{b64({'alg': 'none', 'kid': kid})}.{payload}.",
        "hs256_with_public_key": hs256,
        "tampered_payload": f"{header}.{b64(stolen)}.{signature}",
        "unknown_kid": jwt.encode(
            claims_of(alice.access), stranger, algorithm="EdDSA", headers={"kid": "x"}
        ),
        "stranger_key_real_kid": jwt.encode(
            claims_of(alice.access), stranger, algorithm="EdDSA", headers={"kid": kid}
        ),
        "not_a_jwt": "eyJ.eyJ.x",
    }
    answers = {name: await answer_to(product, t) for name, t in forgeries.items()}
    assert answers == dict.fromkeys(forgeries, 401)


async def test_a_key_rotated_out_verifies_until_it_is_retired(
    product: Product, alice: User
) -> None:
    auth = product.services["auth"]
    old_kid = jwt.get_unverified_header(alice.access)["kid"]
    new_kid = auth.answer("rotate-keys")["kid"]
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        fresh = (await log_in(anonymous, alice.email))["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    # The overlap: tokens of the old key still work beside the new ones.
    assert await answer_to(product, alice.access) == 200
    assert await answer_to(product, fresh) == 200

    assert auth.answer("retire-key", old_kid)["kid"] == old_kid
    # The gateway re-reads the JWKS every GATEWAY_JWKS_MAX_AGE_SECONDS (2 here).
    await refused_within(product, alice.access, 10)
    assert await answer_to(product, fresh) == 200


# --- refresh tokens -------------------------------------------------------------


async def refresh(product: Product, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        return await anonymous.post("/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(
    product: Product, alice: User
) -> None:
    first = await refresh(product, alice.refresh)
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != alice.refresh
    assert rotated["token_type"] == "bearer"
    assert await answer_to(product, rotated["access_token"]) == 200

    reused = await refresh(product, alice.refresh)
    assert reused.status_code == 401
    # The reuse ended the whole family: the token it was rotated to is dead too.
    assert (await refresh(product, rotated["refresh_token"])).status_code == 401


async def test_logout_revokes_the_refresh_token(product: Product, alice: User) -> None:
    async with alice.client(product) as client:
        out = await client.post("/auth/logout", json={"refresh_token": alice.refresh})
    assert out.status_code in (200, 204), out.text
    assert (await refresh(product, alice.refresh)).status_code == 401


async def test_a_wrong_password_and_an_unknown_user_answer_alike(
    product: Product, alice: User
) -> None:
    async with httpx.AsyncClient(base_url=product.base_url, timeout=30) as anonymous:
        wrong = await anonymous.post(
            "/auth/token", data={"username": alice.email, "password": "not it"}
        )
        unknown = await anonymous.post(
            "/auth/token",
            data={
                "username": f"nobody-{uuid.uuid4().hex}@example.com",
                "password": "x",
            },
        )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


# --- API keys -------------------------------------------------------------------


async def test_a_key_has_only_its_scopes(product: Product, alice: User) -> None:
    key = await create_key(product, alice, ["workflows:read"])
    async with product.client(key["secret"]) as client:
        assert (await client.get("/workflows")).status_code == 200
        refused = await client.post(
            "/workflows/execute", json={"workflow": invert_graph((1, 2, 3))}
        )
        files = await client.get("/files/any")
    assert refused.status_code == 403
    assert "workflows:write" in refused.text
    assert files.status_code == 403
    assert "files:read" in files.text


async def test_a_revoked_key_is_refused_within_five_seconds(
    product: Product, alice: User
) -> None:
    key = await create_key(product, alice, ["workflows:read"])
    assert await answer_to(product, key["secret"]) == 200
    async with alice.client(product) as client:
        revoked = await client.delete(f"/auth/api-keys/{key['id']}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    # API_KEY_CACHE_SECONDS is at most 5: no gateway trusts a key longer.
    await refused_within(product, key["secret"], 5.5)


async def test_an_expired_key_is_refused(product: Product, alice: User) -> None:
    key = await create_key(product, alice, ["workflows:read"], expires_in_seconds=2)
    assert key["expires_at"] is not None
    await refused_within(product, key["secret"], 2 + 5.5)


async def test_a_key_cannot_carry_scopes_its_maker_lacks(
    product: Product, alice: User
) -> None:
    async with alice.client(product) as client:
        answer = await client.post(
            "/auth/api-keys", json={"name": "greedy", "scopes": ["admin"]}
        )
    assert answer.status_code == 403, answer.text


# --- tenants apart (BOLA) -------------------------------------------------------


async def test_another_tenants_resources_are_not_found_over_rest(
    product: Product, alice: User, bob: User
) -> None:
    key = await create_key(product, alice, ["workflows:read"])
    async with alice.client(product) as client:
        job = await submit(client, invert_graph((4, 4, 4)))
        done = await wait_final(client, job["execution_id"])
        uploaded = await client.post(
            "/files", files={"file": ("mine.png", png((1, 1, 1), (4, 4)), "image/png")}
        )
    assert done["status"] == "completed", done
    assert uploaded.status_code == 201, uploaded.text
    job_id, file_id = job["execution_id"], uploaded.json()["id"]

    async with bob.client(product) as other:
        answers = {
            "job": await other.get(f"/workflows/{job_id}"),
            "cancel": await other.post(f"/workflows/{job_id}/cancel"),
            "events": await other.get(f"/workflows/{job_id}/events"),
            "file": await other.get(f"/files/{file_id}"),
            "content": await other.get(f"/files/{file_id}/content"),
            "revoke key": await other.delete(f"/auth/api-keys/{key['id']}"),
        }
        listed = (await other.get("/workflows")).json()["items"]
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(
        answers, 404
    )
    assert job_id not in {item["execution_id"] for item in listed}
    # Outputs are reached only through their job, which stayed hidden.
    assert all(o["url"] not in str(listed) for o in done["outputs"])
    assert await answer_to(product, key["secret"]) == 200


def grpc_target(product: Product, service: str) -> str:
    port = product.services[service].env[f"{service.upper()}_GRPC_PORT"]
    return f"127.0.0.1:{port}"


def bearer(credential: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {credential}"),)


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_the_internal_grpc_surface_takes_the_tenant_from_the_credential(
    product: Product, alice: User, bob: User
) -> None:
    async with alice.client(product) as client:
        job_id = (await submit(client, invert_graph((6, 6, 6))))["execution_id"]
        uploaded = await client.post(
            "/files", files={"file": ("a.png", png((2, 2, 2), (4, 4)), "image/png")}
        )
    file_id = uploaded.json()["id"]
    async with (
        grpc.aio.insecure_channel(grpc_target(product, "workflow")) as workflow,
        grpc.aio.insecure_channel(grpc_target(product, "storage")) as storage,
    ):
        jobs = wf_grpc.WorkflowServiceStub(workflow)
        files = st_grpc.StorageServiceStub(storage)
        get_job = wf.GetJobRequest(tenant_id=alice.tenant_id, job_id=job_id)
        get_file = st.GetFileRequest(tenant_id=alice.tenant_id, file_id=file_id)
        codes = {
            "no credential": await code_of(jobs.GetJob(get_job)),
            "bad credential": await code_of(
                jobs.GetJob(get_job, metadata=bearer("csk_not_a_key"))
            ),
            "another tenant named": await code_of(
                jobs.GetJob(get_job, metadata=bearer(bob.access))
            ),
            "own tenant, their job": await code_of(
                jobs.GetJob(
                    wf.GetJobRequest(job_id=job_id), metadata=bearer(bob.access)
                )
            ),
            "file, no credential": await code_of(files.GetFile(get_file)),
            "file, another tenant named": await code_of(
                files.GetFile(get_file, metadata=bearer(bob.access))
            ),
            "file, own tenant, their file": await code_of(
                files.GetFile(
                    st.GetFileRequest(file_id=file_id), metadata=bearer(bob.access)
                )
            ),
            "owner": await code_of(jobs.GetJob(get_job, metadata=bearer(alice.access))),
            "owner's file": await code_of(
                files.GetFile(get_file, metadata=bearer(alice.access))
            ),
        }
    assert codes == {
        "no credential": grpc.StatusCode.UNAUTHENTICATED,
        "bad credential": grpc.StatusCode.UNAUTHENTICATED,
        "another tenant named": grpc.StatusCode.PERMISSION_DENIED,
        "own tenant, their job": grpc.StatusCode.NOT_FOUND,
        "file, no credential": grpc.StatusCode.UNAUTHENTICATED,
        "file, another tenant named": grpc.StatusCode.PERMISSION_DENIED,
        "file, own tenant, their file": grpc.StatusCode.NOT_FOUND,
        "owner": grpc.StatusCode.OK,
        "owner's file": grpc.StatusCode.OK,
    }


# --- limits ---------------------------------------------------------------------


async def test_exactly_the_burst_passes_then_the_allowance_refills(
    product: Product, alice: User
) -> None:
    # One request every 3 s, three at once: this key's own limit.
    key = await create_key(
        product,
        alice,
        ["workflows:read"],
        rate_limit={"per_minute": 20, "burst": 3},
    )
    async with product.client(key["secret"]) as client:
        passed = [await client.get("/workflows") for _ in range(3)]
        refused = await client.get("/workflows")
        assert [a.status_code for a in passed] == [200, 200, 200]
        assert refused.status_code == 429, refused.text
        assert passed[0].headers["RateLimit-Policy"] == '"read";q=3;w=9'
        assert passed[0].headers["RateLimit"].startswith('"read";r=2;')
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= 3
        assert refused.headers["RateLimit"] == f'"read";r=0;t={wait}'

        await asyncio.sleep(wait + 0.2)
        again = await client.get("/workflows")
        after = await client.get("/workflows")
    assert again.status_code == 200
    assert after.status_code == 429


async def test_a_tenant_over_its_queue_quota_gets_queue_full(
    product: Product, alice: User
) -> None:
    async with product.client(product.admin_key) as admin:
        quota = await admin.put(
            f"/admin/tenants/{alice.tenant_id}/quota",
            json={"max_running": 1, "max_queued": 1},
        )
    assert quota.status_code == 200, quota.text
    async with alice.client(product) as client:
        running = await submit(client, slow_graph(6, 1))
        await wait_for_status(client, running["execution_id"], {"running"})
        queued = await submit(client, slow_graph(6, 2))
        full = await client.post(
            "/workflows/execute", json={"workflow": slow_graph(6, 3)}
        )
        for job in (running, queued):
            await client.post(f"/workflows/{job['execution_id']}/cancel")
    assert full.status_code == 429, full.text
    assert full.json()["error"] == "queue_full"
    assert int(full.headers["Retry-After"]) >= 1


# --- administration -------------------------------------------------------------


async def find_tenant(admin: httpx.AsyncClient, tenant_id: str) -> dict[str, Any]:
    params: dict[str, str] = {"limit": "100"}
    while True:
        answer = await admin.get("/admin/tenants", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        for tenant in page["items"]:
            if tenant["id"] == tenant_id:
                found: dict[str, Any] = tenant
                return found
        assert page["next_cursor"], f"tenant {tenant_id} is not listed"
        params["cursor"] = page["next_cursor"]


async def test_admins_see_usage_and_suspend_a_tenant_at_once(
    product: Product, alice: User
) -> None:
    async with alice.client(product) as client:
        done = await wait_final(
            client, (await submit(client, invert_graph((3, 3, 3))))["execution_id"]
        )
        assert (await client.get("/admin/tenants")).status_code == 403
    assert done["status"] == "completed"

    async with product.client(product.admin_key) as admin:
        mine = await find_tenant(admin, alice.tenant_id)
        assert mine["usage"]["jobs_by_status"].get("completed", 0) >= 1
        assert mine["usage"]["gpu_seconds"] > 0
        assert mine["usage"]["stored_bytes"] > 0
        suspended = await admin.post(f"/admin/tenants/{alice.tenant_id}/suspend")
        assert suspended.status_code == 200, suspended.text

    async with alice.client(product) as client:
        write = await client.post(
            "/workflows/execute", json={"workflow": invert_graph((1, 1, 1))}
        )
        read = await client.get("/workflows")
    assert write.status_code == 403, write.text
    assert read.status_code == 200

    async with product.client(product.admin_key) as admin:
        back = await admin.post(f"/admin/tenants/{alice.tenant_id}/reinstate")
    assert back.status_code == 200
    async with alice.client(product) as client:
        await submit(client, invert_graph((1, 1, 1)))


async def test_an_admin_revokes_any_tenants_key(product: Product, alice: User) -> None:
    key = await create_key(product, alice, ["workflows:read"])
    async with product.client(product.admin_key) as admin:
        revoked = await admin.delete(f"/admin/api-keys/{key['id']}")
    assert revoked.status_code == 200, revoked.text
    await refused_within(product, key["secret"], 5.5)


# --- mass assignment ------------------------------------------------------------


async def test_unknown_fields_are_refused(product: Product, alice: User) -> None:
    async with alice.client(product) as client:
        answers = [
            await client.post(
                "/workflows/execute",
                json={"workflow": invert_graph((1, 1, 1)), "tenant_id": "theirs"},
            ),
            await client.post(
                "/auth/api-keys",
                json={"name": "k", "scopes": ["workflows:read"], "tenant_id": "x"},
            ),
        ]
    async with httpx.AsyncClient(base_url=product.base_url) as anonymous:
        answers.append(
            await anonymous.post(
                "/auth/register",
                json={"email": "m@example.com", "password": PASSWORD, "role": "owner"},
            )
        )
    assert [a.status_code for a in answers] == [422, 422, 422]
    assert all("tenant_id" in a.text or "role" in a.text for a in answers), [
        a.text for a in answers
    ]
