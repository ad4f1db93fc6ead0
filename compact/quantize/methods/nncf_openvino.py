"""NNCF post-training quantization of the OpenVINO IR (ModelType.TRANSFORMER; also NNCF's CNN default for
convolutional towers), for OpenVINO."""

from __future__ import annotations

from typing import Optional

import numpy as np

from compact.errors import CompactError
from compact.quantize import CONV_TOWER_MIN_CONVS, Candidate, QuantMethod, listed, register_method


@register_method
class NncfOpenVino(QuantMethod):
    name = "nncf_openvino"
    runtime = "openvino"
    packages = ("nncf", "openvino")
    extra = "nncf"
    description = "nncf.quantize on the OpenVINO IR (transformer type; also the CNN type on conv towers), per-language calibration"
    precision_hint = "f32"  # OpenVINO INFERENCE_PRECISION_HINT for the layers NNCF leaves in float
    precision = "int8"
    options = {
        "ignored_types": "OpenVINO op types NNCF leaves in float, e.g. Convolution (the patch embedding)",
        "ignored_patterns": "regexes of IR node names NNCF leaves in float",
        "smooth_quant_alpha": "SmoothQuant migration strength for MatMul, e.g. 0.95 (NNCF's default for "
                              "transformers) or -1 (off); default: both, keep the closer to fp32 on calibration",
        "fast_bias_correction": "false: NNCF's full BiasCorrection (slower, sometimes more accurate)",
        "model_type": "transformer or cnn (NNCF's default type); default: transformer, and for convolutional towers "
                      "both, keeping the closer to fp32 on held-out inputs",
    }

    def check_options(self, options: dict) -> None:
        nncf_options(options)

    def quantize(self, ctx, tower: str) -> Candidate:
        from export.targets.openvino import compile_ir, compiled_runner

        dst = ctx.work / f"{tower}.{self.name}.xml"
        details = quantize_ir(ctx, tower, dst)
        if self.precision_hint != "f32":
            details["inference_precision"] = self.precision_hint  # the manifest records it; runners honour it
        run = compiled_runner(compile_ir(dst, self.precision_hint, ctx.threads()))
        return Candidate(self.name, tower, run, self.precision, [dst, dst.with_suffix(".bin")], details)


CONV_TYPES = ("Convolution", "GroupConvolution")


def quantize_ir(ctx, tower: str, dst) -> dict:
    """nncf.quantize the tower's fp32 IR with the per-language calibration feeds; save the int8 IR at `dst`.

    Unless `smooth_quant_alpha` is given, it quantizes twice, with NNCF's SmoothQuant (its transformer default)
    and without, and keeps the one whose outputs on held-out inputs are closer to fp32 (mean cosine).
    SmoothQuant moves activation outliers into the weights; CLIP towers with outlier channels gain from it, while
    the reference students have none and lost with it (image tower cosine 0.9994 with it, 0.9999 without).

    Convolutional towers (at least CONV_TOWER_MIN_CONVS convolutions) are also quantized as NNCF's default model
    type (for CNNs: no transformer-specific ignored patterns or SmoothQuant), and that variant competes on the same
    held-out cosine. On the CPU-first student's MobileNetV4 image tower (random init) ModelType.TRANSFORMER gave
    cosine 0.975 against fp32 (below the 0.99 gate) and the CNN type 0.9996, 2.7x faster than fp32 on 2 threads.
    `model_type=transformer|cnn` forces one."""
    import nncf
    import openvino as ov

    from compact.quantize.gates import cosine_stats
    from export.targets.openvino import compile_ir, compiled_runner

    feeds = ctx.calib.feeds(tower)
    kwargs, details = nncf_options(ctx.cfg.method_options)
    forced = details.pop("model_type", None)
    convs = sum(op.get_type_name() in CONV_TYPES for op in ov.Core().read_model(str(ctx.fp32_file(tower))).get_ops())
    types = [forced] if forced else (["transformer", "cnn"] if convs >= CONV_TOWER_MIN_CONVS else ["transformer"])
    fix = ctx.reduce_range  # OverflowFix.ENABLE where int8 saturates (compact/quantize/saturation.py)
    alpha = details.get("smooth_quant_alpha")
    variants: dict[str, tuple[str, dict]] = {}
    for mt in types:
        if mt == "cnn":
            variants["cnn"] = (mt, {**kwargs, "advanced_parameters": advanced_parameters(alpha, fix)})
        elif alpha is not None:
            variants["given"] = (mt, {**kwargs, "advanced_parameters": advanced_parameters(alpha, fix)})
        else:
            variants["nncf_default"] = (mt, {**kwargs, "advanced_parameters": advanced_parameters(None, fix)})
            variants["off"] = (mt, {**kwargs, "advanced_parameters": advanced_parameters(-1.0, fix)})
    held = ctx.held_out().feeds(tower) if len(variants) > 1 else []
    ref = np.concatenate([ctx.fp32_runners[tower](f) for f in held]) if held else None
    scores = {}
    for name, (mt, kw) in variants.items():
        model = ov.Core().read_model(str(ctx.fp32_file(tower)))
        model_type = {"model_type": nncf.ModelType.TRANSFORMER} if mt == "transformer" else {}
        q = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), **model_type, **kw)
        path = dst if len(variants) == 1 else dst.with_name(f"{dst.stem}.{name}.xml")
        ov.save_model(q, str(path))
        if ref is not None:
            run = compiled_runner(compile_ir(path, "f32", ctx.threads()))
            got = np.concatenate([run(f) for f in held])
            scores[name] = (cosine_stats(ref, got)["cosine_mean"], path)
    chosen = next(iter(variants))
    if scores:
        chosen = max(scores, key=lambda n: scores[n][0])
        for name, (_, path) in scores.items():
            if name == chosen:
                path.replace(dst)
                path.with_suffix(".bin").replace(dst.with_suffix(".bin"))
            else:
                path.unlink()
                path.with_suffix(".bin").unlink()
        details["smooth_quant"] = {"chosen": chosen, "held_out_cosine": {n: round(c, 6) for n, (c, _) in
                                                                            scores.items()}}
    model_type = variants[chosen][0]
    return {"model_type": "TRANSFORMER" if model_type == "transformer" else "default (CNN)",
            "convolutions": convs, "calibration_batches": len(feeds), "reduce_range": fix,
            "overflow_fix": "ENABLE" if fix else "NNCF default", **details}


