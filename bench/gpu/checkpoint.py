"""Writes an SD1.5-shaped checkpoint of random weights, built from ComfyUI's
own classes so that ComfyUI recognises it and its loading and compute cost
what the real model's do (../shared/GPU.md). Nothing is downloaded.

Run by ComfyUI's interpreter with ComfyUI's folder as the working directory:
`python checkpoint.py OUT [--tiny] [--cpu]`. `--tiny` keeps the UNet's width,
which ComfyUI matches SD1.5 by, but gives it one level and one block, so a
CPU dry run samples in a fraction of a second; CLIP and the VAE stay full
size, since ComfyUI builds them from fixed configurations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

FULL_UNET: dict[str, Any] = {
    "num_res_blocks": 2,
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "transformer_depth_middle": 1,
}
TINY_UNET: dict[str, Any] = {
    "num_res_blocks": 1,
    "channel_mult": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [1, 1],
    "transformer_depth_middle": 1,
}
SD_DDCONFIG: dict[str, Any] = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--cpu", action="store_true")
    options = parser.parse_args()
    started = time.perf_counter()
    # comfy.model_management asks CUDA for a device at import unless told not to.
    sys.argv = [sys.argv[0], *(["--cpu"] if options.cpu else [])]
    sys.path.insert(0, str(Path.cwd()))
    # ComfyUI's interpreter has these; the project's, which type-checks, not.
    import comfy.options  # type: ignore[import-not-found]

    comfy.options.enable_args_parsing()
    import comfy.ldm.models.autoencoder as autoencoder  # type: ignore[import-not-found]
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel  # type: ignore[import-not-found]
    import comfy.ops  # type: ignore[import-not-found]
    import comfy.sd1_clip  # type: ignore[import-not-found]
    import safetensors.torch  # type: ignore[import-not-found]
    import torch

    state: dict[str, Any] = {}
    unet = openaimodel.UNetModel(
        image_size=32,
        in_channels=4,
        out_channels=4,
        model_channels=320,
        use_spatial_transformer=True,
        legacy=False,
        context_dim=768,
        num_heads=8,
        use_linear_in_transformer=False,
        device="meta",
        operations=comfy.ops.disable_weight_init,
        **(TINY_UNET if options.tiny else FULL_UNET),
    )
    add(state, "model.diffusion_model.", unet)
    # It takes no device argument; only the shapes of its tensors are read.
    with torch.device("meta"):
        vae = autoencoder.AutoencoderKL(ddconfig=SD_DDCONFIG, embed_dim=4)
    add(state, "first_stage_model.", vae)
    with torch.no_grad():
        clip = comfy.sd1_clip.SD1ClipModel(device="cpu")
    for name, tensor in clip.state_dict().items():
        # A checkpoint stores CLIP as `cond_stage_model.transformer...`.
        key = "cond_stage_model." + name.removeprefix("clip_l.")
        state[key] = filled(name, tuple(tensor.shape))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(state, str(options.out))
    parameters = sum(tensor.numel() for tensor in state.values())
    sys.stdout.write(
        f"checkpoint {options.out.name}: {parameters / 1e6:.0f}M parameters, "
        f"{options.out.stat().st_size / 1e9:.2f} GB, "
        f"{time.perf_counter() - started:.1f} s\n"
    )
    return 0


def add(state: dict[str, Any], prefix: str, module: Any) -> None:
    for name, tensor in module.state_dict().items():
        state[prefix + name] = filled(name, tuple(tensor.shape))


def filled(name: str, shape: tuple[int, ...]) -> Any:
    """Norms 1, biases 0, the rest N(0, 0.02), in fp16."""
    import torch

    if "norm" in name and name.endswith("weight"):
        return torch.ones(shape, dtype=torch.float16)
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=torch.float16)
    if not shape:
        return torch.zeros(shape, dtype=torch.float16)
    return torch.randn(shape, dtype=torch.float16) * 0.02


if __name__ == "__main__":
    sys.exit(main())
