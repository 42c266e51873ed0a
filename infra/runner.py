"""Run the product's services as separate OS processes against the local stack.

`make run` uses this as a small orchestrator: every service is its own
`python -m comfyserve.<service>` process, restarted when it dies. The end-to-end
tests use the same class to start, kill and restart services one at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"

GATEWAY_PORT = 8000
WORKFLOW_GRPC_PORT = 50051
STORAGE_GRPC_PORT = 50052
AUTH_GRPC_PORT = 50053
NOTIFIER_GRPC_PORT = 50054
# The services that call others, each with a key the auth service knows.
CALLING_SERVICES = ("gateway", "executor", "workflow", "notifier")


@dataclass(frozen=True)
class Ports:
    """Where the services listen; tests move them to stay clear of `make run`."""

    gateway: int = GATEWAY_PORT
    workflow_grpc: int = WORKFLOW_GRPC_PORT
    storage_grpc: int = STORAGE_GRPC_PORT
    workflow_metrics: int = 9102
    storage_metrics: int = 9103
    executor_http: int = 9104
    auth_grpc: int = AUTH_GRPC_PORT
    auth_metrics: int = 9105
    gateway_metrics: int = 9101
    notifier_grpc: int = NOTIFIER_GRPC_PORT
    notifier_metrics: int = 9106

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody listens on now, for a second copy of the product."""
        return cls(*(free_port() for _ in fields(cls)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_stack_env() -> dict[str, str]:
    env_file = LOCAL / "stack.env"
    if not env_file.exists():
        raise RuntimeError("the local stack is not up: run `make up` first")
    return dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )


def _local_secret(name: str, make: str) -> str:
    """A secret generated once and kept, owner-only, in the git-ignored folder."""
    path = LOCAL / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


def dev_api_key() -> str:
    """The development API key: a bootstrap key of the gateway."""
    return _local_secret("dev-api-key", "csk_dev_" + secrets.token_urlsafe(24))


def service_keys() -> dict[str, str]:
    """Each calling service's own key, as the auth service lists them."""
    return {
        name: _local_secret(f"service-keys/{name}", "csk_" + secrets.token_urlsafe(24))
        for name in CALLING_SERVICES
    }


def api_keys(dev_key: str, environ: Mapping[str, str]) -> list[str]:
    """The keys the gateway serves: the dev key, then each of `GATEWAY_API_KEYS`
    (comma-separated), once each, in that order."""
    extra = (key.strip() for key in environ.get("GATEWAY_API_KEYS", "").split(","))
    return list(dict.fromkeys([dev_key, *(key for key in extra if key)]))


def service_env(
    stack: dict[str, str],
    ports: Ports,
    api_keys: list[str],
    *,
    namespace: str = "",
    development: bool = False,
) -> dict[str, dict[str, str]]:
    """Each service's settings, by its own prefix, derived from the stack's.

    `development` (make run) lets webhooks reach receivers on this machine.
    """
    db = stack["DATABASE_URL"]
    kafka = stack["KAFKA_BOOTSTRAP_SERVERS"]
    workflow = f"127.0.0.1:{ports.workflow_grpc}"
    storage = f"127.0.0.1:{ports.storage_grpc}"
    auth = f"127.0.0.1:{ports.auth_grpc}"
    notifier = f"127.0.0.1:{ports.notifier_grpc}"
    keys = service_keys()
    # Every test's and benchmark's executor publishes its pool's catalog on
    # the same brokers, and a pool stays valid for days after its worker
    # stopped: a copy that accepted them all would queue jobs for dead pools.
    pool = f"local{namespace}"

    def identity(prefix: str, name: str | None = None) -> dict[str, str]:
        """Where a service checks credentials, and the key it calls others with."""
        found = {f"{prefix}_AUTH_GRPC_TARGET": auth}
        if name is not None:
            found[f"{prefix}_SERVICE_KEY"] = keys[name]
        return found

    # Where spans go (the stack's Jaeger), by the standard variables.
    otel = {key: value for key, value in stack.items() if key.startswith("OTEL_")}
    s3 = {
        f"STORAGE_S3_{key}": stack[f"S3_{key}"]
        for key in (
            "ENDPOINT",
            "ACCESS_KEY",
            "SECRET_KEY",
            "BUCKET",
            "SECURE",
            "REGION",
        )
    }
    return {
        "auth": {
            **otel,
            "AUTH_DATABASE_URL": db,
            "AUTH_SCHEMA": f"auth{namespace}",
            "AUTH_GRPC_PORT": str(ports.auth_grpc),
            "AUTH_METRICS_PORT": str(ports.auth_metrics),
            # Development: the generated secret below is kept on this disk.
            "AUTH_ENVIRONMENT": "development",
            "AUTH_KEY_ENCRYPTION_SECRET": _local_secret(
                "auth-key-encryption-secret", secrets.token_urlsafe(32)
            ),
            "AUTH_SERVICE_KEYS": ",".join(f"{n}={k}" for n, k in keys.items()),
        },
        "storage": {
            **otel,
            "STORAGE_DATABASE_URL": db,
            "STORAGE_GRPC_PORT": str(ports.storage_grpc),
            "STORAGE_METRICS_PORT": str(ports.storage_metrics),
            "STORAGE_SCHEMA": f"storage{namespace}",
            "STORAGE_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "STORAGE_CONSUMER_GROUP": f"storage{namespace}",
            **identity("STORAGE"),
            **s3,
        },
        "workflow": {
            **otel,
            "WORKFLOW_DATABASE_URL": db,
            "WORKFLOW_SCHEMA": f"workflow{namespace}",
            "WORKFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "WORKFLOW_GRPC_PORT": str(ports.workflow_grpc),
            "WORKFLOW_METRICS_PORT": str(ports.workflow_metrics),
            "WORKFLOW_STORAGE_GRPC_TARGET": storage,
            "WORKFLOW_REDIS_URL": stack["REDIS_URL"],
            "WORKFLOW_CONSUMER_GROUP": f"workflow{namespace}",
            "WORKFLOW_WEBHOOK_ALLOW_LOOPBACK": str(development).lower(),
            "WORKFLOW_POOLS": pool,
            **identity("WORKFLOW", "workflow"),
        },
        "executor": {
            **otel,
            "EXECUTOR_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "EXECUTOR_WORKFLOW_GRPC_TARGET": workflow,
            "EXECUTOR_STORAGE_GRPC_TARGET": storage,
            "EXECUTOR_COMFYUI_PATH": stack["COMFYUI_PATH"],
            "EXECUTOR_COMFYUI_PYTHON": stack["COMFYUI_PYTHON"],
            "EXECUTOR_HTTP_PORT": str(ports.executor_http),
            "EXECUTOR_SCRATCH_DIR": str(LOCAL / "executor"),
            "EXECUTOR_POOL": pool,
            **identity("EXECUTOR", "executor"),
        },
        "gateway": {
            **otel,
            "GATEWAY_PORT": str(ports.gateway),
            "GATEWAY_METRICS_PORT": str(ports.gateway_metrics),
            "GATEWAY_API_KEYS": ",".join(api_keys),
            "GATEWAY_WORKFLOW_GRPC_TARGET": workflow,
            "GATEWAY_STORAGE_GRPC_TARGET": storage,
            "GATEWAY_REDIS_URL": stack["REDIS_URL"],
            "GATEWAY_NOTIFIER_GRPC_TARGET": notifier,
            **identity("GATEWAY", "gateway"),
        },
        "notifier": {
            **otel,
            "NOTIFIER_DATABASE_URL": db,
            "NOTIFIER_SCHEMA": f"notifier{namespace}",
            "NOTIFIER_GRPC_PORT": str(ports.notifier_grpc),
            "NOTIFIER_METRICS_PORT": str(ports.notifier_metrics),
            "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "NOTIFIER_CONSUMER_GROUP": f"notifier{namespace}",
            "NOTIFIER_WORKFLOW_GRPC_TARGET": workflow,
            "NOTIFIER_STORAGE_GRPC_TARGET": storage,
            "NOTIFIER_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports.gateway}",
            "NOTIFIER_ALLOW_PRIVATE_TARGETS": str(development).lower(),
            **identity("NOTIFIER", "notifier"),
        },
    }


@dataclass
class ServiceProcess:
    """One service process: started, watched, killed and restarted on demand."""

    name: str
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", f"comfyserve.{self.name}", *args]

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.log_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.command(),
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def migrate(self) -> None:
        subprocess.run(
            self.command("migrate"), env={**os.environ, **self.env}, check=True
        )

    def answer(self, *args: str) -> dict[str, str]:
        """A one-shot command's JSON answer (its logs go to the service log)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{self.name}.log").open("ab") as log:
            done = subprocess.run(
                self.command(*args),
                env={**os.environ, **self.env},
                stdout=subprocess.PIPE,
                stderr=log,
                check=True,
            )
        answer: dict[str, str] = json.loads(done.stdout)
        return answer

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """kill -9 the whole process group (the service and any child it runs)."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        self.stop()


@dataclass
class ServiceSet:
    """The product's services in start order."""

    services: dict[str, ServiceProcess]

    @classmethod
    def create(
        cls,
        stack: dict[str, str],
        ports: Ports,
        api_keys: list[str],
        log_dir: Path,
        *,
        namespace: str = "",
        development: bool = False,
        extra: dict[str, dict[str, str]] | None = None,
    ) -> ServiceSet:
        envs = service_env(
            stack, ports, api_keys, namespace=namespace, development=development
        )
        for name, values in (extra or {}).items():
            envs[name] = {**envs.get(name, {}), **values}
        return cls(
            {name: ServiceProcess(name, env, log_dir) for name, env in envs.items()}
        )

    def start(self) -> None:
        for service in self.services.values():
            if service.name in {"auth", "storage", "workflow", "notifier"}:
                service.migrate()
        for service in self.services.values():
            service.start()

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    def bootstrap_admin(self) -> dict[str, str]:
        """The administrator and its API key: made on the first call, and
        answered without secrets after that."""
        return self.services["auth"].answer("bootstrap")

    def drop_schemas(self) -> None:
        """Remove the services' Postgres schemas: for throw-away copies only."""
        names = [
            env[key]
            for env in (s.env for s in self.services.values())
            for key in (
                "WORKFLOW_SCHEMA",
                "STORAGE_SCHEMA",
                "AUTH_SCHEMA",
                "NOTIFIER_SCHEMA",
            )
            if key in env
        ]
        url = self.services["workflow"].env["WORKFLOW_DATABASE_URL"]
        drop = f"DROP SCHEMA IF EXISTS {', '.join(names)} CASCADE"
        subprocess.run(["psql", url, "-qc", drop], check=True)

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]


