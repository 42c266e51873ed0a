"""Access tokens through the gateway with the runtime's real verifier: a valid
one is let in, every forged, stale or malformed one is 401 and never 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from comfyserve.runtime.auth import (
    AuthUnavailable,
    CredentialVerifier,
    JwksCache,
    KeyCache,
    TokenVerifier,
    Unauthenticated,
)

ISSUER = "comfyserve-auth"
AUDIENCE = "comfyserve"
KID = "key-1"
SIGNING_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


def _jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": "EdDSA", "use": "sig"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _part(value: object) -> str:
    return _b64(json.dumps(value).encode())


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user:1",
        "jti": "j-1",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "tenant": "7a1e0c4e-0000-4000-8000-00000000000a",
        "scopes": ["workflows:read"],
        **changes,
    }
    return {name: value for name, value in claims.items() if value is not None}


def _signed(
    claims: dict[str, Any],
    key: Ed25519PrivateKey = SIGNING_KEY,
    kid: str = KID,
) -> str:
    head = f"{_part({'alg': 'EdDSA', 'kid': kid, 'typ': 'JWT'})}.{_part(claims)}"
    return f"{head}.{_b64(key.sign(head.encode()))}"


def _hs256_with_the_public_key() -> str:
    public = SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    head = f"{_part({'alg': 'HS256', 'kid': KID})}.{_part(_claims())}"
    signature = hmac.new(public, head.encode(), hashlib.sha256).digest()
    return f"{head}.{_b64(signature)}"


def _tampered() -> str:
    head, _, signature = _signed(_claims()).split(".")
    forged = _part(_claims(scopes=["admin"]))
    return f"{head}.{forged}.{signature}"


class Jwks:
    """The auth service's JWKS: what it serves, and whether it answers."""

    def __init__(self) -> None:
        self.keys = [_jwk(SIGNING_KEY, KID)]
        self.down = False

    async def fetch(self) -> str:
        if self.down:
            raise AuthUnavailable("UNAVAILABLE")
        return json.dumps({"keys": self.keys})


@pytest.fixture
def jwks():
    return Jwks()


@pytest.fixture
def verifier(jwks, principals):
    # The runtime's verifier; API keys are looked up as the fake service would.
    async def lookup(key: str):
        if key not in principals:
            raise Unauthenticated("unknown key")
        return principals[key]

    return CredentialVerifier(
        tokens=TokenVerifier(
            JwksCache(jwks.fetch, refetch_s=0), issuer=ISSUER, audience=AUDIENCE
        ),
        keys=KeyCache(lookup),
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_is_let_in(client):
    response = await client.get("/auth/me", headers=_bearer(_signed(_claims())))

    assert response.status_code == 200
    assert response.json()["subject"] == "user:1"
    assert response.json()["scopes"] == ["workflows:read"]


ATTACKS = {
    "alg-none": f"{_part({'alg': 'none', 'kid': KID})}.{_part(_claims())}.",
    "hs256-with-the-public-key": _hs256_with_the_public_key(),
    "expired": _signed(_claims(exp=int(time.time()) - 3600)),
    "not-yet-valid": _signed(_claims(nbf=int(time.time()) + 3600)),
    "wrong-audience": _signed(_claims(aud="another-product")),
    "wrong-issuer": _signed(_claims(iss="someone-else")),
    "no-exp": _signed(_claims(exp=None)),
    "no-tenant": _signed(_claims(tenant=None)),
    "tampered-payload": _tampered(),
    "unknown-kid": _signed(_claims(), OTHER_KEY, kid="key-unknown"),
    "known-kid-other-key": _signed(_claims(), OTHER_KEY),
    "three-dots": "...",
    "not-base64": "a.b.c",
    "header-not-an-object": f"{_part([1])}.{_part(_claims())}.x",
    "payload-not-json": f"{_part({'alg': 'EdDSA', 'kid': KID})}.%%%.x",
    "payload-a-list": _signed([1]),
}


@pytest.mark.parametrize("token", list(ATTACKS.values()), ids=list(ATTACKS))
async def test_a_bad_token_is_401(client, workflow, token):
    response = await client.get("/workflows", headers=_bearer(token))

    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "detail": "The bearer token is not valid",
    }
    assert workflow.calls == []


async def test_a_header_of_latin1_bytes_is_401(client):
    response = await client.get(
        "/workflows", headers={"Authorization": b"Bearer \xe9.\xe9.\xe9"}
    )

    assert response.status_code == 401


async def test_a_retired_key_stops_verifying(client, jwks):
    token = _signed(_claims(), OTHER_KEY, kid="key-0")
    jwks.keys.append(_jwk(OTHER_KEY, "key-0"))
    before = await client.get("/auth/me", headers=_bearer(token))
    jwks.keys.pop()
    # A token naming a key not seen yet makes the gateway fetch the JWKS again.
    unseen = await client.get("/auth/me", headers=_bearer(_signed(_claims(), kid="x")))
    retired = await client.get("/auth/me", headers=_bearer(token))

    assert before.status_code == 200
    assert unseen.status_code == 401
    assert retired.status_code == 401


async def test_a_token_that_cannot_be_checked_is_503_not_401(client, jwks):
    jwks.down = True

    response = await client.get("/auth/me", headers=_bearer(_signed(_claims())))

    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["Retry-After"] == "5"
