"""NNCF post-training quantization of the OpenVINO IR (ModelType.TRANSFORMER), for OpenVINO."""

from __future__ import annotations

from compact.quantize import Candidate, QuantMethod, register_method


@register_method
class NncfOpenVino(QuantMethod):
    name = "nncf_openvino"
    runtime = "openvino"
    packages = ("nncf", "openvino")
    extra = "nncf"
    description = "nncf.quantize on the OpenVINO IR, ModelType.TRANSFORMER, per-language calibration"
    precision_hint = "f32"  # OpenVINO INFERENCE_PRECISION_HINT for the layers NNCF leaves in float
    precision = "int8"

    def quantize(self, ctx, tower: str) -> Candidate:
        from export.targets.openvino import compile_ir, compiled_runner

        dst = ctx.work / f"{tower}.{self.name}.xml"
        details = quantize_ir(ctx, tower, dst)
        if self.precision_hint != "f32":
            details["inference_precision"] = self.precision_hint  # the manifest records it; runners honour it
        run = compiled_runner(compile_ir(dst, self.precision_hint, ctx.threads()))
        return Candidate(self.name, tower, run, self.precision, [dst, dst.with_suffix(".bin")], details)


def quantize_ir(ctx, tower: str, dst) -> dict:
    """nncf.quantize the tower's fp32 IR with the per-language calibration feeds; save the int8 IR at `dst`."""
    import nncf
    import openvino as ov

    feeds = ctx.calib.feeds(tower)
    model = ov.Core().read_model(str(ctx.fp32_file(tower)))
    q = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
    ov.save_model(q, str(dst))
    return {"model_type": "TRANSFORMER", "calibration_batches": len(feeds)}
