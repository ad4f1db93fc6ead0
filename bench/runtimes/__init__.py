"""Benchmark runtimes: one file each, registered in `RUNTIMES` (timm-style registry + factory).

A runtime loads one tower of an export bundle and runs it:

    rt = get_runtime("onnxruntime")
    handle = rt.load(bundle, manifest, "image", RuntimeConfig(threads=2))
    x = rt.prepare(handle, {"pixel_values": pixels})      # into the runtime's own types, outside the timing
    y = rt.run(handle, x); rt.synchronize(handle)          # what is timed
    emb = rt.to_numpy(y)

`accepts(manifest)` says whether the runtime can read a bundle (onnxruntime <-> onnx/tensorrt bundles,
openvino <-> openvino and onnx bundles, torch <-> any bundle through its source model, ...), and `missing()`
why it cannot run on this machine (the package and its pip extra, or the platform).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from compact.errors import CompactError
from compact.utils.extras import NeedsPackages

log = logging.getLogger(__name__)

Feeds = dict[str, np.ndarray]


@dataclass
class RuntimeConfig:
    threads: Optional[int] = None  # intra-op threads (torch.set_num_threads, ORT intra_op, OV INFERENCE_NUM_THREADS)
    model: Any = None  # torch runtimes: a DualEncoder or model spec to use instead of manifest["source"]["model"]
    # openvino: INFERENCE_PRECISION_HINT; None: what the bundle's manifest records for the file (`compact quantize`
    # writes bf16 for its bf16 methods), else f32 (this CPU would pick bf16 on its own)
    precision_hint: Optional[str] = None
    optimized: bool = False  # onnxruntime: run the bundle's ORT-optimised graphs (`export --optimize`) where present
    spin: bool = True  # onnxruntime: intra-op threads spin-wait between calls (ORT's default); False as shipped


class BenchRuntime(NeedsPackages):
    kind = "benchmark runtime"
    name: str = ""
    description: str = ""
    packages: tuple[str, ...] = ()  # importable modules it needs
    extra: str = ""  # the pip extra that installs them
    targets: tuple[str, ...] = ()  # bundle targets it reads; empty: any bundle (through the source model)
    device: str = "cpu"  # what the result file name says it ran on

    # availability
    def require(self) -> None:
        super().require()  # a missing package names its extra
        why = self.missing()  # subclasses add platform / execution-provider reasons
        if why:
            raise CompactError(f"runtime {self.name} cannot run here: {why}")

    def accepts(self, manifest: dict) -> Optional[str]:
        """None when this runtime reads the bundle, else why not."""
        if self.targets and manifest.get("target") not in self.targets:
            return (f"{self.name} reads {'/'.join(self.targets)} bundles, this one is {manifest.get('target')!r}")
        only = {f["runtime_only"]: f.get("runtime_only_reason", "") for f in manifest.get("files", [])
                if f.get("runtime_only")}
        if self.targets and only and self.name not in only:  # runtimes that read the graphs themselves
            rt, why = next(iter(only.items()))
            return f"this bundle's graphs run on {rt} only ({why}); {self.name} cannot read them"
        return None

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        pkg = self.packages[0] if self.packages else "torch"
        try:
            return version(pkg)
        except PackageNotFoundError:
            mod = importlib.import_module(pkg)
            return str(getattr(mod, "__version__", "unknown"))

    # the files a tower runs from
    def entry(self, manifest: dict, tower: str, optimized: bool = False) -> dict:
        """The manifest entry this runtime runs for `tower`: the first file of a readable kind, non-optimised
        first (or optimised first with `optimized`)."""
        files = [f for f in manifest["files"] if f["tower"] == tower and self._reads(f)]
        files.sort(key=lambda f: bool(f.get("optimized")) != optimized)
        if not files:
            raise CompactError(f"the bundle has no {tower} file that {self.name} can read")
        return files[0]

    def _reads(self, f: dict) -> bool:
        return not self.targets or f.get("target") in self.targets

    # what is timed
    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> Any:
        raise NotImplementedError

    def prepare(self, handle: Any, feeds: Feeds) -> Any:
        """Inputs in the runtime's own types (done once, outside the timed loop)."""
        return feeds

    def run(self, handle: Any, inputs: Any) -> Any:
        raise NotImplementedError

    def synchronize(self, handle: Any) -> None:
        """Block until queued work is done (GPU runtimes); CPU runtimes return at once."""

    def to_numpy(self, output: Any) -> np.ndarray:
        return np.asarray(output)

    def close(self, handle: Any) -> None:
        """Release what `load` built (compiled graphs, sessions)."""


RUNTIMES: dict[str, BenchRuntime] = {}
BUILTIN = ("torch_eager", "torch_compile", "ort", "ov", "et", "trt", "coreml")


def register_runtime(cls: type[BenchRuntime]) -> type[BenchRuntime]:
    RUNTIMES[cls.name] = cls()
    return cls


def _import_builtin() -> None:
    for mod in BUILTIN:
        importlib.import_module(f"bench.runtimes.{mod}")


def list_runtimes() -> list[str]:
    _import_builtin()
    return list(RUNTIMES)


def get_runtime(name: str) -> BenchRuntime:
    _import_builtin()
    if name not in RUNTIMES:
        raise CompactError(f"unknown runtime {name!r}; choose from: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]
