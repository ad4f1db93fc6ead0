"""InfoNCE on the student's own image-caption pairs, and DCLIP's hybrid of InfoNCE with cosine to the teacher."""

from __future__ import annotations

import torch

from compact.distill.losses import DistillLoss, LossInputs, Projection, clip_targets, normalize, register_loss


def info_nce(img: torch.Tensor, txt: torch.Tensor, scale, targets: torch.Tensor) -> torch.Tensor:
    logits = scale * normalize(img) @ normalize(txt).T
    i2t = -(targets * logits.log_softmax(1)).sum(1).mean()
    t2i = -(targets.T * logits.T.log_softmax(1)).sum(1).mean()
    return 0.5 * (i2t + t2i)


@register_loss
class Contrastive(DistillLoss):
    name = "contrastive"

    def forward(self, x: LossInputs) -> torch.Tensor:
        s_img, s_txt = x.need("s_img", "s_txt", loss=self.name)
        # Pairs whose teacher targets coincide (the same English caption) are positives for each other.
        tg = clip_targets(x.t_txt, x.t_txt) if x.t_txt is not None else torch.eye(len(s_img), device=s_img.device)
        return info_nce(s_img, s_txt, x.logit_scale if x.logit_scale is not None else 1 / 0.07, tg)


@register_loss
class DCLIP(DistillLoss):
    """InfoNCE + alpha * (1 - cosine to the teacher), per tower."""

    name = "dclip"

    def __init__(self, student_dim: int, teacher_dim: int, alpha: float = 1.0):
        super().__init__(student_dim, teacher_dim)
        self.alpha = float(alpha)
        self.proj = Projection(student_dim, teacher_dim)

    def forward(self, x: LossInputs) -> torch.Tensor:
        s_img, s_txt, t_img, t_txt = x.need("s_img", "s_txt", "t_img", "t_txt", loss=self.name)
        nce = info_nce(s_img, s_txt, x.logit_scale if x.logit_scale is not None else 1 / 0.07,
                       clip_targets(t_txt, t_txt))
        cos = (normalize(self.proj(s_img)) * normalize(t_img)).sum(-1).mean()
        cos = 0.5 * (cos + (normalize(self.proj(s_txt)) * normalize(t_txt)).sum(-1).mean())
        return nce + self.alpha * (1 - cos)