def supervise(services: ServiceSet, say: IO[str]) -> None:
    """Restart any service that dies, as an orchestrator would, until interrupted."""
    while True:
        for service in services.services.values():
            if not service.alive:
                code = service.process.poll() if service.process else None
                say.write(
                    f"run: {service.name} exited (code {code}); restarting it"
                    f" (see .local/logs/services/{service.name}.log)\n"
                )
                say.flush()
                service.stop()
                service.restarts += 1
                service.start()
        time.sleep(1)


def wait_until_ready(ports: Ports, services: ServiceSet, limit_s: float = 300) -> None:
    """Ready when a job can run: the gateway is ready (a node catalog exists, so
    it accepts jobs) and the executor is (its ComfyUI answers)."""
    probes = [_health(ports.gateway), _health(ports.executor_http)]
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        dead = [s.name for s in services.services.values() if not s.alive]
        if dead:
            raise RuntimeError(
                f"{', '.join(dead)} exited during start-up; see the logs"
            )
        if all(_answers_ok(url) for url in probes):
            return
        time.sleep(0.5)
    raise RuntimeError("the services did not become ready in time")


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, or an HTTP error status (urllib raises those)
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def status(ports: Ports, say: IO[str]) -> int:
    """Which services of `make run` answer; 1 when any does not."""
    checks: dict[str, tuple[int, bool]] = {
        "auth": (ports.auth_grpc, _port_open(ports.auth_grpc)),
        "gateway": (ports.gateway, _answers_ok(_health(ports.gateway))),
        "workflow": (ports.workflow_grpc, _port_open(ports.workflow_grpc)),
        "storage": (ports.storage_grpc, _port_open(ports.storage_grpc)),
        "notifier": (ports.notifier_grpc, _port_open(ports.notifier_grpc)),
        "executor": (ports.executor_http, _answers_ok(_health(ports.executor_http))),
    }
    down = 0
    for name, (port, up) in checks.items():
        down += not up
        say.write(f"run: {name:<8} 127.0.0.1:{port} {'up' if up else 'down'}\n")
    return 1 if down else 0