def advanced_parameters(smooth_quant_alpha: Optional[float] = None, overflow_fix: bool = False):
    """NNCF's AdvancedQuantizationParameters: SmoothQuant's MatMul alpha (None: NNCF's default for the model type),
    and OverflowFix.ENABLE (half the int8 range for every weight) where int8 saturates; otherwise NNCF's default."""
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                       AdvancedSmoothQuantParameters, OverflowFix)

    kw = {}
    if smooth_quant_alpha is not None:
        kw["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha)
    if overflow_fix:
        kw["overflow_fix"] = OverflowFix.ENABLE
    return AdvancedQuantizationParameters(**kw)


def nncf_options(opts: dict) -> tuple[dict, dict]:
    """`method_options` -> (`nncf.quantize` keyword arguments, what the report records)."""
    import nncf

    kwargs, details = {}, {}
    types, patterns = listed(opts.get("ignored_types", [])), listed(opts.get("ignored_patterns", []))
    if types or patterns:
        # validate=False: a type the tower lacks (a text tower has no Convolution) is not an error
        kwargs["ignored_scope"] = nncf.IgnoredScope(types=types, patterns=patterns, validate=False)
        details["ignored_scope"] = {"types": types, "patterns": patterns}
    if "smooth_quant_alpha" in opts:
        try:
            alpha = float(opts["smooth_quant_alpha"])
        except (TypeError, ValueError):
            raise CompactError(f"smooth_quant_alpha must be a number, got {opts['smooth_quant_alpha']!r}; e.g. "
                               "smooth_quant_alpha=0.95, or -1 for off") from None
        details["smooth_quant_alpha"] = alpha  # quantize_ir turns it into NNCF's advanced parameters
    if "model_type" in opts:
        mt = str(opts["model_type"]).lower()
        if mt not in ("transformer", "cnn"):
            raise CompactError(f"model_type must be transformer or cnn, got {opts['model_type']!r}")
        details["model_type"] = mt
    if "fast_bias_correction" in opts:
        fast = opts["fast_bias_correction"]
        if not isinstance(fast, bool):
            raise CompactError(f"fast_bias_correction must be true or false, got {fast!r}; "
                               "e.g. fast_bias_correction=false")
        kwargs["fast_bias_correction"] = fast
        details["fast_bias_correction"] = fast
    return kwargs, details
