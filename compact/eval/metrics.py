"""Retrieval, zero-shot and agreement metrics on embedding matrices.

Ranks are pessimistic on ties: a candidate that scores exactly as high as the right answer counts as ranked
above it, so a collapsed model (all embeddings equal) scores 0 recall instead of a perfect one.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

KS = (1, 5, 10)


def t2i_ranks(sim: torch.Tensor, text_to_image: torch.Tensor) -> torch.Tensor:
    """sim: (T, I) text-image scores. For each text, how many wrong images score >= its own image."""
    true = sim.gather(1, text_to_image[:, None])  # (T, 1)
    ge = (sim >= true).sum(1) - 1  # minus the true image itself
    return ge


def i2t_ranks(sim: torch.Tensor, text_to_image: torch.Tensor, num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image with at least one caption: how many wrong captions score >= its best right caption.

    Returns (ranks, image indices that have captions)."""
    sim_it = sim.t()  # (I, T)
    positive = torch.zeros(num_images, sim.shape[0], dtype=torch.bool, device=sim.device)
    positive[text_to_image, torch.arange(sim.shape[0], device=sim.device)] = True
    has = positive.any(1)
    best = sim_it.masked_fill(~positive, float("-inf")).max(1).values  # (I,)
    ge = ((sim_it >= best[:, None]) & ~positive).sum(1)
    return ge[has], has.nonzero().squeeze(1)


def retrieval_metrics(image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: Sequence[int],
                      ks: Sequence[int] = KS) -> dict[str, float]:
    img = F.normalize(image_emb.float(), dim=-1)
    txt = F.normalize(text_emb.float(), dim=-1)
    t2i = torch.as_tensor(text_to_image, dtype=torch.long)
    sim = txt @ img.t()
    r_t2i = t2i_ranks(sim, t2i)
    r_i2t, _ = i2t_ranks(sim, t2i, img.shape[0])
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = float((r_i2t < k).float().mean()) if len(r_i2t) else 0.0
        out[f"t2i_r{k}"] = float((r_t2i < k).float().mean()) if len(r_t2i) else 0.0
    return out


def class_embeddings(prompt_embs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per class, the normalised mean of its normalised prompt embeddings (CLIP's prompt ensembling)."""
    return F.normalize(torch.stack([F.normalize(e.float(), dim=-1).mean(0) for e in prompt_embs]), dim=-1)


def zero_shot_accuracy(image_emb: torch.Tensor, class_emb: torch.Tensor, labels: Sequence[int]) -> float:
    lab = torch.as_tensor(labels, dtype=torch.long)
    keep = lab >= 0
    if not bool(keep.any()):
        return float("nan")
    logits = F.normalize(image_emb.float()[keep], dim=-1) @ F.normalize(class_emb.float(), dim=-1).t()
    # Pessimistic on ties, like the ranks: the true class must beat every other class strictly.
    true = logits.gather(1, lab[keep][:, None])
    wins = ((logits >= true).sum(1) == 1)
    return float(wins.float().mean())


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.float(), b.float(), dim=-1).mean())
