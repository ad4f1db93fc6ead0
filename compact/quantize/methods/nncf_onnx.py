"""NNCF post-training quantization of the ONNX graph (ModelType.TRANSFORMER), for onnxruntime."""

from __future__ import annotations

from compact.quantize import Candidate, QuantMethod, register_method


@register_method
class NncfOnnx(QuantMethod):
    name = "nncf_onnx"
    runtime = "onnxruntime"
    packages = ("nncf", "onnx", "onnxruntime")
    extra = "nncf"
    description = "nncf.quantize on the ONNX graph, ModelType.TRANSFORMER, per-language calibration"

    def quantize(self, ctx, tower: str) -> Candidate:
        import nncf
        import onnx

        from export.targets.onnx import ort_session, session_runner

        feeds = ctx.calib.feeds(tower)
        model = onnx.load(str(ctx.fp32_file(tower)))
        from compact.quantize.methods.nncf_openvino import advanced_parameters

        q = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds),
                          advanced_parameters=advanced_parameters(overflow_fix=ctx.reduce_range))
        dst = ctx.work / f"{tower}.{self.name}.onnx"
        onnx.save(q, str(dst))
        run = session_runner(ort_session(dst, ctx.threads()))
        return Candidate(self.name, tower, run, "int8", [dst], {"model_type": "TRANSFORMER",
                                                                "calibration_batches": len(feeds),
                                                                "reduce_range": ctx.reduce_range})
