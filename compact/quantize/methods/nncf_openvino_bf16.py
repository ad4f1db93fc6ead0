"""NNCF int8 (as `nncf_openvino`) with the layers left in float run in bf16 (INFERENCE_PRECISION_HINT=bf16):
OpenVINO's default on CPUs with AMX, and worth trying wherever AVX512-BF16 exists. The IR is the int8 one;
the manifest records the hint and every runner honours it."""

from __future__ import annotations

from compact.quantize import Candidate, QuantMethod, register_method
from compact.quantize.methods.nncf_openvino import quantize_ir


@register_method
class NncfOpenVinoBf16(QuantMethod):
    name = "nncf_openvino_bf16"
    runtime = "openvino"
    packages = ("nncf", "openvino")
    extra = "nncf"
    description = "nncf.quantize int8 IR, the rest in bf16 (OpenVINO precision hint)"

    def quantize(self, ctx, tower: str) -> Candidate:
        from export.targets.openvino import compile_ir, compiled_runner

        dst = ctx.work / f"{tower}.{self.name}.xml"
        details = quantize_ir(ctx, tower, dst)
        run = compiled_runner(compile_ir(dst, "bf16", ctx.threads()))
        return Candidate(self.name, tower, run, "int8+bf16", [dst, dst.with_suffix(".bin")],
                         dict(details, inference_precision="bf16"))
