"""Taylor: first-order |weight x gradient| of each unit, summed over its weights, on calibration batches.

The objective is CLIP's InfoNCE on the calibration pairs plus cosine distillation to the teacher (when the
teacher is not the model itself; for self-pruning the distillation term is zero with zero gradient).
"""

from __future__ import annotations

import torch

from compact.prune.importance import Calibration, Scores, register_importance, towers
from compact.prune.importance._objective import _tower, calibration_batches, objective


@register_importance("taylor")
def taylor(model, calib: Calibration) -> Scores:
    model.zero_grad(set_to_none=True)
    was = model.training
    model.eval()
    n = 0
    for pixels, tb, t_img, t_txt in calibration_batches(model, calib):
        objective(model, pixels, tb, t_img, t_txt).backward()
        n += 1
    s = Scores()
    for tower in towers(model):
        cfg = getattr(model.cfg, tower)
        heads, mlp, layers = [], [], []
        for i, blk in enumerate(_tower(model, tower).blocks):
            H, hd, W = cfg.heads_at(i), cfg.dim_per_head, cfg.width

            def wg(p):
                return (p.detach() * p.grad).abs() if p.grad is not None else torch.zeros_like(p)

            qkv = wg(blk.attn.qkv.weight).reshape(3, H, hd, W).sum((0, 2, 3))
            out = wg(blk.attn.out.weight).reshape(W, H, hd).sum((0, 2))
            heads.append(qkv + out)
            mlp.append(wg(blk.fc1.weight).sum(1) + wg(blk.fc1.bias) + wg(blk.fc2.weight).sum(0))
            layers.append(sum(wg(p).sum() for p in blk.parameters()))
        s.heads[tower], s.mlp[tower], s.layers[tower] = heads, mlp, torch.stack(layers)
    model.zero_grad(set_to_none=True)
    model.train(was)
    return s
