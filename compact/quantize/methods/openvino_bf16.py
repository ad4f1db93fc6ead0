"""OpenVINO bf16 inference (INFERENCE_PRECISION_HINT=bf16): the fp32 IR, run in bf16 where the CPU has
AVX512-BF16/AMX. The IR is unchanged; the manifest records the hint and every runner honours it."""

from __future__ import annotations

from compact.quantize import Candidate, QuantMethod, register_method


@register_method
class OpenVinoBf16(QuantMethod):
    name = "openvino_bf16"
    runtime = "openvino"
    packages = ("openvino",)
    extra = "openvino"
    description = "OpenVINO CPU inference in bf16 (precision hint), weights unchanged"

    def quantize(self, ctx, tower: str) -> Candidate:
        from export.targets.openvino import compile_ir, compiled_runner

        src = ctx.fp32_file(tower)
        run = compiled_runner(compile_ir(src, "bf16", ctx.threads()))
        return Candidate(self.name, tower, run, "bf16", [src, src.with_suffix(".bin")],
                         {"inference_precision": "bf16"})
