"""ExecuTorch: the bundle's `.pte` programs (XNNPACK-delegated) in ExecuTorch's Python runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtimes import BenchRuntime, Feeds, RuntimeConfig, register_runtime


@dataclass
class EtHandle:
    method: Any
    names: tuple[str, ...]


@register_runtime
class ExecuTorch(BenchRuntime):
    name = "executorch"
    description = "ExecuTorch runtime, XNNPACK delegate (CPU)"
    packages = ("executorch",)
    extra = "executorch"
    targets = ("executorch",)

    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> EtHandle:
        from executorch.runtime import Runtime

        if cfg.threads:  # XNNPACK's threadpool follows torch's where the runtime exposes no knob
            import torch

            torch.set_num_threads(cfg.threads)
        entry = self.entry(manifest, tower)
        method = Runtime.get().load_program(str(bundle / entry["path"])).load_method("forward")
        return EtHandle(method, tuple(i["name"] for i in entry["inputs"]))

    def prepare(self, handle: EtHandle, feeds: Feeds) -> list:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in handle.names]

    def run(self, handle: EtHandle, inputs: list) -> Any:
        return handle.method.execute(inputs)[0]

    def to_numpy(self, output: Any) -> np.ndarray:
        return output.numpy() if hasattr(output, "numpy") else np.asarray(output)
