"""Our Standard Webhooks signatures, checked by an independent implementation."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from comfyserve.notifier.signing import SECRET_PREFIX, new_secret, signed_headers

BODY = b'{"type":"job.completed","data":{"execution_id":"j1"}}'


def test_secret_is_whsec_and_base64_of_at_least_24_bytes() -> None:
    secret = new_secret()

    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX))) >= 24
    assert new_secret() != secret


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = new_secret()
    headers = signed_headers([secret], "msg_1", int(time.time()), BODY)

    assert Webhook(secret).verify(BODY, dict(headers))["data"]["execution_id"] == "j1"


def test_tampered_body_fails_verification() -> None:
    secret = new_secret()
    headers = signed_headers([secret], "msg_1", int(time.time()), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"j1", b"j2"), dict(headers))


def test_old_timestamp_fails_verification() -> None:
    secret = new_secret()
    headers = signed_headers([secret], "msg_1", int(time.time()) - 600, BODY)

    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, dict(headers))


def test_another_secret_fails_verification() -> None:
    headers = signed_headers([new_secret()], "msg_1", int(time.time()), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, dict(headers))


def test_during_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], "msg_1", int(time.time()), BODY)

    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, dict(headers))
    Webhook(new).verify(BODY, dict(headers))
