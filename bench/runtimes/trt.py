"""TensorRT: engines run through `export.trt_engine.TrtRunner(engine_path)` where `tensorrt` imports and a
CUDA device exists. The engine is the bundle file ending in `.engine`/`.plan` for the tower (built on the
device by the bundle's build script). Imported lazily: this module loads on machines without TensorRT."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench.runtimes import BenchRuntime, Feeds, RuntimeConfig, register_runtime
from compact.errors import CompactError


@dataclass
class TrtHandle:
    runner: Any


@register_runtime
class TensorRT(BenchRuntime):
    name = "tensorrt"
    description = "TensorRT engine (CUDA)"
    packages = ("tensorrt",)
    extra = "tensorrt"
    targets = ("tensorrt",)
    device = "cuda"

    def missing(self) -> Optional[str]:
        why = super().missing()
        if why:
            return why
        if importlib.util.find_spec("export.trt_engine") is None:
            return "export.trt_engine is not part of this install"
        from export import trt_engine

        if not hasattr(trt_engine, "TrtRunner"):
            return "export.trt_engine has no TrtRunner yet"
        ok, why = trt_engine.engine_support()
        return None if ok else why

    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> TrtHandle:
        from export.trt_engine import TrtRunner

        engines = sorted(p for ext in ("*.engine", "*.plan") for p in bundle.glob(ext) if p.name.startswith(tower))
        if not engines:
            raise CompactError(f"{bundle} has no {tower} TensorRT engine; build it with the bundle's build_engine.sh")
        return TrtHandle(TrtRunner(engines[0]))

    def run(self, handle: TrtHandle, inputs: Feeds) -> Any:
        return handle.runner(inputs)

    def synchronize(self, handle: TrtHandle) -> None:
        import torch

        torch.cuda.synchronize()
