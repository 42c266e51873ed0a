"""A service's `__main__` through `serve_or_migrate`, run as a process: it
serves until SIGTERM, migrating first where asked, or only migrates."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

_SERVICE = textwrap.dedent(
    """
    import contextlib, gc, os, sys
    from comfyserve.runtime.entrypoint import serve_or_migrate
    from comfyserve.runtime.settings import ServiceSettings

    def say(line):
        sys.stderr.write(line + "\\n")
        sys.stderr.flush()

    async def migrate(settings):
        say("migrate")
        return "demo_schema"

    @contextlib.asynccontextmanager
    async def running(settings):
        say("enter")
        yield
        # The heap start-up built is out of later collections while serving.
        say("exit" if gc.get_freeze_count() else "exit unfrozen")

    serve_or_migrate(
        "demo",
        ServiceSettings,
        running=running,
        migrate=migrate,
        migrate_before_running=os.environ["DEMO_MIGRATE"] == "first",
    )
    """
)


def _start(mode: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _SERVICE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DEMO_MIGRATE": mode},
    )


def _events(stdout: str) -> list[str]:
    return [json.loads(line)["event"] for line in stdout.splitlines() if line]


def _serve_until_sigterm(mode: str) -> tuple[list[str], list[str]]:
    process = _start(mode, "serve")
    assert process.stderr is not None
    steps = []
    while "enter" not in steps:
        line = process.stderr.readline()
        assert line, "the process ended before serving"
        steps.append(line.strip())
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return steps + err.split(), _events(out)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("first", ["migrate", "enter", "exit"]), ("inside", ["enter", "exit"])],
)
def test_serve_runs_until_sigterm_migrating_first_where_asked(
    mode: str, expected: list[str]
) -> None:
    steps, events = _serve_until_sigterm(mode)
    assert steps == expected
    assert events[-2:] == ["demo.stopping", "demo.stopped"]


def test_migrate_only_migrates_and_names_the_schema() -> None:
    process = _start("inside", "migrate")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert err.split() == ["migrate"]
    [line] = [json.loads(line) for line in out.splitlines() if line]
    assert line["event"] == "demo.migrated"
    assert line["schema"] == "demo_schema"


def test_an_unknown_command_is_refused_before_anything_runs() -> None:
    process = _start("inside", "rotate")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "invalid choice: 'rotate'" in err
    assert "migrate" not in err.split()
