"""The ceiling for `bench.submit`: a trivial FastAPI route that parses the
same JSON body and answers 202, served by one uvicorn process as the gateway
is. Nothing behind it, so its rate is what this machine's HTTP stack and the
benchmark's own client allow."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/workflows/execute", status_code=202)
async def accept(body: dict[str, Any]) -> dict[str, str]:
    return {"status": "pending"}
