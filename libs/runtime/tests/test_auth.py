"""Credentials to principals: access tokens verified locally, API keys cached,
and the gRPC server refusing calls without a valid credential."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from comfyserve.contracts.pb.workflow.v1 import workflow_pb2 as pb
from comfyserve.contracts.pb.workflow.v1 import workflow_pb2_grpc as pb_grpc
from comfyserve.contracts.scopes import SERVICE_SCOPE
from comfyserve.runtime.auth import (
    CredentialVerifier,
    JwksCache,
    KeyCache,
    Principal,
    PrincipalKind,
    TokenVerifier,
    Unauthenticated,
)
from comfyserve.runtime.grpc import insecure_channel, serve_grpc
from comfyserve.runtime.grpc_auth import require_admin, tenant_of_call

ISSUER, AUDIENCE = "comfyserve-auth", "comfyserve"


class Signer:
    """An auth service in miniature: keys, a JWKS, and tokens."""

    def __init__(self) -> None:
        self.keys: dict[str, Ed25519PrivateKey] = {}
        self.fetches = 0
        self.rotate()

    def rotate(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = Ed25519PrivateKey.generate()
        self.current = kid
        return kid

    def retire(self, kid: str) -> None:
        del self.keys[kid]

    async def jwks(self) -> str:
        self.fetches += 1
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"})
        return json.dumps({"keys": keys})

    def claims(self, **changes) -> dict:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user:u1",
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
            "tenant": "t1",
            "scopes": ["workflows:read"],
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, kid: str | None = None, **changes) -> str:
        kid = kid or self.current
        return jwt.encode(
            self.claims(**changes), self.keys[kid], "EdDSA", headers={"kid": kid}
        )


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def verifier(signer: Signer) -> TokenVerifier:
    return TokenVerifier(JwksCache(signer.jwks), issuer=ISSUER, audience=AUDIENCE)


async def test_a_good_token_names_its_tenant_and_scopes(signer, verifier) -> None:
    principal = await verifier.verify(signer.token())

    assert principal.kind is PrincipalKind.USER
    assert (principal.tenant_id, principal.user_id) == ("t1", "u1")
    assert principal.scopes == {"workflows:read"}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def forged(signer: Signer, kind: str) -> str:
    good = signer.token()
    header, payload, signature = good.split(".")
    if kind == "alg_none":
        return f"{b64({'alg': 'none', 'kid': signer.current})}.{payload}."
    if kind == "hs256_with_public_key":
        public = (
            signer.keys[signer.current]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        head = b64({"alg": "HS256", "kid": signer.current, "typ": "JWT"})
        body = b64(signer.claims())
        mac = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
        sig = base64.urlsafe_b64encode(mac).decode().rstrip("=")
        return f"{head}.{body}.{sig}"
    if kind == "tampered":
        return f"{header}.{b64(signer.claims(tenant='someone-else'))}.{signature}"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["alg_none", "hs256_with_public_key", "tampered"])
async def test_forged_tokens_are_refused(signer, verifier, kind) -> None:
    with pytest.raises(Unauthenticated):
        await verifier.verify(forged(signer, kind))


@pytest.mark.parametrize(
    "changes",
    [
        # Times from the moment the test runs, not from collection: a long
        # suite would otherwise reach a "future" nbf before this test does.
        lambda now: {"exp": now - 60},
        lambda now: {"nbf": now + 600},
        lambda now: {"aud": "someone-else"},
        lambda now: {"iss": "someone-else"},
        lambda now: {"exp": None},
        lambda now: {"jti": None},
        lambda now: {"tenant": None},
        lambda now: {"exp": 10**20},
        lambda now: {"email": {"not": "a string"}},
    ],
    ids=[
        "expired",
        "not_yet",
        "audience",
        "issuer",
        "no_exp",
        "no_jti",
        "no_tenant",
        "exp_out_of_range",
        "email_not_a_string",
    ],
)
async def test_tokens_with_bad_claims_are_refused(signer, verifier, changes) -> None:
    with pytest.raises(Unauthenticated):
        await verifier.verify(signer.token(**changes(int(time.time()))))


async def test_a_rotated_key_verifies_until_it_is_retired(signer, verifier) -> None:
    old = signer.current
    old_token = signer.token()
    await verifier.verify(old_token)
    verifier.jwks.refetch_s = 0
    signer.rotate()
    # A token of the new key: the unknown kid makes the cache fetch again.
    await verifier.verify(signer.token())
    await verifier.verify(old_token)
    signer.retire(old)
    # Caches pick the retirement up within their maximum age.
    verifier.jwks.refetch_s = verifier.jwks.max_age_s = 0
    with pytest.raises(Unauthenticated):
        await verifier.verify(old_token)
    fetched = signer.fetches
    # Unknown kids cannot make it fetch more than once per refetch period.
    verifier.jwks.refetch_s = verifier.jwks.max_age_s = 60
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await verifier.verify(
                jwt.encode(
                    signer.claims(),
                    signer.keys[signer.current],
                    "EdDSA",
                    headers={"kid": "nope"},
                )
            )
    assert signer.fetches <= fetched + 1


async def test_a_verified_token_is_remembered_until_its_key_is_retired(
    signer, verifier
) -> None:
    token = signer.token()
    first = await verifier.verify(token)
    fetched = signer.fetches
    assert await verifier.verify(token) is first
    assert signer.fetches == fetched

    signer.retire(signer.current)
    signer.rotate()
    verifier.jwks.refetch_s = verifier.jwks.max_age_s = 0
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


async def test_a_remembered_token_is_refused_once_it_expires(signer) -> None:
    verifier = TokenVerifier(
        JwksCache(signer.jwks), issuer=ISSUER, audience=AUDIENCE, leeway_s=0
    )
    token = signer.token(exp=int(time.time()) + 1)
    await verifier.verify(token)
    await asyncio.sleep(1.1)
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


async def test_remembered_tokens_are_bounded(signer) -> None:
    verifier = TokenVerifier(
        JwksCache(signer.jwks), issuer=ISSUER, audience=AUDIENCE, max_entries=2
    )
    tokens = [signer.token(jti=f"j{i}") for i in range(3)]
    for token in tokens:
        await verifier.verify(token)
    assert list(verifier._verified) == tokens[1:]


def principal(**changes) -> Principal:
    values = {
        "kind": PrincipalKind.API_KEY,
        "subject": "key:k1",
        "tenant_id": "t1",
        "scopes": frozenset({"workflows:read"}),
    }
    values.update(changes)
    return Principal(**values)


async def test_keys_are_remembered_briefly_and_expiry_counts_at_once() -> None:
    answers: list[Principal] = [principal()]
    asked = 0

    async def lookup(key: str) -> Principal:
        nonlocal asked
        asked += 1
        return answers[-1]

    cache = KeyCache(lookup, ttl_s=0.2)
    await cache.verify("csk_a")
    await cache.verify("csk_a")
    assert asked == 1
    await asyncio.sleep(0.25)
    answers.append(principal(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(Unauthenticated):
        await cache.verify("csk_a")
    assert asked == 2


class Servicer(pb_grpc.WorkflowServiceServicer):
    async def GetJob(self, request, context):
        return pb.Job(id=request.job_id, tenant_id=tenant_of_call(request.tenant_id))

    async def CancelJob(self, request, context):
        tenant = tenant_of_call(request.tenant_id, "workflows:write")
        return pb.Job(id=request.job_id, tenant_id=tenant)

    async def GetUsage(self, request, context):
        require_admin()
        return pb.GetUsageResponse()

    async def WatchJob(self, request, context):
        tenant = tenant_of_call(request.tenant_id)
        yield pb.JobUpdate(job=pb.Job(id=request.job_id, tenant_id=tenant))


class Keys:
    """Verifies fixed keys: a tenant's key and a service's."""

    async def verify(self, credential: str) -> Principal:
        if credential == "csk_tenant":
            return principal()
        if credential == "csk_writer":
            return principal(scopes=frozenset({"workflows:write"}))
        if credential == "csk_suspended":
            return principal(
                scopes=frozenset({"workflows:write"}), tenant_suspended=True
            )
        if credential == "csk_admin":
            return principal(scopes=frozenset({"admin"}))
        if credential == "csk_service":
            return principal(
                kind=PrincipalKind.SERVICE,
                subject="service:gateway",
                tenant_id="",
                scopes=frozenset({SERVICE_SCOPE}),
            )
        raise Unauthenticated("unknown")


@pytest.fixture
async def guarded():
    async with serve_grpc(
        service="comfyserve.workflow.v1.WorkflowService",
        add_servicers=lambda server: pb_grpc.add_WorkflowServiceServicer_to_server(
            Servicer(), server
        ),
        registry=CollectorRegistry(),
        metrics_prefix="guarded",
        address="127.0.0.1:0",
        verifier=Keys(),  # type: ignore[arg-type]
    ) as server:
        yield f"127.0.0.1:{server.port}"


async def get(address: str, credential: str | None, tenant: str) -> pb.Job:
    async with insecure_channel(address, credential) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        return await stub.GetJob(pb.GetJobRequest(tenant_id=tenant, job_id="j"))


@pytest.mark.parametrize("credential", [None, "csk_wrong"])
async def test_a_call_without_a_valid_credential_is_refused(guarded, credential):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get(guarded, credential, "t1")
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_tenant_comes_from_the_credential(guarded) -> None:
    assert (await get(guarded, "csk_tenant", "")).tenant_id == "t1"
    assert (await get(guarded, "csk_tenant", "t1")).tenant_id == "t1"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get(guarded, "csk_tenant", "t2")
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Our own services act for the tenant they name.
    assert (await get(guarded, "csk_service", "t2")).tenant_id == "t2"


async def test_a_streaming_call_carries_the_channels_credential(guarded) -> None:
    async with insecure_channel(guarded, "csk_tenant") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        updates = [u async for u in stub.WatchJob(pb.WatchJobRequest(job_id="j"))]
    assert [u.job.tenant_id for u in updates] == ["t1"]


async def cancel(address: str, credential: str) -> pb.Job:
    async with insecure_channel(address, credential) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        return await stub.CancelJob(pb.CancelJobRequest(job_id="j"))


async def usage(address: str, credential: str) -> pb.GetUsageResponse:
    async with insecure_channel(address, credential) as channel:
        return await pb_grpc.WorkflowServiceStub(channel).GetUsage(pb.GetUsageRequest())


async def test_a_call_needs_its_scope_and_a_suspended_tenant_cannot_write(
    guarded,
) -> None:
    assert (await cancel(guarded, "csk_writer")).tenant_id == "t1"
    for refused in ("csk_tenant", "csk_suspended"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await cancel(guarded, refused)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "workflows:write" in (await _details(cancel(guarded, "csk_tenant")))
    assert "suspended" in (await _details(cancel(guarded, "csk_suspended")))


async def test_admin_calls_are_for_administrators_and_services(guarded) -> None:
    await usage(guarded, "csk_admin")
    await usage(guarded, "csk_service")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await usage(guarded, "csk_writer")
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.details() == "missing scope: admin"


async def _details(call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.details() or ""


async def test_health_needs_no_credential(guarded) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with insecure_channel(guarded) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest()
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_credential_verifier_tells_tokens_from_keys(signer, verifier) -> None:
    async def lookup(key: str) -> Principal:
        return principal()

    both = CredentialVerifier(tokens=verifier, keys=KeyCache(lookup))

    user, key = await both.verify(signer.token()), await both.verify("csk_x")

    assert (user.kind, key.kind) == (PrincipalKind.USER, PrincipalKind.API_KEY)
    with pytest.raises(Unauthenticated):
        await both.verify("")
