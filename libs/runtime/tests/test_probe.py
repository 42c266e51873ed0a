import asyncio

import pytest
from prometheus_client import CollectorRegistry

from comfyserve.runtime.grpc import serve_grpc
from comfyserve.runtime.metrics import serve_metrics
from comfyserve.runtime.probe import healthy, main


async def test_a_grpc_service_is_healthy_once_it_serves() -> None:
    async with serve_grpc(
        service="demo.Service",
        add_servicers=lambda server: None,
        registry=CollectorRegistry(),
        metrics_prefix="probe",
        address="127.0.0.1:0",
        serving=False,
    ) as server:
        # The probe blocks, as in a container; the server needs this loop.
        target = f"grpc://127.0.0.1:{server.port}"
        assert await asyncio.to_thread(healthy, target)
        assert not await asyncio.to_thread(healthy, f"{target}/demo.Service")
        await server.set_serving("demo.Service", True)
        assert await asyncio.to_thread(main, [f"{target}/demo.Service"]) == 0
    assert not await asyncio.to_thread(healthy, target)


async def test_an_http_service_answers_200() -> None:
    async with serve_metrics(CollectorRegistry(), 0) as port:
        assert await asyncio.to_thread(healthy, f"http://127.0.0.1:{port}/metrics")
    assert not await asyncio.to_thread(healthy, f"http://127.0.0.1:{port}/metrics")


def test_other_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="grpc"):
        healthy("tcp://127.0.0.1:1")
    assert main([]) == 2
