"""bf16 autocast for training, with the attention kernel that is fastest under it on this CPU.

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
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
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
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    return {"bf16": True, "attention": (cpu_bf16_attention() or "default") if kind == "cpu" else "default"}
