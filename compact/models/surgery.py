"""Structural surgery on a CompactCLIP: build a physically smaller model by keeping chosen layers, heads, FFN
neurons, residual-stream channels, vocabulary rows and embedding dims.

Weight inheritance (distillation, TinyCLIP-style) and structured pruning both end here: they differ only in
how they choose what to keep. The result is a plain CompactCLIP with smaller tensors, so it saves, loads and
exports like any other.

Why by hand rather than Torch-Pruning: the choice of *which* units to keep comes from our own importance
metrics, and the model is a handful of Linear layers whose couplings (fused qkv per head, residual stream
shared by every block and both ends of the tower, the vocabulary table) are known statically. Slicing them
directly is exact and keeps the per-layer config (`heads`/`mlp_dim` lists) in step with the tensors.

Exactness: dropping heads, FFN neurons, whole layers or vocabulary rows is exact when those units were zero
(tests check this). Dropping residual-stream channels changes LayerNorm statistics, so it is an approximation
that needs recovery training, as in every width-pruning method.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from compact.errors import CompactError
from compact.models.compact_clip import CompactCLIP
from compact.models.config import ModelConfig


@dataclass
class TowerPlan:
    layers: list[int]  # source layer indices kept, in order
    heads: dict[int, list[int]] = field(default_factory=dict)  # source layer -> head indices kept (absent: all)
    mlp: dict[int, list[int]] = field(default_factory=dict)  # source layer -> FFN neurons kept (absent: all)
    width: Optional[list[int]] = None  # residual-stream channels kept (None: all)


@dataclass
class SlicePlan:
    vision: Optional[TowerPlan] = None  # None: keep the tower as is
    text: Optional[TowerPlan] = None
    vocab: Optional[list[int]] = None  # source token rows, in the new id order (None: all)
    context_length: Optional[int] = None  # new text context; rows past the source's are freshly initialised
    embed: Optional[list[int]] = None  # embedding-dim outputs kept (None: all)


def _idx(ix: Optional[list[int]], n: int) -> torch.Tensor:
    return torch.arange(n) if ix is None else torch.as_tensor(list(ix), dtype=torch.long)


def _slice_block(src: dict, dst: dict, sp: str, dp: str, heads: torch.Tensor, mlp: torch.Tensor, w: torch.Tensor,
                 n_heads: int, hd: int) -> None:
    W = src[f"{sp}.ln1.weight"].shape[0]
    for ln in ("ln1", "ln2"):
        dst[f"{dp}.{ln}.weight"] = src[f"{sp}.{ln}.weight"][w]
        dst[f"{dp}.{ln}.bias"] = src[f"{sp}.{ln}.bias"][w]
    qkv_w = src[f"{sp}.attn.qkv.weight"].reshape(3, n_heads, hd, W)[:, heads][..., w]
    dst[f"{dp}.attn.qkv.weight"] = qkv_w.reshape(-1, len(w))
    dst[f"{dp}.attn.qkv.bias"] = src[f"{sp}.attn.qkv.bias"].reshape(3, n_heads, hd)[:, heads].reshape(-1)
    out_w = src[f"{sp}.attn.out.weight"].reshape(W, n_heads, hd)[w][:, heads]
    dst[f"{dp}.attn.out.weight"] = out_w.reshape(len(w), -1)
    dst[f"{dp}.attn.out.bias"] = src[f"{sp}.attn.out.bias"][w]
    dst[f"{dp}.fc1.weight"] = src[f"{sp}.fc1.weight"][mlp][:, w]
    dst[f"{dp}.fc1.bias"] = src[f"{sp}.fc1.bias"][mlp]
    dst[f"{dp}.fc2.weight"] = src[f"{sp}.fc2.weight"][w][:, mlp]
    dst[f"{dp}.fc2.bias"] = src[f"{sp}.fc2.bias"][w]


def _tower_cfg(cfg, plan: TowerPlan):
    heads = [len(plan.heads.get(i, range(cfg.heads_at(i)))) for i in plan.layers]
    mlp = [len(plan.mlp.get(i, range(cfg.mlp_at(i)))) for i in plan.layers]
    if not plan.layers:
        raise CompactError("the plan removes every layer of a tower; keep at least one layer")
    if any(h == 0 for h in heads):
        layer = plan.layers[heads.index(0)]
        raise CompactError(f"the plan removes every attention head of layer {layer}; keep at least one head "
                           "(or remove the whole layer)")
    uniform = lambda v: v[0] if len(set(v)) == 1 else v  # noqa: E731
    return replace(cfg, depth=len(plan.layers), heads=uniform(heads), mlp_dim=uniform(mlp),
                   head_dim=cfg.dim_per_head, width=len(plan.width) if plan.width is not None else cfg.width)


def slice_model(model: CompactCLIP, plan: SlicePlan, tokenizer=None) -> CompactCLIP:
    """A new, smaller CompactCLIP holding the kept units of `model` (which is left untouched)."""
    cfg: ModelConfig = model.cfg
    src = {k: v.detach().clone() for k, v in model.state_dict().items()}
    new_cfg = copy.deepcopy(cfg)
    embed = _idx(plan.embed, cfg.embed_dim)
    new_cfg.embed_dim = len(embed)
    dst: dict[str, torch.Tensor] = {"log_logit_scale": src["log_logit_scale"]}

    for tower in ("vision", "text"):
        tcfg = getattr(cfg, tower)
        tplan: Optional[TowerPlan] = getattr(plan, tower)
        prefix = "visual" if tower == "vision" else "text"
        if tower == "vision" and tcfg.type != "vit":
            if tplan is not None:
                raise CompactError(f"structured surgery supports compact ViT towers; this vision tower is timm "
                                   f"{tcfg.timm_name!r}")
            for k, v in src.items():
                if k.startswith("visual."):
                    dst[k] = v[embed] if k == "visual.proj.weight" else v
            continue
        if tplan is None:
            tplan = TowerPlan(layers=list(range(tcfg.depth)))
        new_t = _tower_cfg(tcfg, tplan)
        w = _idx(tplan.width, tcfg.width)
        for j, i in enumerate(tplan.layers):
            if not 0 <= i < tcfg.depth:
                raise CompactError(f"{tower} layer {i} does not exist (depth {tcfg.depth})")
            _slice_block(src, dst, f"{prefix}.blocks.{i}", f"{prefix}.blocks.{j}",
                         _idx(tplan.heads.get(i), tcfg.heads_at(i)), _idx(tplan.mlp.get(i), tcfg.mlp_at(i)), w,
                         tcfg.heads_at(i), tcfg.dim_per_head)
        dst[f"{prefix}.proj.weight"] = src[f"{prefix}.proj.weight"][embed][:, w]
        if tower == "vision":
            dst["visual.patch.weight"] = src["visual.patch.weight"][w]
            dst["visual.patch.bias"] = src["visual.patch.bias"][w]
            dst["visual.cls"] = src["visual.cls"][..., w]
            dst["visual.pos"] = src["visual.pos"][..., w]
            for ln in ("ln_pre", "ln_post"):
                dst[f"visual.{ln}.weight"] = src[f"visual.{ln}.weight"][w]
                dst[f"visual.{ln}.bias"] = src[f"visual.{ln}.bias"][w]
        else:
            vocab = _idx(plan.vocab, tcfg.vocab_size)
            dst["text.tok.weight"] = src["text.tok.weight"][vocab][:, w]
            ctx = plan.context_length or tcfg.context_length
            pos = src["text.pos"][:, :ctx][..., w]
            if ctx > pos.shape[1]:  # longer context than the source: new positions start small, as at init
                extra = torch.randn(1, ctx - pos.shape[1], len(w), generator=torch.Generator().manual_seed(0)) * 0.01
                pos = torch.cat([pos, extra], dim=1)
            dst["text.pos"] = pos
            dst["text.ln_final.weight"] = src["text.ln_final.weight"][w]
            dst["text.ln_final.bias"] = src["text.ln_final.bias"][w]
            new_t = replace(new_t, vocab_size=len(vocab), context_length=ctx)
        setattr(new_cfg, tower, new_t)

    out = CompactCLIP(new_cfg, tokenizer or model.tokenizer, model.preprocess_cfg, model.languages)
    out.load_state_dict({k: v.contiguous() for k, v in dst.items()})
    return out.eval()


# --- magnitude scores used to choose what to keep (weight inheritance; the prune registry has richer metrics)

def head_scores(model: CompactCLIP, tower: str, layer: int) -> torch.Tensor:
    """L2 norm of each head's q/k/v rows and out-projection columns."""
    cfg = getattr(model.cfg, tower)
    blk = (model.visual if tower == "vision" else model.text).blocks[layer]
    H, hd, W = cfg.heads_at(layer), cfg.dim_per_head, cfg.width
    qkv = blk.attn.qkv.weight.detach().reshape(3, H, hd, W).pow(2).sum((0, 2, 3))
    out = blk.attn.out.weight.detach().reshape(W, H, hd).pow(2).sum((0, 2))
    return (qkv + out).sqrt()


def mlp_scores(model: CompactCLIP, tower: str, layer: int) -> torch.Tensor:
    blk = (model.visual if tower == "vision" else model.text).blocks[layer]
    return (blk.fc1.weight.detach().pow(2).sum(1) + blk.fc2.weight.detach().pow(2).sum(0)).sqrt()


def width_scores(model: CompactCLIP, tower: str) -> torch.Tensor:
    """Per residual channel: norm of every weight that reads or writes it."""
    t = model.visual if tower == "vision" else model.text
    s = t.proj.weight.detach().pow(2).sum(0)
    for blk in t.blocks:
        s = s + blk.attn.qkv.weight.detach().pow(2).sum(0) + blk.fc1.weight.detach().pow(2).sum(0)
        s = s + blk.attn.out.weight.detach().pow(2).sum(1) + blk.fc2.weight.detach().pow(2).sum(1)
    return s.sqrt()


def top(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest scores, in their original order (keeps positional structure)."""
    return sorted(torch.topk(scores, k).indices.tolist())
