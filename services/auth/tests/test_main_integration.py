"""The command line, run as a process: bootstrap once and again, key rotation
and retirement; each answers one JSON line on stdout."""

import asyncio
import json
import os
import sys

import pytest

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.contracts.scopes import Scope

from .conftest import email

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _run(settings, *args: str, **env: str) -> tuple[int, dict, str]:
    environment = {
        **os.environ,
        "AUTH_DATABASE_URL": settings.database_url,
        "AUTH_SCHEMA": settings.schema_,
        "AUTH_KEY_ENCRYPTION_SECRET": settings.key_encryption_secret.get_secret_value(),
        "AUTH_PASSWORD_TIME_COST": str(settings.password_time_cost),
        "AUTH_PASSWORD_MEMORY_KIB": str(settings.password_memory_kib),
        "AUTH_PASSWORD_PARALLELISM": str(settings.password_parallelism),
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfyserve.auth",
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    lines = out.decode().splitlines()
    assert len(lines) <= 1, "stdout carries the answer only"
    answer = json.loads(lines[0]) if lines else {}
    return process.returncode or 0, answer, err.decode()


async def test_bootstrap_makes_the_admin_once(stub, settings, runtime):
    admin_email = email()
    code, first, _ = await _run(
        settings, "bootstrap", AUTH_BOOTSTRAP_ADMIN_EMAIL=admin_email
    )
    assert code == 0
    assert set(first) == {"email", "user_id", "tenant_id", "password", "api_key"}
    assert first["email"] == admin_email

    principal = await stub.Authenticate(
        pb.AuthenticateRequest(credential=first["api_key"])
    )
    assert set(principal.scopes) == set(Scope)
    assert principal.tenant_id == first["tenant_id"]
    tokens = await stub.Login(
        pb.LoginRequest(email=admin_email, password=first["password"])
    )
    assert "admin" in tokens.scopes

    code, again, _ = await _run(
        settings, "bootstrap", AUTH_BOOTSTRAP_ADMIN_EMAIL=admin_email
    )
    assert code == 0
    assert again == {
        "email": admin_email,
        "user_id": first["user_id"],
        "tenant_id": first["tenant_id"],
    }


async def test_rotate_then_retire_from_the_command_line(stub, settings, runtime):
    code, rotated, _ = await _run(settings, "rotate-keys")
    assert code == 0
    jwks = json.loads((await stub.GetJwks(pb.GetJwksRequest())).jwks_json)
    assert jwks["keys"][0]["kid"] == rotated["kid"]
    older = jwks["keys"][1]["kid"]

    code, retired, _ = await _run(settings, "retire-key", older)
    assert (code, retired["kid"]) == (0, older)
    jwks = json.loads((await stub.GetJwks(pb.GetJwksRequest())).jwks_json)
    assert older not in [key["kid"] for key in jwks["keys"]]

    code, _, err = await _run(settings, "retire-key", "no-such-kid")
    assert code == 1
    assert "no-such-kid" in err
