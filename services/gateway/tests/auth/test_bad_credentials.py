"""Bad credentials cost their address the sign-in allowance, so guessing API
keys is throttled like guessing passwords."""

from __future__ import annotations


async def test_bad_credentials_past_the_auth_burst_are_429(
    client, settings, limiter
) -> None:
    bad = {"Authorization": "Bearer csk_guess"}
    answers = [
        (await client.get("/workflows", headers=bad)).status_code
        for _ in range(settings.rate_auth_burst + 1)
    ]

    assert answers == [401] * settings.rate_auth_burst + [429]
    assert {name for name, _, _ in limiter.acquired} == {"auth"}


async def test_without_redis_a_bad_credential_is_still_401(client, limiter) -> None:
    limiter.down = True

    answer = await client.get("/workflows", headers={"Authorization": "Bearer x"})

    assert answer.status_code == 401


async def test_a_good_credential_spends_nothing_of_the_auth_allowance(
    client, limiter, auth_a
) -> None:
    assert (await client.get("/workflows", headers=auth_a)).status_code == 200
    assert "auth" not in {name for name, _, _ in limiter.acquired}
