"""OpenVINO IR (`.xml` + `.bin`) per tower, converted from the torch module with `openvino.convert_model`.

Dynamic batch and sequence are kept (`PartialShape` with -1). Parity runs on OpenVINO's CPU plugin with
`INFERENCE_PRECISION_HINT=f32`: this CPU would otherwise run in bf16 by default, which is a precision choice
(see `compact quantize`), not an export error. `cfg.precision == "fp16"` compresses the weights to fp16 in the IR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from compact.errors import CompactError
from compact.utils.io import raise_if_disk_full
from export.targets import Artifact, ExportTarget, Runner, register_target
from export.towers import Tower


def compile_ir(path: Path, precision_hint: str = "f32", threads: int = 0):
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision_hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(core.read_model(str(path)), "CPU", config)


def compiled_runner(compiled) -> Runner:
    names = {p.get_any_name() for p in compiled.inputs}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        res = compiled({k: v for k, v in feeds.items() if k in names})
        return np.asarray(res[compiled.outputs[0]])

    return run


@register_target
class OpenVinoTarget(ExportTarget):
    name = "openvino"
    description = "OpenVINO IR (.xml/.bin) for Intel CPUs, GPUs and NPUs"
    packages = ("openvino",)
    extra = "openvino"

    def export(self, tower: Tower, out: Path, cfg) -> list[Artifact]:
        import openvino as ov

        shapes = []
        for name, x in zip(tower.input_names, tower.example):
            dyn = tower.dynamic.get(name, {})
            dims = [ov.Dimension(dyn[i][1], dyn[i][2]) if i in dyn else ov.Dimension(int(s))
                    for i, s in enumerate(x.shape)]
            shapes.append((name, ov.PartialShape(dims), _ov_type(x.dtype)))
        try:
            with torch.no_grad():
                ir = ov.convert_model(tower.module, example_input=tower.example, input=shapes)
        except Exception as e:  # OpenVINO's frontend raises OpConversionFailure and plain RuntimeErrors
            raise_if_disk_full(e)  # a full disk is not a conversion problem
            raise CompactError(f"OpenVINO cannot convert the {tower.name} tower: {str(e).strip().splitlines()[0][:300]}; "
                               "export ONNX first (compact export onnx) and report the op") from None
        ir.outputs[0].get_tensor().set_names({tower.output_name})
        path = out / f"{tower.name}.xml"
        ov.save_model(ir, str(path), compress_to_fp16=cfg.precision == "fp16")
        ops: dict[str, int] = {}
        for op in ir.get_ordered_ops():
            ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
        details = {"openvino": ov.get_version(), "ops": sum(ops.values()),
                   "parity_runtime": "openvino CPU, INFERENCE_PRECISION_HINT=f32"}
        return [Artifact(path.name, tower.name, cfg.precision, details, companions=[f"{tower.name}.bin"])]

    def runner(self, artifact: Artifact, bundle: Path, cfg) -> Optional[Runner]:
        # Quantized bundles may ask for another inference precision (compact quantize's bf16 method).
        return compiled_runner(compile_ir(bundle / artifact.path, artifact.details.get("inference_precision", "f32")))


def _ov_type(dtype: torch.dtype):
    import openvino as ov

    return {torch.float32: ov.Type.f32, torch.int64: ov.Type.i64, torch.int32: ov.Type.i32}[dtype]
