"""Learning-rate schedule shared by every trainer in compact."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, base_lr: float, warmup_frac: float) -> float:
    """Linear warm-up over `warmup_frac` of the steps, then cosine decay to zero."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return base_lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return base_lr * 0.5 * (1 + math.cos(math.pi * t))
