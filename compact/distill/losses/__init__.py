"""Distillation losses, one file each, found through `LOSSES`. A recipe combines them with weights.

Every loss gets the same `LossInputs`: the student's and the teacher's embeddings for one batch. Fields a stage
does not produce are None (the text stage has no images), and a loss that needs them says so.

    feature_cosine / feature_mse   per-tower feature distillation (learned projection when dims differ)
    affinity                       KL between student and teacher image-text similarity distributions, both ways
    contrastive                    InfoNCE on the student's own image-text pairs
    dclip                          InfoNCE plus cosine to the teacher (DCLIP's hybrid)
    soft_negatives                 InfoNCE whose targets blend in the teacher's similarities, growing over training
    matryoshka                     any of the above at truncated dims (e.g. 32/64/full)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from compact.errors import CompactError


@dataclass
class LossInputs:
    s_img: Optional[torch.Tensor] = None  # (B, Ds) student image embeddings, un-normalised
    s_txt: Optional[torch.Tensor] = None  # (B, Ds) student text embeddings (the target-language caption)
    t_img: Optional[torch.Tensor] = None  # (B, Dt) teacher image embeddings
    t_txt: Optional[torch.Tensor] = None  # (B, Dt) teacher text embeddings (of the English caption)
    logit_scale: Optional[torch.Tensor] = None  # the student's learnable scale (exp'd), for contrastive losses
    teacher_scale: float = 100.0  # the teacher's logit scale, for its similarity distributions
    progress: float = 0.0  # step / total steps of the stage, in [0, 1]

    def need(self, *names: str, loss: str) -> list[torch.Tensor]:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise CompactError(f"loss {loss!r} needs {', '.join(missing)}, which this stage does not produce; "
                               "move it to a stage with images and captions (align) or drop it from the recipe")
        return [getattr(self, n) for n in names]


class DistillLoss(nn.Module):
    """A loss may own parameters (e.g. a projection); they are trained with the student and checkpointed."""

    name: str = ""

    def __init__(self, student_dim: int, teacher_dim: int, **params):
        super().__init__()
        if params:
            raise CompactError(f"bad parameters for loss {self.name!r}: it takes no {sorted(params)}")

    def forward(self, x: LossInputs) -> torch.Tensor:
        raise NotImplementedError


LOSSES: dict[str, type[DistillLoss]] = {}


def register_loss(cls: type[DistillLoss]) -> type[DistillLoss]:
    LOSSES[cls.name] = cls
    return cls


def build_loss(name: str, student_dim: int, teacher_dim: int, params: Optional[dict] = None) -> DistillLoss:
    _import_builtin()
    if name not in LOSSES:
        raise CompactError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](student_dim, teacher_dim, **(params or {}))
    except TypeError as e:
        raise CompactError(f"bad parameters for loss {name!r}: {e}") from None


def list_losses() -> list[str]:
    _import_builtin()
    return sorted(LOSSES)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x.float(), dim=-1)


class Projection(nn.Module):
    """Maps student features to the teacher's dim when they differ (identity otherwise)."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim, bias=False) if student_dim != teacher_dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def clip_targets(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-normalised positives for a batch that may repeat a pair (identical teacher targets count as one)."""
    same = (normalize(a) @ normalize(b).T) > 1 - 1e-6
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    pos = (same | eye).float()
    return pos / pos.sum(1, keepdim=True)


LossFn = Callable[[LossInputs], torch.Tensor]


def _import_builtin() -> None:
    from compact.distill.losses import affinity, contrastive, feature, matryoshka, soft_negatives  # noqa: F401
