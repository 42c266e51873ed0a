"""Signing keys: rotation adds a key that signs while the old one keeps
verifying; retirement takes a key out of the JWKS and its tokens stop."""

import json

import grpc
import jwt
import pytest

from comfyserve.auth.errors import LastSigningKeyError, NotFoundError
from comfyserve.auth.signing.cipher import KeyCipher
from comfyserve.auth.signing.service import SigningKeys
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.runtime.auth import JwksCache, TokenVerifier, Unauthenticated

from ..conftest import login

pytestmark = pytest.mark.integration


async def _kids(stub) -> list[str]:
    jwks = json.loads((await stub.GetJwks(pb.GetJwksRequest())).jwks_json)
    return [key["kid"] for key in jwks["keys"]]


def _kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


async def test_rotation_then_retirement(stub, runtime, settings, owner):
    signing = runtime.apis.signing
    old_token = owner.tokens.access_token
    old_kid = _kid(old_token)

    rotated = await signing.rotate()
    new_token = (await login(stub, owner.email)).access_token
    assert _kid(new_token) == rotated.kid
    assert (await _kids(stub))[0] == rotated.kid
    assert old_kid in await _kids(stub)
    for token in (old_token, new_token):
        await stub.Authenticate(pb.AuthenticateRequest(credential=token))

    async def fetch() -> str:
        return (await stub.GetJwks(pb.GetJwksRequest())).jwks_json

    verifier = TokenVerifier(
        JwksCache(fetch), issuer=settings.issuer, audience=settings.audience
    )
    await verifier.verify(old_token)

    retired = await signing.retire(old_kid)
    assert retired.retired_at is not None
    assert old_kid not in await _kids(stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Authenticate(pb.AuthenticateRequest(credential=old_token))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    fresh = TokenVerifier(
        JwksCache(fetch), issuer=settings.issuer, audience=settings.audience
    )
    with pytest.raises(Unauthenticated):
        await fresh.verify(old_token)
    await fresh.verify(new_token)

    # Retiring again changes nothing.
    assert (await signing.retire(old_kid)).retired_at == retired.retired_at


async def test_the_last_key_is_never_retired_and_unknown_kids_are_not_found(
    runtime,
):
    signing = runtime.apis.signing
    kids = [key["kid"] for key in (await signing.jwks())["keys"]]
    for kid in kids[1:]:
        await signing.retire(kid)
    with pytest.raises(LastSigningKeyError):
        await signing.retire(kids[0])
    with pytest.raises(NotFoundError):
        await signing.retire("no-such-kid")


async def test_private_keys_are_stored_encrypted(runtime, settings, db):
    row = await db.fetchrow(
        "SELECT kid, public_key, private_key FROM signing_keys LIMIT 1"
    )
    assert len(row["public_key"]) == 32
    # Nonce, the 32-byte key and the tag: not the raw key.
    assert len(row["private_key"]) == 12 + 32 + 16
    opened = KeyCipher(settings.key_encryption_secret.get_secret_value())
    assert len(opened.decrypt(row["kid"], row["private_key"])) == 32


async def test_a_new_schema_gets_its_first_key_on_first_use(runtime, db, clock):
    await db.execute("CREATE TEMP TABLE saved_keys AS SELECT * FROM signing_keys")
    try:
        await db.execute("DELETE FROM signing_keys")
        signing = SigningKeys(runtime.engine, KeyCipher("x" * 32), clock)
        signer = await signing.signer()
        assert [key["kid"] for key in (await signing.jwks())["keys"]] == [signer.kid]
    finally:
        await db.execute("DELETE FROM signing_keys")
        await db.execute("INSERT INTO signing_keys SELECT * FROM saved_keys")
        await db.execute("DROP TABLE saved_keys")
