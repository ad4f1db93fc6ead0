"""OpenVINO on the CPU plugin: reads OpenVINO IR bundles, and ONNX bundles (OpenVINO reads ONNX directly).

`INFERENCE_PRECISION_HINT` is what the manifest records for the file (bf16 where `compact quantize` chose a bf16
method), else f32 (this CPU would run bf16 otherwise, which is a precision choice, not the export's);
`INFERENCE_NUM_THREADS` pins the threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtimes import BenchRuntime, Feeds, RuntimeConfig, register_runtime


@dataclass
class OvHandle:
    compiled: Any
    request: Any
    names: set


@register_runtime
class OpenVino(BenchRuntime):
    name = "openvino"
    description = "OpenVINO CPU plugin (IR or ONNX), f32 inference precision"
    packages = ("openvino",)
    extra = "openvino"
    targets = ("openvino", "onnx")

    def _reads(self, f: dict) -> bool:
        return f["path"].endswith((".xml", ".onnx"))

    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> OvHandle:
        import openvino as ov

        core = ov.Core()
        entry = self.entry(manifest, tower)
        config = {"INFERENCE_PRECISION_HINT": cfg.precision_hint or entry.get("inference_precision", "f32")}
        if cfg.threads:
            config["INFERENCE_NUM_THREADS"] = cfg.threads
        compiled = core.compile_model(core.read_model(str(bundle / entry["path"])), "CPU", config)
        return OvHandle(compiled, compiled.create_infer_request(), {p.get_any_name() for p in compiled.inputs})

    def prepare(self, handle: OvHandle, feeds: Feeds) -> dict:
        return {k: v for k, v in feeds.items() if k in handle.names}

    def run(self, handle: OvHandle, inputs: dict) -> Any:
        handle.request.infer(inputs)  # synchronous infer request
        return handle.request.get_output_tensor(0).data

    def to_numpy(self, output: Any) -> np.ndarray:
        return np.array(output)

    def version(self) -> str:
        import openvino as ov

        return ov.get_version()
