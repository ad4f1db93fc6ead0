"""bf16 autocast for training: whether it pays on this device, and the attention kernel that is fastest under it.

On the CPU, PyTorch's fused scaled-dot-product attention (the "flash" CPU kernel, its default) is slow in bf16,
its backward above all: on an Intel Xeon with AMX (2 threads) one reference-teacher training step spent 0.82 s
of 1.84 s in it, against 0.13 s in fp32, so bf16 autocast trained no faster than fp32 (210 vs 215 samples/s).
SDPA's math backend (two bf16 matmuls and a softmax, differentiated by autograd) ran the same attention 2.3-3.3x
faster there, and the step 1.55x faster than fp32 (335 samples/s). Which kernel wins depends on the CPU, so the
first bf16 training step of a process times one small attention forward + backward both ways (~0.1 s) and keeps
the math backend only where it is clearly faster. fp32 training and GPUs keep PyTorch's choice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator, Optional

import torch

log = logging.getLogger(__name__)

_BF16_PAYS: Optional[bool] = None


def cpu_has_bf16() -> bool:
    """bf16 autocast is used on the CPU only where it is measured to pay: oneDNN also "supports" bf16 on AVX-512
    CPUs without native bf16 (no avx512_bf16 / AMX), where it is emulated and 2-4x *slower* than fp32. So the
    first call times one training-sized Linear both ways (~0.1 s) and keeps bf16 only if it is >= 1.3x faster
    (4x on this project's AMD EPYC with avx512_bf16). Cached for the process."""
    global _BF16_PAYS
    if _BF16_PAYS is None:
        try:
            supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            supported = False
        _BF16_PAYS = supported and bf16_speedup() >= 1.3
        log.info("bf16 autocast on the CPU: %s", "on" if _BF16_PAYS else "off (not faster than fp32 here)")
    return _BF16_PAYS


def bf16_speedup(rows: int = 4096, width: int = 384) -> float:
    """fp32 time / bf16-autocast time of one Linear(width, 4 * width) forward + backward on `rows` tokens."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, width, generator=g)
    lin = torch.nn.Linear(width, 4 * width)

    def once(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = lin(x)
        y.float().sum().backward()
        return time.perf_counter() - t0

    for bf16 in (False, True):
        once(bf16)  # oneDNN picks and caches its kernels on the first call
    fp32 = min(once(False) for _ in range(3))
    bf16 = min(once(True) for _ in range(3))
    return fp32 / bf16


def bf16_ok(device: str) -> bool:
    """Train in bf16 on `device`: CUDA where the GPU supports it, the CPU where `cpu_has_bf16` measures it faster."""
    if _kind(device) == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def _kind(device: str) -> str:
    """torch.autocast's device type for a device string ("cpu", "cuda", "cuda:1", ...)."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


_CPU_BF16_ATTENTION: dict[str, Optional[str]] = {}  # cached probe result: "math" or None (PyTorch's default)
MIN_GAIN = 1.2  # the math backend must be at least this much faster to be used


def attention_speedup(shape: tuple[int, int, int, int] = (64, 4, 64, 32)) -> float:
    """Time of the default (flash) CPU attention / time of the math backend, forward + backward under bf16
    autocast, on (batch, heads, tokens, head_dim) inputs: the reference towers' training shape."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g, requires_grad=True) for _ in range(3))

    def once(backend) -> float:
        t0 = time.perf_counter()
        with sdpa_kernel(backend), torch.autocast("cpu", dtype=torch.bfloat16):
            y = F.scaled_dot_product_attention(q, k, v)
        y.float().sum().backward()
        return time.perf_counter() - t0

    backends = (SDPBackend.FLASH_ATTENTION, SDPBackend.MATH)
    for b in backends:
        once(b)  # first call: kernel selection and allocation
    flash, math = (min(once(b) for _ in range(3)) for b in backends)
    return flash / math


def cpu_bf16_attention() -> Optional[str]:
    """"math" where SDPA's math backend beats the default CPU kernel under bf16 autocast, else None. Cached."""
    if "choice" not in _CPU_BF16_ATTENTION:
        try:
            gain = attention_speedup()
        except (RuntimeError, ImportError) as e:  # a torch without sdpa_kernel or the flash CPU kernel
            log.info("bf16 attention probe failed (%s): keeping PyTorch's default kernel", e)
            gain = 0.0
        _CPU_BF16_ATTENTION["choice"] = "math" if gain >= MIN_GAIN else None
        log.info("bf16 training attention on the CPU: %s (math backend %.2fx the default kernel)",
                 _CPU_BF16_ATTENTION["choice"] or "PyTorch's default", gain)
    return _CPU_BF16_ATTENTION["choice"]


@contextlib.contextmanager
def train_autocast(device: str, enabled: bool) -> Iterator[None]:
    """bf16 autocast on `device` ("cpu", "cuda", "cuda:1", ...) when `enabled`; on the CPU, with the attention
    backend `cpu_bf16_attention` picks. A no-op when not enabled."""
    if not enabled:
        yield
        return
    kind = _kind(device)
    with torch.autocast(kind, dtype=torch.bfloat16):
        if kind == "cpu" and cpu_bf16_attention() == "math":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.MATH):
                yield
        else:
            yield


def training_precision(device: str, enabled: bool) -> dict:
    """What `train_autocast(device, enabled)` runs, for training reports."""
    if not enabled:
        return {"bf16": False}
    return {"bf16": True, "attention": (cpu_bf16_attention() or "default") if _kind(device) == "cpu" else "default"}
