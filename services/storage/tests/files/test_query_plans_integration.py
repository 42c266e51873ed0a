"""The sweeps' queries are served by their indexes, also under the generic plans
Postgres switches prepared statements to (bound values unknown)."""

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy import event, text

from comfyserve.storage.clock import utcnow
from comfyserve.storage.fences.models import FinishedJob

pytestmark = pytest.mark.integration

# A fragment that picks out each query, and the index that must serve it.
EXPECTED = {
    "expires_at <=": "files_expires_at",
    "created_at <": "files_pending_created_at",
    "deleting_since <": "files_deleting_since",
    "attempt !=": "files_output_slot_key",
    "swept_at IS NULL": "job_fences_unswept",
}


def literal(value: object) -> str:
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | uuid.UUID):
        return "'" + str(value).replace("'", "''") + "'"
    raise TypeError(f"no literal for {value!r}")


async def test_each_sweep_query_uses_its_index(isolated) -> None:
    statements: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, tuple(parameters or ())))

    event.listen(isolated.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await isolated.fences.on_job_finished(
            FinishedJob(job_id="job1", tenant_id="tenant1", attempt=1)
        )
        await isolated.retention.sweep_once(utcnow())
        await isolated.fences.sweep_once(utcnow())
    finally:
        event.remove(isolated.engine.sync_engine, "before_cursor_execute", capture)

    plans: dict[str, str] = {}
    async with isolated.engine.connect() as connection:
        await connection.execute(text("SET enable_seqscan = off"))
        await connection.execute(text("SET plan_cache_mode = force_generic_plan"))
        for fragment in EXPECTED:
            [(sql, parameters)] = [s for s in statements if fragment in s[0]]
            name = f"q{len(plans)}"
            await connection.execute(text(f"PREPARE {name} AS {sql}"))
            arguments = ", ".join(literal(value) for value in parameters)
            explained = await connection.execute(
                text(f"EXPLAIN EXECUTE {name}({arguments})")
            )
            plans[fragment] = "\n".join(row[0] for row in explained)
        await connection.rollback()

    for fragment, index in EXPECTED.items():
        assert re.search(rf"\b{index}\b", plans[fragment]), (fragment, plans[fragment])
