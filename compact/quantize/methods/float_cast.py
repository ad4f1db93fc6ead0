"""fp16 and bf16 casts for the torch runtime, with the overflow scan deciding which modules stay in fp32."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from compact.quantize import Candidate, QuantMethod, register_method
from compact.quantize.overflow import FP16_MAX, activation_ranges, flag_overflows


class CastWrapper(nn.Module):
    """Runs `module` in `dtype` and returns float32; float inputs are cast on the way in."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, *args):
        args = [a.to(self.dtype) if a.is_floating_point() else a for a in args]
        return self.module(*args).float()


def keep_fp32(module: nn.Module, names: list[str], dtype: torch.dtype) -> None:
    """Put the named submodules back in fp32, casting their inputs up and their outputs down."""
    table = dict(module.named_modules())
    for name in names:
        sub = table[name]
        sub.float()
        sub.register_forward_pre_hook(lambda _m, args: tuple(a.float() if torch.is_tensor(a) and a.is_floating_point()
                                                              else a for a in args))
        sub.register_forward_hook(lambda _m, _i, out: out.to(dtype) if torch.is_tensor(out) else out)


def fp32_islands(flagged: list[dict], ranges: dict[str, float], limit: float, margin: float = 0.5) -> list[str]:
    """The modules to keep in fp32: for each overflowing module, its nearest enclosing module whose *output* fits
    in the low-precision range again (e.g. the transformer block around an FFN that overflows inside), so the
    value that is cast back down is representable. Nested picks are merged into the outermost."""
    keep = set()
    for f in flagged:
        parts = f["module"].split(".")
        chosen = ""
        for i in range(len(parts) - 1, 0, -1):
            name = ".".join(parts[:i])
            if name in ranges and ranges[name] < margin * limit:
                chosen = name
                break
        keep.add(chosen)  # "" = the whole tower
    if "" in keep:
        return [""]
    return sorted(k for k in keep if not any(k != o and k.startswith(o + ".") for o in keep))


def cast_tower(module: nn.Module, dtype: torch.dtype, calib_args: list[tuple[torch.Tensor, ...]],
               limit: float) -> tuple[nn.Module, list[dict], list[str]]:
    ranges = activation_ranges(module, calib_args)
    flagged = flag_overflows(ranges, limit)
    islands = fp32_islands(flagged, ranges, limit) if flagged else []
    if islands == [""]:
        return CastWrapper(copy.deepcopy(module).float(), torch.float32).eval(), flagged, ["<whole tower>"]
    m = copy.deepcopy(module).to(dtype)
    keep_fp32(m, islands, dtype)
    return CastWrapper(m, dtype).eval(), flagged, islands


class _Cast(QuantMethod):
    runtime = "torch"
    packages = ("torch",)
    extra = "dev"
    dtype = torch.float16
    limit = FP16_MAX

    def quantize(self, ctx, tower: str) -> Candidate:
        from compact.quantize.run import torch_runner

        args = [tuple(torch.from_numpy(v) for v in f.values()) for f in ctx.calib.feeds(tower)]
        module, flagged, islands = cast_tower(ctx.towers[tower].module, self.dtype, args, self.limit)
        precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]
        return Candidate(self.name, tower, torch_runner(module), precision if not islands else f"{precision}+fp32",
                         details={"overflow_scan": flagged, "kept_fp32": islands,
                                  "config": {"dtype": precision, "keep_fp32": islands}}, module=module)


@register_method
class Fp16Cast(_Cast):
    name = "fp16_cast"
    description = "torch fp16 weights and activations; layers that overflow fp16 stay fp32"
    dtype = torch.float16


@register_method
class Bf16Cast(_Cast):
    name = "bf16_cast"
    description = "torch bf16 (same range as fp32, so the scan flags nothing; fast where the CPU has BF16)"
    dtype = torch.bfloat16
    limit = float(np.finfo(np.float32).max)
