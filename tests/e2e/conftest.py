"""Start every service as its own process against the local stack, once per session."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.runner import Ports, ServiceSet, wait_until_ready  # noqa: E402
from tests.e2e.support import Product  # noqa: E402


@pytest.fixture(scope="session")
def product(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Product]:
    run_id = uuid.uuid4().hex[:8]
    ports = Ports.free()
    key_a, key_b = f"csk_e2e_a_{run_id}", f"csk_e2e_b_{run_id}"
    log_dir = tmp_path_factory.mktemp("service-logs")
    services = ServiceSet.create(
        stack,
        ports,
        [key_a, key_b],
        log_dir,
        namespace=f"_e2e_{run_id}",
        extra={
            "workflow": {
                "WORKFLOW_CONSUMER_GROUP": f"workflow-e2e-{run_id}",
                # Only this session's commands: another session's workflow
                # would refuse them, not knowing their credentials.
                "WORKFLOW_INGRESS_TOPIC": f"test.e2e-{run_id}.submit-requested",
                # Short leases, so a lost worker's job moves on quickly.
                "WORKFLOW_LEASE_SECONDS": "6",
                "WORKFLOW_SWEEP_INTERVAL_SECONDS": "1",
                "WORKFLOW_DEADLINE_GRACE_SECONDS": "5",
                # The webhook tests' receivers listen on this machine.
                "WORKFLOW_WEBHOOK_ALLOW_LOOPBACK": "true",
            },
            "gateway": {
                # Every test signs in from this one address.
                "GATEWAY_RATE_AUTH_PER_MINUTE": "6000",
                "GATEWAY_RATE_AUTH_BURST": "1000",
                # A retired signing key stops verifying within seconds.
                "GATEWAY_JWKS_MAX_AGE_SECONDS": "2",
            },
            "notifier": {
                # The webhook tests' receivers listen on this machine.
                "NOTIFIER_ALLOW_PRIVATE_TARGETS": "true",
                "NOTIFIER_IDLE_POLL_SECONDS": "0.5",
            },
            "executor": {
                "EXECUTOR_SCRATCH_DIR": str(tmp_path_factory.mktemp("executor-1")),
                "EXECUTOR_INTERRUPT_GRACE_SECONDS": "5",
            },
        },
    )
    services.start()
    base_url = f"http://127.0.0.1:{ports.gateway}"
    try:
        admin = services.bootstrap_admin()
        wait_until_ready(ports, services)
        yield Product(base_url, key_a, key_b, services, stack, admin["api_key"])
    finally:
        services.stop()
        services.drop_schemas()
        for log in sorted(log_dir.glob("*.log")):
            sys.stderr.write(f"--- tail of {log.name} ---\n")
            sys.stderr.write(
                "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            )
            sys.stderr.write("\n")
