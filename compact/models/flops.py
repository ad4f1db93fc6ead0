"""Analytic forward FLOPs of a CompactCLIP, per tower (multiply-adds x 2), for one image / one text.

Counted by formula rather than with a profiler: the towers are a few Linear/attention blocks whose cost is
exact in closed form, and a formula does not depend on which kernels this machine happens to pick.
"""

from __future__ import annotations


def _blocks(cfg, T: int) -> int:
    total = 0
    hd = cfg.dim_per_head
    for i in range(cfg.depth):
        inner = cfg.heads_at(i) * hd
        total += 2 * T * cfg.width * 3 * inner  # qkv
        total += 2 * 2 * T * T * inner  # scores and weighted sum
        total += 2 * T * inner * cfg.width  # out
        total += 2 * 2 * T * cfg.width * cfg.mlp_at(i)  # fc1 + fc2
    return total


def tower_flops(model, text_tokens: int | None = None) -> dict:
    cfg = model.cfg
    out = {}
    v = cfg.vision
    if v.type == "vit":
        n = (v.image_size // v.patch_size) ** 2
        out["image"] = 2 * n * 3 * v.patch_size ** 2 * v.width + _blocks(v, n + 1) + 2 * v.width * cfg.embed_dim
    else:
        out["image"] = None  # timm backbones: use the bench harness
    T = text_tokens or cfg.text.context_length
    out["text"] = _blocks(cfg.text, T) + 2 * cfg.text.width * cfg.embed_dim
    out["text_tokens"] = T
    return out
