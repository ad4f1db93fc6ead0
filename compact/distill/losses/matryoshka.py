"""Matryoshka (jina-clip-v2): apply a base loss to the first d dims of the student's embeddings for several d,
so an exported embedding can be cut for on-device index memory and still work."""

from __future__ import annotations

from dataclasses import replace

import torch

from compact.distill.losses import DistillLoss, LossInputs, build_loss, register_loss
from compact.errors import CompactError


@register_loss
class Matryoshka(DistillLoss):
    name = "matryoshka"

    def __init__(self, student_dim: int, teacher_dim: int, base: str = "contrastive", dims: tuple | None = None,
                 base_params: dict | None = None):
        super().__init__(student_dim, teacher_dim)
        dims = dims or (student_dim // 4, student_dim // 2)  # default: a quarter, a half and the full dim
        dims = sorted({int(d) for d in dims} | {student_dim})
        if dims[0] < 1 or dims[-1] > student_dim:
            raise CompactError(f"matryoshka dims {dims} must lie in 1..{student_dim} (the student's embed dim)")
        if base == self.name:
            raise CompactError("matryoshka cannot wrap itself")
        self.dims = dims
        # Feature losses compare against the teacher, so a truncated student needs its own projection per dim.
        self.bases = torch.nn.ModuleList(build_loss(base, d, teacher_dim, base_params) for d in dims)

    def forward(self, x: LossInputs) -> torch.Tensor:
        total = 0.0
        for d, loss in zip(self.dims, self.bases):
            cut = replace(x, s_img=None if x.s_img is None else x.s_img[:, :d],
                          s_txt=None if x.s_txt is None else x.s_txt[:, :d])
            total = total + loss(cut)
        return total / len(self.dims)
