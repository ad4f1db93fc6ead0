"""onnxruntime static QDQ: per-channel int8 weights, uint8 activations calibrated on a per-language mix, only on
an op allow-list. Transformer towers: MatMul/Gemm/Conv (quantizing every op, LayerNorm, Softmax, Add, ... dropped a
ViT tower to cosine 0.96 here; the allow-list keeps 0.999+). Convolutional towers (at least CONV_TOWER_MIN_CONVS Conv
nodes): the whole data path between the convolutions too (residual Add, Mul, Concat, pools, activations), so
activations stay int8 from one convolution to the next instead of being dequantized around every residual Add. On
the CPU-first student's MobileNetV4-Conv-Medium image tower (random init, batch 1, 2 threads) that took int8 from
1.42x to 2.14x faster than fp32 at cosine 0.9996 (MatMul/Gemm/Conv only: 0.9994)."""

from __future__ import annotations

from pathlib import Path

from compact.quantize import CONV_TOWER_MIN_CONVS, Candidate, QuantMethod, listed, register_method


def static_qdq(ctx, tower: str, src: Path, dst: Path, op_types: list[str], activation_type: str,
               extra_options: dict | None = None, reduce_range: bool = False) -> int:
    """`quantize_static` of `src` into `dst` as QDQ, per-channel int8 weights (7-bit with `reduce_range`),
    activations of `activation_type` ("QUInt8" | "QInt8") calibrated (MinMax) on the tower's per-language feeds;
    returns the number of batches."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    feeds = ctx.calib.feeds(tower)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    op_types_to_quantize=op_types, activation_type=getattr(QuantType, activation_type),
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    extra_options=extra_options or {}, reduce_range=reduce_range)
    return len(feeds)


@register_method
class OrtStaticQDQ(QuantMethod):
    name = "ort_static_qdq"
    runtime = "onnxruntime"
    packages = ("onnxruntime",)
    extra = "onnx"
    description = "onnxruntime quantize_static, QDQ, per-channel, MatMul/Gemm/Conv, quant_pre_process first"
    op_types = ("MatMul", "Gemm", "Conv")
    conv_op_types = ("MatMul", "Gemm", "Conv", "Add", "Mul", "GlobalAveragePool", "AveragePool", "Relu", "Clip",
                     "HardSigmoid", "Concat", "Flatten", "Reshape", "Transpose")
    options = {"op_types": "the ops to quantize, e.g. MatMul,Gemm (default MatMul,Gemm,Conv; on convolutional "
                           "towers also the data path between convolutions: Add,Mul,Concat,pools,activations)"}

    def quantize(self, ctx, tower: str) -> Candidate:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from export.targets.onnx import ort_session, session_runner

        src = ctx.fp32_file(tower)
        pre = ctx.work / f"{tower}.pre.onnx"
        dst = ctx.work / f"{tower}.{self.name}.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        convs = sum(n.op_type == "Conv" for n in onnx.load(str(pre), load_external_data=False).graph.node)
        default = self.conv_op_types if convs >= CONV_TOWER_MIN_CONVS else self.op_types
        op_types = listed(ctx.cfg.method_options.get("op_types", default))
        batches = static_qdq(ctx, tower, pre, dst, op_types, "QUInt8", reduce_range=ctx.reduce_range)
        run = session_runner(ort_session(dst, ctx.threads()))
        return Candidate(self.name, tower, run, "int8", [dst],
                         {"op_types": op_types, "convolutions": convs, "calibration_batches": batches,
                          "format": "QDQ", "reduce_range": ctx.reduce_range})
