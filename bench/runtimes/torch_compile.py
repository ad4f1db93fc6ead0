"""torch.compile (inductor, `dynamic=False`) of the source model's graphs.

Static shapes: each batch size / text length compiles once, in the warm-up, so first-inference time includes
the compile. Compiling two models with dynamic shapes in one process crashed here, so `close` resets dynamo
and a bench run holds one compiled model at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.runtimes import RuntimeConfig, register_runtime
from bench.runtimes.torch_eager import TorchEager, TorchHandle, tower_module


@register_runtime
class TorchCompile(TorchEager):
    name = "torch.compile"
    description = "torch.compile (inductor, dynamic=False) of the source model (CPU)"

    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> TorchHandle:
        import torch

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        module, names = tower_module(manifest, tower, cfg)
        return TorchHandle(torch.compile(module, dynamic=False), names, cfg.threads)

    def run(self, handle: TorchHandle, inputs: tuple) -> Any:
        import torch

        with torch.no_grad():  # inference_mode tensors trip inductor's guards on re-entry
            return handle.module(*inputs)

    def close(self, handle: TorchHandle) -> None:
        import torch

        torch._dynamo.reset()
