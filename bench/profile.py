"""The device a benchmark ran on: CPU model and ISA flags, cores, memory, OS, Python, runtime versions.

`device_tag()` is the short name that goes into result file names (timm-style), e.g. `xeon-platinum-8488c`.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from typing import Iterable, Optional

FLAGS = {  # what matters for inference kernels -> the /proc/cpuinfo flag names
    "avx2": ("avx2",), "fma": ("fma",), "avx512f": ("avx512f",), "avx512_vnni": ("avx512_vnni",),
    "avx_vnni": ("avx_vnni",), "avx512_bf16": ("avx512_bf16",), "amx_tile": ("amx_tile",),
    "amx_int8": ("amx_int8",), "amx_bf16": ("amx_bf16",), "neon": ("neon", "asimd"), "sve": ("sve",),
    "bf16": ("bf16",), "i8mm": ("i8mm",), "dotprod": ("asimddp",),
}


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return info


def cpu_model() -> str:
    info = _cpuinfo()
    name = info.get("model name") or info.get("Model") or info.get("Hardware")
    if not name and platform.system() == "Darwin":
        import subprocess

        try:
            name = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            name = None
    return name or platform.processor() or platform.machine()


def cpu_flags() -> dict[str, bool]:
    info = _cpuinfo()
    have = set((info.get("flags") or info.get("Features") or "").split())
    if not have and platform.system() == "Darwin" and platform.machine() == "arm64":
        have = {"neon", "dotprod", "bf16", "i8mm"}
    return {k: any(n in have for n in names) for k, names in FLAGS.items()}


def gpu_name() -> Optional[str]:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return None


def device_profile(runtime_versions: Optional[dict[str, str]] = None) -> dict:
    import psutil

    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
        "gpu": gpu_name(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtimes": dict(runtime_versions or {}),
        "device_tag": device_tag(),
    }


def slug(text: str) -> str:
    text = re.sub(r"\((R|TM|tm|r)\)", "", text)
    text = re.sub(r"@.*$", "", text)
    text = re.sub(r"\b(CPU|Processor|\d+-Core|Gen)\b", "", text, flags=re.I)
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def device_tag(device: str = "cpu") -> str:
    """`cpu` runs: a slug of the CPU model; `cuda`: of the GPU; others: the device word."""
    if device == "cuda":
        return slug(gpu_name() or "cuda")
    if device == "cpu":
        return slug(cpu_model())
    return device


def versions(names: Iterable[str]) -> dict[str, str]:
    from bench.runtimes import get_runtime

    out = {}
    for n in names:
        rt = get_runtime(n)
        out[n] = "missing" if rt.missing() else rt.version()
    return out
