"""Which answers are retried, which end a delivery."""

from __future__ import annotations

import pytest

from comfyserve.notifier.deliveries.models import DeliveryStatus
from comfyserve.notifier.deliveries.sender import Sent
from comfyserve.notifier.deliveries.worker import verdict


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408, 429])
def test_server_errors_timeouts_and_throttling_are_retried(code: int) -> None:
    assert verdict(Sent(code, "", "", 1)).retry


def test_network_errors_are_retried() -> None:
    assert verdict(Sent(None, "", "ConnectError: refused", 1)).retry


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413, 301, 302])
def test_other_answers_end_the_delivery(code: int) -> None:
    judged = verdict(Sent(code, "", "", 1))

    assert (judged.status, judged.retry) == (DeliveryStatus.DEAD, False)
    assert str(code) in judged.reason


def test_gone_disables_the_endpoint() -> None:
    judged = verdict(Sent(410, "", "", 1))

    assert judged.gone
    assert judged.status is DeliveryStatus.DEAD


def test_a_refused_target_is_never_retried() -> None:
    judged = verdict(Sent(None, "", "'10.0.0.1' is refused", 1, refused=True))

    assert (judged.status, judged.retry) == (DeliveryStatus.DEAD, False)


@pytest.mark.parametrize("code", [200, 201, 202, 204])
def test_2xx_succeeds(code: int) -> None:
    assert verdict(Sent(code, "", "", 1)).status is DeliveryStatus.SUCCEEDED
