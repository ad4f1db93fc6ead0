"""onnxruntime, one registry entry per execution provider: CPU always; CUDA, CoreML, OpenVINO and XNNPACK
where `onnxruntime.get_available_providers()` lists them (otherwise `missing()` says so)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench.runtimes import BenchRuntime, Feeds, RuntimeConfig, register_runtime


@dataclass
class OrtHandle:
    session: Any
    names: set
    device: str


class OnnxRuntime(BenchRuntime):
    name = "onnxruntime"
    description = "onnxruntime, CPU execution provider"
    packages = ("onnxruntime",)
    extra = "onnx"
    targets = ("onnx", "tensorrt")  # TensorRT bundles hold TRT-ready ONNX
    provider = "CPUExecutionProvider"

    def missing(self) -> Optional[str]:
        why = super().missing()
        if why or self.provider == "CPUExecutionProvider":
            return why
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            return f"this onnxruntime build has no {self.provider} (it lists {', '.join(ort.get_available_providers())})"
        return None

    def _reads(self, f: dict) -> bool:
        return f["path"].endswith(".onnx")

    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> OrtHandle:
        import onnxruntime as ort

        so = ort.SessionOptions()
        if cfg.threads:
            so.intra_op_num_threads = cfg.threads
            so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not cfg.spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [self.provider] + (["CPUExecutionProvider"] if self.provider != "CPUExecutionProvider" else [])
        from export.targets.onnx import check_external_data

        path = bundle / self.entry(manifest, tower, cfg.optimized)["path"]
        check_external_data(path)
        sess = ort.InferenceSession(str(path), so, providers=providers)
        return OrtHandle(sess, {i.name for i in sess.get_inputs()}, self.device)

    def prepare(self, handle: OrtHandle, feeds: Feeds) -> dict:
        return {k: v for k, v in feeds.items() if k in handle.names}

    def run(self, handle: OrtHandle, inputs: dict) -> Any:
        return handle.session.run(None, inputs)[0]  # synchronous: outputs are copied to host numpy


def _variant(provider: str, suffix: str, device: str) -> None:
    cls = type(f"OnnxRuntime{suffix.title()}", (OnnxRuntime,),
               {"name": f"onnxruntime-{suffix}", "provider": provider, "device": device,
                "description": f"onnxruntime, {provider}"})
    register_runtime(cls)


register_runtime(OnnxRuntime)
_variant("CUDAExecutionProvider", "cuda", "cuda")
_variant("CoreMLExecutionProvider", "coreml", "apple")
_variant("OpenVINOExecutionProvider", "openvino", "cpu")
_variant("XnnpackExecutionProvider", "xnnpack", "cpu")
