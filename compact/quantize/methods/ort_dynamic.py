"""onnxruntime dynamic int8: int8 weights (signed), activations quantized per call. No calibration."""

from __future__ import annotations

from compact.quantize import Candidate, QuantMethod, register_method


@register_method
class OrtDynamicInt8(QuantMethod):
    name = "ort_dynamic_int8"
    runtime = "onnxruntime"
    packages = ("onnxruntime",)
    extra = "onnx"
    description = "onnxruntime quantize_dynamic, signed int8 weights on MatMul/Gemm/fused Attention"
    op_types = ("MatMul", "Gemm", "Attention")  # Attention (ORT-fused graphs) becomes QAttention

    def quantize(self, ctx, tower: str) -> Candidate:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from export.targets.onnx import ort_session, session_runner

        src = ctx.fp32_file(tower)
        dst = ctx.work / f"{tower}.{self.name}.onnx"
        # reduce_range: 7-bit MatMul weights where int8 saturates (saturation.py); QAttention's are always 7-bit
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False,
                         op_types_to_quantize=list(self.op_types), reduce_range=ctx.reduce_range)
        run = session_runner(ort_session(dst, ctx.threads()))
        return Candidate(self.name, tower, run, "int8", [dst], {"op_types": list(self.op_types),
                                                                "reduce_range": ctx.reduce_range})
