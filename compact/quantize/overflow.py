"""The fp16 overflow scan: run calibration inputs in fp32, record every module's activation range, and flag the
modules whose outputs exceed what fp16 can hold (65504). Those stay in fp32 (mixed precision). This is the
failure behind near-zero metrics of fp16 multilingual text towers (UForm #50): one FFN output overflows to inf.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

FP16_MAX = 65504.0


@torch.no_grad()
def activation_ranges(module: nn.Module, inputs: Iterable[Sequence[torch.Tensor]]) -> dict[str, float]:
    """max |output| per named leaf module (and per block) over all `inputs` (tuples of positional args)."""
    ranges: dict[str, float] = {}
    hooks = []

    def hook(name):
        def fn(_mod, _inp, out):
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                v = float(out.detach().abs().max()) if out.numel() else 0.0
                ranges[name] = max(ranges.get(name, 0.0), v)
        return fn

    for name, mod in module.named_modules():
        if name:
            hooks.append(mod.register_forward_hook(hook(name)))
    try:
        for args in inputs:
            module(*args)
    finally:
        for h in hooks:
            h.remove()
    return ranges


def flag_overflows(ranges: dict[str, float], limit: float = FP16_MAX, margin: float = 0.5) -> list[dict]:
    """The modules whose activations exceed `margin * limit` (headroom for the error fp16 itself adds)."""
    return [{"module": name, "max_abs": round(v, 3), "limit": limit,
             "reason": f"max |activation| {v:.4g} > {margin:g} x {limit:g}"}
            for name, v in ranges.items() if not v < margin * limit]


def overflow_scan(module: nn.Module, inputs: Iterable[Sequence[torch.Tensor]], limit: float = FP16_MAX,
                  margin: float = 0.5) -> list[dict]:
    return flag_overflows(activation_ranges(module, inputs), limit, margin)
