"""Core ML: `MLModel.predict` on macOS, one registry entry per compute-unit choice (ALL, CPU_ONLY,
CPU_AND_GPU, CPU_AND_NE). Elsewhere `missing()` says predict is macOS only."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from bench.runtimes import BenchRuntime, Feeds, RuntimeConfig, register_runtime


@dataclass
class CoreMLHandle:
    model: Any
    output: str


class CoreML(BenchRuntime):
    name = "coreml"
    description = "Core ML MLModel.predict, compute units ALL"
    packages = ("coremltools",)
    extra = "coreml"
    targets = ("coreml",)
    device = "apple"
    compute_units = "ALL"

    def missing(self) -> Optional[str]:
        why = super().missing()
        if why:
            return why
        if platform.system() != "Darwin":
            return "Core ML's MLModel.predict runs on macOS only"
        return None

    def _reads(self, f: dict) -> bool:
        return f["path"].endswith((".mlpackage", ".mlmodel"))

    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> CoreMLHandle:
        import coremltools as ct

        from export.targets.coreml import check_package_paths

        entry = self.entry(manifest, tower)
        check_package_paths(bundle / entry["path"])
        model = ct.models.MLModel(str(bundle / entry["path"]), compute_units=getattr(ct.ComputeUnit, self.compute_units))
        return CoreMLHandle(model, entry["outputs"][0]["name"])

    def prepare(self, handle: CoreMLHandle, feeds: Feeds) -> dict:
        return {k: (v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in feeds.items()}

    def run(self, handle: CoreMLHandle, inputs: dict) -> Any:
        return handle.model.predict(inputs)[handle.output]


def _variant(units: str, suffix: str) -> None:
    register_runtime(type(f"CoreML{suffix.title()}", (CoreML,), {
        "name": f"coreml-{suffix}", "compute_units": units, "description": f"Core ML MLModel.predict, {units}"}))


register_runtime(CoreML)
_variant("CPU_ONLY", "cpu")
_variant("CPU_AND_GPU", "gpu")
_variant("CPU_AND_NE", "ne")
