"""TensorRT explicit quantization through onnxruntime's quantize_static: QDQ format, symmetric int8 activations
and weights (TensorRT needs zero point 0), per-channel weights, Q/DQ only on the inputs of MatMul/Gemm/Conv
(where TensorRT fuses them), on the TRT-ready ONNX of `compact export tensorrt`."""

from __future__ import annotations

from compact.quantize import Candidate, QuantMethod, listed, register_method


@register_method
class TrtOrtQDQ(QuantMethod):
    name = "trt_ort_qdq"
    runtime = "tensorrt"
    packages = ("onnxruntime",)
    extra = "onnx"
    description = "TensorRT QDQ via onnxruntime quantize_static: symmetric int8, per-channel, GEMM inputs only"
    op_types = ("MatMul", "Gemm", "Conv")
    options = {"op_types": "the ops to quantize, e.g. MatMul,Gemm (default MatMul,Gemm,Conv)"}

    def quantize(self, ctx, tower: str) -> Candidate:
        from compact.quantize.methods.ort_static_qdq import static_qdq
        from compact.quantize.trt import carry_metadata, placement, trt_latency_note
        from export.targets.onnx import ort_session, session_runner

        src = ctx.fp32_file(tower)
        dst = ctx.work / f"{tower}.{self.name}.trt.onnx"
        op_types = listed(ctx.cfg.method_options.get("op_types", self.op_types))
        # No quant_pre_process: it would rewrite the TRT-ready graph (folded, profile-checked) that export made.
        batches = static_qdq(ctx, tower, src, dst, op_types, "QInt8", {
            "ActivationSymmetric": True, "WeightSymmetric": True, "QDQKeepRemovableActivations": False,
            "QuantizeBias": False})  # int32 bias Q/DQ: TensorRT takes int8 Q/DQ only; it fuses the bias itself
        carry_metadata(src, dst)
        run = session_runner(ort_session(dst, ctx.threads()))
        return Candidate(self.name, tower, run, "int8", [dst],
                         {"op_types": op_types, "calibration_batches": batches, "format": "QDQ",
                          "placement": placement(dst), "latency_on": trt_latency_note()})
