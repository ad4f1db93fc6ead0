"""onnxruntime MatMulNBits: block-quantized int8 weights (block 32, symmetric) on every MatMul with a constant
weight, run with `accuracy_level=4`, where ORT quantizes the activations to int8 per block on the fly and uses
the CPU's int8 dot products (VNNI). Unlike `quantize_dynamic` (MatMulInteger + a separate
DynamicQuantizeLinear per input), the activation quantization happens inside the GEMM kernel, which is what
pays on small transformer layers. 4-bit weights: `method_options={"nbits": 4}`."""

from __future__ import annotations

from compact.quantize import Candidate, QuantMethod, register_method


@register_method
class OrtMatMulNBits(QuantMethod):
    name = "ort_matmul_nbits"
    runtime = "onnxruntime"
    packages = ("onnxruntime",)
    extra = "onnx"
    description = "onnxruntime MatMulNBits, int8 block-32 weights, int8 compute (accuracy_level 4)"
    options = {"nbits": "weight bits, 8 (default) or 4", "block_size": "weights per scale block (default 32)"}

    def quantize(self, ctx, tower: str) -> Candidate:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                     MatMulNBitsQuantizer)

        from export.targets.onnx import ort_session, session_runner

        bits = int(ctx.cfg.method_options.get("nbits", 8))
        block = int(ctx.cfg.method_options.get("block_size", 32))
        src = ctx.fp32_file(tower)
        dst = ctx.work / f"{tower}.{self.name}.onnx"
        algo = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=bits)
        q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=bits, block_size=block, is_symmetric=True,
                                 accuracy_level=4, algo_config=algo)
        q.process()
        q.model.save_model_to_file(str(dst), use_external_data_format=False)
        n = sum(1 for node in onnx.load(str(dst)).graph.node if node.op_type == "MatMulNBits")
        run = session_runner(ort_session(dst, ctx.threads()))
        return Candidate(self.name, tower, run, "int8" if bits == 8 else f"int{bits}-weights", [dst],
                         {"bits": bits, "block_size": block, "accuracy_level": 4, "matmul_nbits_nodes": n})
