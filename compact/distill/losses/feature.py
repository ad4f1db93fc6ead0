"""Feature distillation: the student's embedding should point where the teacher's does (per tower).

Image embeddings are compared with the teacher's image embeddings, text embeddings (of any language) with the
teacher's embedding of the English caption (M-CLIP / multilingual knowledge distillation).
"""

from __future__ import annotations

import torch

from compact.distill.losses import DistillLoss, LossInputs, Projection, normalize, register_loss


class _Feature(DistillLoss):
    def __init__(self, student_dim: int, teacher_dim: int, towers: tuple = ("image", "text")):
        super().__init__(student_dim, teacher_dim)
        self.towers = tuple(towers)
        self.proj = Projection(student_dim, teacher_dim)

    def pairs(self, x: LossInputs):
        out = []
        if "image" in self.towers and x.s_img is not None and x.t_img is not None:
            out.append((self.proj(x.s_img), x.t_img))
        if "text" in self.towers and x.s_txt is not None and x.t_txt is not None:
            out.append((self.proj(x.s_txt), x.t_txt))
        if not out:
            x.need("s_img", "t_img", loss=self.name)  # raises with the names of what is missing
        return out

    def forward(self, x: LossInputs) -> torch.Tensor:
        return sum(self.distance(s, t) for s, t in self.pairs(x)) / len(self.pairs(x))


@register_loss
class FeatureCosine(_Feature):
    name = "feature_cosine"

    def distance(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (1 - (normalize(s) * normalize(t)).sum(-1)).mean()


@register_loss
class FeatureMSE(_Feature):
    """MSE between L2-normalised embeddings (scale-free, so it mixes with the cosine loss), times the dim."""

    name = "feature_mse"

    def distance(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (normalize(s) - normalize(t)).pow(2).sum(-1).mean()
