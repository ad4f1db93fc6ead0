"""TensorRT explicit quantization through NVIDIA Model Optimizer's ONNX PTQ (`modelopt.onnx.quantization`):
modelopt chooses where Q/DQ goes by TensorRT's fusion rules (GEMM inputs, MHA matmuls unless disabled) and
writes symmetric int8. Calibration runs on onnxruntime's CPU provider here; the non-quantized ops stay fp32
(`high_precision_dtype`; fp16, the usual choice for a GPU build, is
QuantizeConfig(method_options={"high_precision": "fp16"})).

Installed by the `trt-quant` extra, which leaves out modelopt's own `[onnx]` extra on purpose: that pins
onnxruntime-gpu and an older onnx, which would replace the onnxruntime every other runtime here uses."""

from __future__ import annotations

import logging
import subprocess
import sys

from compact.errors import CompactError
from compact.quantize import Candidate, QuantMethod, register_method

log = logging.getLogger(__name__)


@register_method
class ModeloptInt8(QuantMethod):
    name = "modelopt_int8"
    runtime = "tensorrt"
    packages = ("modelopt", "onnxruntime", "onnxconverter_common", "onnxslim")
    extra = "trt-quant"
    description = "TensorRT QDQ via NVIDIA modelopt ONNX PTQ (int8, max calibration, TensorRT placement)"
    options = {"high_precision": "dtype of the layers left unquantized: fp32 (default) or fp16"}

    def quantize(self, ctx, tower: str) -> Candidate:
        import numpy as np

        from compact.quantize.trt import carry_metadata, placement, stacked_calibration, trt_latency_note
        from export.targets.onnx import ort_session, session_runner

        calib = stacked_calibration(ctx, tower)
        src = ctx.fp32_file(tower)
        dst = ctx.work / f"{tower}.{self.name}.trt.onnx"
        npz = ctx.work / f"{tower}.{self.name}.calib.npz"
        np.savez(npz, **calib)
        high = ctx.cfg.method_options.get("high_precision", "fp32")
        # A child process: importing modelopt patches onnxruntime.quantization in place, which breaks every later
        # onnxruntime quantize_static in the same process (measured: trt_ort_qdq then fails to calibrate).
        proc = subprocess.run([sys.executable, "-m", "compact.quantize.methods.modelopt_int8", str(src), str(dst),
                               str(npz), high], capture_output=True, text=True)
        if proc.returncode != 0 or not dst.is_file():
            lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
            raise CompactError(f"modelopt failed on the {tower} tower: {lines[-1] if lines else 'no output'}")
        carry_metadata(src, dst)
        run = session_runner(ort_session(dst, ctx.threads()))
        return Candidate(self.name, tower, run, "int8", [dst],
                         {"calibration": {"method": "max", "samples": int(next(iter(calib.values())).shape[0])},
                          "high_precision_dtype": high, "placement": placement(dst), "latency_on": trt_latency_note()})


def _worker(src: str, dst: str, npz: str, high: str) -> None:
    import numpy as np

    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as e:  # modelopt raises ImportError naming a missing optional dependency
        sys.exit(f"modelopt cannot import here ({str(e).splitlines()[0]}); pip install 'compact-clip[trt-quant]'")
    with np.load(npz, allow_pickle=False) as z:
        calib = {k: z[k] for k in z.files}
    quantize(onnx_path=src, quantize_mode="int8", calibration_data=calib, calibration_method="max",
             calibration_eps=["cpu"], high_precision_dtype=high, output_path=dst, log_level="WARNING")


if __name__ == "__main__":
    _worker(*sys.argv[1:5])
