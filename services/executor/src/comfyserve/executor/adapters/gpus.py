"""GPU facts from torch; imported lazily because importing torch takes seconds."""

from __future__ import annotations

from comfyserve.contracts.events import GpuInfo


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def gpu_infos() -> list[GpuInfo]:
    """Every visible CUDA device with its total and free memory; blocking."""
    import torch

    if not torch.cuda.is_available():
        return []
    gpus: list[GpuInfo] = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        gpus.append(
            GpuInfo(
                index=index,
                name=torch.cuda.get_device_name(index),
                vram_total=total,
                vram_free=free,
            )
        )
    return gpus