def local_admin(services: ServiceSet) -> dict[str, str]:
    """`make run`'s administrator, made on the first start. The auth service
    shows its password and API key once, so they are kept, owner-only, in the
    git-ignored folder."""
    path = LOCAL / "admin.json"
    kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    made = services.bootstrap_admin()
    if "api_key" in made:
        kept = {**kept, **made}
        path.write_text(json.dumps(kept, indent=2))
        path.chmod(0o600)
    return kept or made


def _health(port: int) -> str:
    return f"http://127.0.0.1:{port}/health/ready"


def main() -> int:
    if sys.argv[1:] == ["status"]:
        return status(Ports(), sys.stderr)
    ports = Ports()
    key = dev_api_key()
    # The gateway's environment is set from this list, so keys exported for
    # `make run` are only served when they are in it.
    keys = api_keys(key, os.environ)
    stack = read_stack_env()
    services = ServiceSet.create(
        stack, ports, keys, LOCAL / "logs" / "services", development=True
    )

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started in the background
    try:
        services.start()
        admin = local_admin(services)
        out = sys.stdout
        out.write("run: services started; waiting until they answer...\n")
        out.flush()
        wait_until_ready(ports, services)
        out.write(
            "\nComfyUI Serverless API is running.\n"
            f"  API:      http://127.0.0.1:{ports.gateway}\n"
            f"  API docs: http://127.0.0.1:{ports.gateway}/docs\n"
            f"  API key:  {key}  (bootstrap key: every scope, a tenant of its own)\n"
            f"  Admin:    {admin['email']}"
            f"  password {admin.get('password', '(AUTH_BOOTSTRAP_ADMIN_PASSWORD)')}"
            f"  API key {admin.get('api_key', '(not kept)')}\n"
        )
        if len(keys) > 1:
            # How many, never which: keys stay out of terminals and logs.
            out.write(f"  Also serving {len(keys) - 1} key(s) from GATEWAY_API_KEYS\n")
        if "JAEGER_URL" in stack:
            out.write(
                f"  Traces:   {stack['JAEGER_URL']}  (Jaeger: one trace per job)\n"
            )
        out.write("  Logs:     .local/logs/services/\nPress Ctrl-C to stop.\n\n")
        out.flush()
        supervise(services, out)
    except KeyboardInterrupt:
        sys.stdout.write("\nrun: stopping the services\n")
    finally:
        services.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
