"""The README's webhook receiver verifies what it is sent, and nothing else."""

from __future__ import annotations

import base64
import io
import json
import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tools.webhook_receiver import Receiver, main, serving


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _signed(
    secret: str, body: str, when: datetime | None = None, msg_id: str = "msg_1"
) -> dict[str, str]:
    moment = when or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
        "content-type": "application/json",
    }


BODY = json.dumps(
    {
        "type": "job.completed",
        "timestamp": "2030-01-01T00:00:00Z",
        "data": {"execution_id": "e-1", "status": "completed"},
    }
)


def test_a_signed_delivery_is_verified_and_printed() -> None:
    tenant, endpoint = _secret(), _secret()
    out = io.StringIO()
    receiver = Receiver([tenant, endpoint], out=out)
    with serving(receiver) as url:
        first = httpx.post(f"{url}/hook", content=BODY, headers=_signed(tenant, BODY))
        second = httpx.post(
            url, content=BODY, headers=_signed(endpoint, BODY, msg_id="msg_2")
        )

    assert (first.status_code, second.status_code) == (204, 204)
    assert [(r.webhook_id, r.secret_index, r.path) for r in receiver.received] == [
        ("msg_1", 0, "/hook"),
        ("msg_2", 1, "/"),
    ]
    assert receiver.received[0].body["data"]["execution_id"] == "e-1"
    assert "verified msg_1 (secret #1) job.completed execution=e-1" in out.getvalue()


def test_one_of_several_signatures_is_enough_as_during_a_rotation() -> None:
    old, new = _secret(), _secret()
    headers = _signed(old, BODY)
    both = f"{headers['webhook-signature']} {_signed(new, BODY)['webhook-signature']}"
    receiver = Receiver([new])
    with serving(receiver) as url:
        answer = httpx.post(
            url, content=BODY, headers={**headers, "webhook-signature": both}
        )

    assert answer.status_code == 204
    assert len(receiver.received[0].signatures) == 2


def test_tampered_unsigned_and_stale_deliveries_are_refused() -> None:
    secret = _secret()
    stale = datetime.now(UTC) - timedelta(minutes=10)
    receiver = Receiver([secret])
    with serving(receiver) as url:
        tampered = httpx.post(
            url, content=BODY.replace("e-1", "e-2"), headers=_signed(secret, BODY)
        )
        unsigned = httpx.post(url, content=BODY)
        old = httpx.post(url, content=BODY, headers=_signed(secret, BODY, stale))
        foreign = httpx.post(url, content=BODY, headers=_signed(_secret(), BODY))

    assert [a.status_code for a in (tampered, unsigned, old, foreign)] == [400] * 4
    assert receiver.received == []
    assert len(receiver.refused) == 4


def test_the_command_needs_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WEBHOOK_SECRETS", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["--port", "0"])
    assert exited.value.code == 2
    assert "--secret" in capsys.readouterr().err
