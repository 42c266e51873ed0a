import pytest

from comfyserve.workflow.errors import InvalidArgumentError
from comfyserve.workflow.jobs.webhooks import check_webhook_url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("ftp://93.184.215.14/hook", "only http and https"),
        ("http://user:secret@93.184.215.14/hook", "credentials"),
    ],
)
async def test_a_webhook_url_our_servers_must_not_call_names_the_field(
    url: str, problem: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await check_webhook_url(url, allow_loopback=False)
    assert refused.value.field == "webhook_url"
    assert problem in str(refused.value.problem)
    assert "secret" not in str(refused.value)


async def test_development_admits_loopback_and_nothing_else_private() -> None:
    await check_webhook_url("http://127.0.0.1:9000/hook", allow_loopback=True)
    await check_webhook_url("http://localhost:9000/hook", allow_loopback=True)
    with pytest.raises(InvalidArgumentError, match="private"):
        await check_webhook_url("http://192.168.1.10/hook", allow_loopback=True)


async def test_a_public_address_is_accepted() -> None:
    await check_webhook_url("https://93.184.215.14/hook", allow_loopback=False)
