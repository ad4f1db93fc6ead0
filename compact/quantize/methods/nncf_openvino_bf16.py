"""NNCF int8 (as `nncf_openvino`) with the layers left in float run in bf16 (INFERENCE_PRECISION_HINT=bf16):
OpenVINO's default on CPUs with AMX, and worth trying wherever AVX512-BF16 exists. The IR is the int8 one;
the manifest records the hint and every runner honours it."""

from __future__ import annotations

from compact.quantize import register_method
from compact.quantize.methods.nncf_openvino import NncfOpenVino


@register_method
class NncfOpenVinoBf16(NncfOpenVino):
    name = "nncf_openvino_bf16"
    description = "nncf.quantize int8 IR, the rest in bf16 (OpenVINO precision hint)"
    precision_hint = "bf16"
    precision = "int8+bf16"
