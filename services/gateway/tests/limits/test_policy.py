"""Route classes' quotas and the headers a decision sends."""

from __future__ import annotations

import pytest

from comfyserve.gateway.limits.gcra import Decision
from comfyserve.gateway.limits.policy import Quota, RouteClass, quota_for
from comfyserve.gateway.settings import Settings
from comfyserve.runtime.auth import Principal, PrincipalKind


def _key(per_minute: int = 0, burst: int = 0) -> Principal:
    return Principal(
        kind=PrincipalKind.API_KEY,
        subject="key:1",
        tenant_id="t",
        scopes=frozenset(),
        rate_limit_per_minute=per_minute,
        rate_limit_burst=burst,
    )


def test_each_class_has_its_settings_and_a_keys_own_values_win():
    settings = Settings(rate_upload_per_minute=12, rate_upload_burst=4)

    assert quota_for(settings, RouteClass.UPLOAD, None) == Quota(12, 4)
    assert quota_for(settings, RouteClass.UPLOAD, _key()) == Quota(12, 4)
    assert quota_for(settings, RouteClass.UPLOAD, _key(per_minute=6)) == Quota(6, 4)
    assert quota_for(settings, RouteClass.READ, _key(30, 2)) == Quota(30, 2)


@pytest.mark.parametrize(
    ("quota", "interval_ms", "window_s"),
    [(Quota(60, 3), 1000, 3), (Quota(120, 30), 500, 15), (Quota(7, 1), 8571, 9)],
)
def test_the_interval_and_the_window_of_a_quota(quota, interval_ms, window_s):
    assert quota.interval_ms == interval_ms
    assert quota.window_s == window_s


def test_only_reads_are_served_without_limits():
    assert [c for c in RouteClass if not c.writes] == [RouteClass.READ]


@pytest.mark.parametrize(
    ("remaining", "wait_s", "header"),
    [
        (3, 1.0, '"read";r=3;t=0'),
        (1, 0.4, '"read";r=1;t=1'),
        (0, 2.2, '"read";r=0;t=3'),
    ],
)
def test_the_ratelimit_headers(remaining, wait_s, header):
    decision = Decision("read", Quota(60, 3), True, remaining, wait_s)

    assert decision.headers() == {
        "RateLimit-Policy": '"read";q=3;w=3',
        "RateLimit": header,
    }
