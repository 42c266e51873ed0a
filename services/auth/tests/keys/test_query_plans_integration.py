"""Authenticating an API key is one query, served by the unique index on the
key's digest, also under the generic plan of a prepared statement."""

import pytest
from sqlalchemy import event, text

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb

pytestmark = pytest.mark.integration


async def test_an_api_key_is_one_indexed_query(stub, runtime, owner):
    created = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(name="plan", scopes=["workflows:read"]),
        metadata=owner.credential,
    )
    request = pb.AuthenticateRequest(credential=created.secret)
    # The first use records it; the next ones within a minute only read.
    await stub.Authenticate(request)

    statements: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, tuple(parameters or ())))

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await stub.Authenticate(request)
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", capture)

    [(sql, (digest,))] = statements
    async with runtime.engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        await conn.execute(text(f"PREPARE key_lookup AS {sql}"))
        plan = "\n".join(
            row[0]
            for row in await conn.execute(
                text(f"EXPLAIN EXECUTE key_lookup ('\\x{digest.hex()}'::bytea)")
            )
        )
    assert "api_keys_secret_hash_key" in plan
    assert "Seq Scan" not in plan
