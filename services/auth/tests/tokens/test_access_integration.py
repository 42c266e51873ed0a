"""Access tokens as every other service sees them: verified by the runtime's
`TokenVerifier` against this service's JWKS, and refused in every malformed,
foreign or expired form."""

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import grpc
import jwt
import pytest

from comfyserve.auth.tokens.access import AccessTokens
from comfyserve.auth.users.models import Role, User
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.contracts.scopes import Scope
from comfyserve.runtime.auth import JwksCache, PrincipalKind, TokenVerifier

pytestmark = pytest.mark.integration


def _verifier(stub, settings) -> TokenVerifier:
    async def fetch() -> str:
        return (await stub.GetJwks(pb.GetJwksRequest())).jwks_json

    return TokenVerifier(
        JwksCache(fetch), issuer=settings.issuer, audience=settings.audience
    )


async def _refused(stub, token: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Authenticate(pb.AuthenticateRequest(credential=token))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return refused.value


async def test_tokens_pass_the_runtime_verifier_with_every_claim(stub, settings, owner):
    token = owner.tokens.access_token
    principal = await _verifier(stub, settings).verify(token)
    assert principal.kind is PrincipalKind.USER
    assert principal.subject == f"user:{owner.user.id}"
    assert principal.user_id == owner.user.id
    assert principal.tenant_id == owner.user.tenant_id
    assert principal.scopes == set(Scope) - {Scope.ADMIN}
    assert principal.role == "owner"
    assert principal.email == owner.email

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "comfyserve-auth"
    assert claims["aud"] == "comfyserve"
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert len(claims["jti"]) == 32


async def test_the_jwks_holds_okp_keys_for_eddsa(stub):
    jwks = json.loads((await stub.GetJwks(pb.GetJwksRequest())).jwks_json)
    assert jwks["keys"]
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
        assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32


async def test_authenticate_answers_the_same_principal(stub, owner):
    principal = await stub.Authenticate(
        pb.AuthenticateRequest(credential=owner.tokens.access_token)
    )
    assert principal.kind == pb.PRINCIPAL_KIND_USER
    assert principal.subject == f"user:{owner.user.id}"
    assert principal.tenant_id == owner.user.tenant_id
    assert principal.email == owner.email
    assert principal.role == "owner"
    assert not principal.tenant_suspended
    assert principal.expires_at.seconds > time.time()


async def test_get_me_answers_the_caller(stub, owner):
    me = await stub.GetMe(pb.GetMeRequest(), metadata=owner.credential)
    assert me.subject == f"user:{owner.user.id}"
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stub.GetMe(pb.GetMeRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _issue(runtime, settings, owner, *, ago=timedelta(0), **changes) -> str:
    """A token for `owner` from this service's signing keys, issued `ago` and
    with the issuer or audience of `changes`."""
    issued_at = datetime.now(UTC) - ago
    access = AccessTokens(
        runtime.apis.signing,
        issuer=changes.get("issuer", settings.issuer),
        audience=changes.get("audience", settings.audience),
        lifetime=timedelta(minutes=settings.access_token_minutes),
        clock=lambda: issued_at,
    )
    user = User(
        id=UUID(owner.user.id),
        tenant_id=UUID(owner.user.tenant_id),
        email=owner.email,
        role=Role.OWNER,
        is_admin=False,
        created_at=issued_at,
    )
    return await access.issue(user, frozenset({Scope.WORKFLOWS_READ}))


async def test_a_token_issued_here_now_is_accepted(stub, runtime, settings, owner):
    token = await _issue(runtime, settings, owner)
    principal = await stub.Authenticate(pb.AuthenticateRequest(credential=token))
    assert list(principal.scopes) == ["workflows:read"]


async def test_an_expired_token_is_refused(stub, runtime, settings, owner):
    await _refused(stub, await _issue(runtime, settings, owner, ago=timedelta(hours=1)))


async def test_a_token_not_yet_valid_is_refused(stub, runtime, settings, owner):
    await _refused(
        stub, await _issue(runtime, settings, owner, ago=-timedelta(minutes=5))
    )


def _forged(token: str, **changes) -> str:
    """`token` with its payload changed and the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return f"{header}.{forged.decode()}.{signature}"


async def test_forged_and_foreign_tokens_are_refused_alike(stub, owner):
    token = owner.tokens.access_token
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    public_jwks = json.loads((await stub.GetJwks(pb.GetJwksRequest())).jwks_json)
    refusals = [
        _forged(token, tenant="another-tenant"),
        _forged(token, scopes=["admin"]),
        jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]}),
        # HS256 keyed with the public key: the classic algorithm confusion.
        jwt.encode(
            claims,
            public_jwks["keys"][0]["x"],
            algorithm="HS256",
            headers={"kid": header["kid"]},
        ),
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        "not.a.token",
        "",
    ]
    details = {(await _refused(stub, forged)).details() for forged in refusals}
    assert len(details) == 1


async def test_tokens_of_another_issuer_or_audience_are_refused(
    stub, runtime, settings, owner
):
    for changes in ({"issuer": "someone-else"}, {"audience": "other"}):
        await _refused(stub, await _issue(runtime, settings, owner, **changes))
