"""The orchestrator's pure parts, without the stack."""

from __future__ import annotations

from infra.runner import api_keys


def test_the_dev_key_alone_without_gateway_api_keys() -> None:
    assert api_keys("csk_dev_a", {}) == ["csk_dev_a"]
    assert api_keys("csk_dev_a", {"GATEWAY_API_KEYS": " , "}) == ["csk_dev_a"]


def test_keys_from_the_environment_are_served_too_once_each() -> None:
    environ = {"GATEWAY_API_KEYS": " csk_one, csk_two,csk_one,, csk_dev_a "}

    assert api_keys("csk_dev_a", environ) == ["csk_dev_a", "csk_one", "csk_two"]
