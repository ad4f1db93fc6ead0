"""int8 saturation on x86 CPUs without VNNI, and the 7-bit weights that avoid it.

onnxruntime's and OpenVINO's int8 GEMM kernels on AVX2 / AVX-512 CPUs without VNNI multiply uint8 activations by
int8 weights with `vpmaddubsw`, which adds each pair of products into a *saturating* int16: with full-range
weights (|w| up to 127) and large activations the pair sum exceeds 32,767 and is clamped. VNNI (`vpdpbusd`,
AVX512-VNNI / AVX-VNNI / AMX) accumulates in int32 and never clamps; ARM's dot products do not either. The
documented fix in both toolchains keeps one bit of headroom in the weights: onnxruntime's `reduce_range=True`
(7-bit weights), NNCF's `OverflowFix.ENABLE` (half the int8 range for every MatMul / convolution weight; NNCF's
default, FIRST_LAYER, halves only the first convolution after each input, so a text tower gets no headroom).

Measured on this project's AVX2-only AMD EPYC (no VNNI; 2026-12-06, `python -m pytest tests/test_quantize.py -k
saturat`), tiny test student, mean embedding cosine / SQNR against fp32, full-range -> 7-bit weights:
- onnxruntime dynamic int8, text tower: 0.964 / 11.4 dB -> 0.99994 / 39.1 dB;
- onnxruntime static QDQ, text tower: 0.951 / 10.1 dB -> 0.99992 / 37.8 dB;
- NNCF on the OpenVINO IR, text tower: 0.979 / 13.7 dB -> 0.99991 / 37.3 dB (ONNX: 0.979 -> 0.99987);
- static QDQ on a random-init MobileNetV4-Conv-Small at 64 px: 0.982 / 14.5 dB -> 0.989 / 16.6 dB (uint8 weights,
  which do not saturate either but ran 0.81x as fast as fp32 against 1.60x, gave 0.994 / 19.3 dB).
Without saturation (VNNI, AMX, ARM) 7-bit weights would only cost precision, so "auto" keeps 8 bits there.

The saturation happens where the model *runs*: an int8 model quantized on a VNNI machine and deployed to an
x86 CPU without VNNI (many laptops and edge boxes) saturates there although the gate passed here. Pass
`--reduce-range on` for such targets; the manifest records what each quantized graph used.
"""

from __future__ import annotations

import platform
from typing import Optional

SETTINGS = ("auto", "on", "off")
RUNTIMES = ("onnxruntime", "openvino")  # where the methods read it (TensorRT engines and torch do not saturate so)
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def int8_saturates(flags: Optional[dict] = None, machine: Optional[str] = None) -> bool:
    """Whether this CPU's u8 x s8 int8 kernels can saturate: x86 without AVX512-VNNI, AVX-VNNI or AMX-INT8.
    An x86 CPU whose flags cannot be read (no /proc/cpuinfo) counts as saturating: the safe side."""
    machine = (machine or platform.machine()).lower()
    if machine not in X86:
        return False
    if flags is None:
        from bench.profile import cpu_flags

        flags = cpu_flags()
    return not any(flags.get(k) for k in ("avx512_vnni", "avx_vnni", "amx_int8"))


def check_setting(setting: str) -> None:
    if setting not in SETTINGS:
        from compact.errors import CompactError

        raise CompactError(f"--reduce-range must be one of {', '.join(SETTINGS)}, got {setting!r}")


def resolve_reduce_range(setting: str, flags: Optional[dict] = None, machine: Optional[str] = None,
                         runtime: str = "onnxruntime") -> dict:
    """`--reduce-range auto|on|off` -> {"reduce_range": bool, "why": str}, recorded in report.json and in the
    manifest of every int8 graph."""
    check_setting(setting)
    if runtime not in RUNTIMES:
        return {"reduce_range": None, "why": f"not used on {runtime}"}
    if setting != "auto":
        return {"reduce_range": setting == "on", "why": f"asked (--reduce-range {setting})"}
    if int8_saturates(flags, machine):
        return {"reduce_range": True, "why": "auto: this x86 CPU has no VNNI, its int8 kernels saturate u8 x s8 "
                                             "pair sums at int16, so int8 weights keep 7 bits"}
    return {"reduce_range": False, "why": "auto: this CPU's int8 dot products do not saturate (VNNI / AMX / ARM); "
                                          "pass --reduce-range on for graphs that will run on x86 without VNNI"}
