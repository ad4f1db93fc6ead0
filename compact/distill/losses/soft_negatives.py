"""Soft negatives (LightCLIP): InfoNCE whose one-hot targets blend in the teacher's similarity distribution,
with the blend growing linearly over the stage from `start` to `end`. Early on the student learns the pairs;
later, negatives the teacher finds similar stop being pushed fully away."""

from __future__ import annotations

import torch

from compact.distill.losses import DistillLoss, LossInputs, clip_targets, normalize, register_loss
from compact.distill.losses.contrastive import info_nce


@register_loss
class SoftNegatives(DistillLoss):
    name = "soft_negatives"

    def __init__(self, student_dim: int, teacher_dim: int, start: float = 0.0, end: float = 0.5):
        super().__init__(student_dim, teacher_dim)
        self.start, self.end = float(start), float(end)

    def blend(self, progress: float) -> float:
        return self.start + (self.end - self.start) * min(max(progress, 0.0), 1.0)

    def forward(self, x: LossInputs) -> torch.Tensor:
        s_img, s_txt, t_img, t_txt = x.need("s_img", "s_txt", "t_img", "t_txt", loss=self.name)
        a = self.blend(x.progress)
        soft = (x.teacher_scale * normalize(t_img) @ normalize(t_txt).T).softmax(1)
        targets = (1 - a) * clip_targets(t_txt, t_txt) + a * soft
        return info_nce(s_img, s_txt, x.logit_scale if x.logit_scale is not None else 1 / 0.07, targets)
