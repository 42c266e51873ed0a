"""The orchestrator's pure parts, without the stack."""

from __future__ import annotations

from infra.runner import Ports, api_keys, service_env


def test_the_dev_key_alone_without_gateway_api_keys() -> None:
    assert api_keys("csk_dev_a", {}) == ["csk_dev_a"]
    assert api_keys("csk_dev_a", {"GATEWAY_API_KEYS": " , "}) == ["csk_dev_a"]


def test_keys_from_the_environment_are_served_too_once_each() -> None:
    environ = {"GATEWAY_API_KEYS": " csk_one, csk_two,csk_one,, csk_dev_a "}

    assert api_keys("csk_dev_a", environ) == ["csk_dev_a", "csk_one", "csk_two"]


STACK = {
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:2",
    "REDIS_URL": "redis://127.0.0.1:3/0",
    "COMFYUI_PATH": "comfyui",
    "COMFYUI_PYTHON": "python",
    **{
        f"S3_{key}": "x"
        for key in (
            "ENDPOINT",
            "ACCESS_KEY",
            "SECRET_KEY",
            "BUCKET",
            "SECURE",
            "REGION",
        )
    },
}


def test_each_copy_accepts_only_its_own_executors_pool() -> None:
    """Tests' and benchmarks' executors publish catalogs on the same brokers;
    a copy that took them would queue jobs for pools nobody serves."""
    copies = [
        service_env(STACK, Ports(), ["csk_dev_a"], namespace=namespace)
        for namespace in ("", "_bench_1", "_e2e_2")
    ]

    pools = [env["executor"]["EXECUTOR_POOL"] for env in copies]
    assert [env["workflow"]["WORKFLOW_POOLS"] for env in copies] == pools
    assert len(set(pools)) == len(pools)
