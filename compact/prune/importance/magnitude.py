"""Magnitude: the L2 norm of each unit's weights (no data needed)."""

from __future__ import annotations

import torch

from compact.models.surgery import head_scores, mlp_scores
from compact.prune.importance import Calibration, Scores, register_importance, towers


@register_importance("magnitude")
def magnitude(model, calib: Calibration) -> Scores:
    s = Scores()
    for tower in towers(model):
        blocks = (model.visual if tower == "vision" else model.text).blocks
        s.heads[tower] = [head_scores(model, tower, i) for i in range(len(blocks))]
        s.mlp[tower] = [mlp_scores(model, tower, i) for i in range(len(blocks))]
        s.layers[tower] = torch.stack([
            sum(p.detach().pow(2).sum() for n, p in b.named_parameters() if n.endswith("weight") and p.ndim == 2).sqrt()
            for b in blocks])
    return s
