"""Affinity mimicking (TinyCLIP): the student's image-to-text and text-to-image similarity distributions over
the batch should match the teacher's (KL in both directions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compact.distill.losses import DistillLoss, LossInputs, normalize, register_loss


@register_loss
class Affinity(DistillLoss):
    name = "affinity"

    def forward(self, x: LossInputs) -> torch.Tensor:
        s_img, s_txt, t_img, t_txt = x.need("s_img", "s_txt", "t_img", "t_txt", loss=self.name)
        scale = x.logit_scale if x.logit_scale is not None else x.teacher_scale
        s = scale * normalize(s_img) @ normalize(s_txt).T
        t = x.teacher_scale * normalize(t_img) @ normalize(t_txt).T
        i2t = F.kl_div(s.log_softmax(1), t.log_softmax(1), log_target=True, reduction="batchmean")
        t2i = F.kl_div(s.T.log_softmax(1), t.T.log_softmax(1), log_target=True, reduction="batchmean")
        return 0.5 * (i2t + t2i)
