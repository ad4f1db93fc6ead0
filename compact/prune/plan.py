"""From importance scores and a target to a SlicePlan: which heads, FFN neurons, layers and vocabulary rows stay.

One-shot, width first then depth (MoPE-CLIP's order): heads and FFN neurons are removed in order of
score per parameter, lowest first, within caps that keep every layer usable; only if the target is still not
met are whole layers removed, least important first. The vocabulary is trimmed to the tokens the target
languages use when a corpus is given (the same trimming as the distillation student's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from compact.errors import CompactError
from compact.models.compact_clip import count_parameters
from compact.models.surgery import SlicePlan, TowerPlan
import torch

from compact.prune.importance import Scores, towers

GRANULARITIES = ("heads", "mlp", "layers")
OPTIONAL_GRANULARITIES = ("width",)  # residual-stream channels: approximate (LayerNorm statistics change), opt-in


@dataclass(frozen=True)
class PlanConfig:
    keep_params: float = 0.5  # fraction of the model's parameters to keep
    granularity: tuple[str, ...] = GRANULARITIES
    min_heads: int = 1  # per layer
    min_mlp_frac: float = 0.125  # per layer, of its FFN neurons
    min_layers: int = 1  # per tower
    min_width_frac: float = 0.5  # width pruning keeps at least this share of each tower's residual channels
    # Stop at the per-layer minimums instead of failing when the target is out of reach (intermediate rounds of
    # the iterative schedule, and the FLOPs/latency target search, which then measures the floor plan).
    best_effort: bool = False
    prune_towers: tuple[str, ...] = ("vision", "text")

    def __post_init__(self) -> None:
        if not 0 < self.keep_params <= 1:
            raise CompactError(f"the target keeps {self.keep_params:.2%} of the parameters; give a fraction in (0, 1]")
        bad = [g for g in self.granularity if g not in GRANULARITIES + OPTIONAL_GRANULARITIES]
        if bad:
            raise CompactError(f"unknown granularity {bad}; choose from {GRANULARITIES + OPTIONAL_GRANULARITIES}")
        if self.min_heads < 1 or self.min_layers < 1:
            raise CompactError("a target that removes every head of a layer, or every layer of a tower, leaves no "
                               "model; min_heads and min_layers must be >= 1")


@dataclass
class PlanResult:
    plan: SlicePlan
    removed: dict = field(default_factory=dict)  # per tower, per layer: heads / neurons removed; layers removed
    params_before: int = 0
    params_after_estimate: int = 0


def _block_params(cfg, i: int) -> int:
    W, hd, H, M = cfg.width, cfg.dim_per_head, cfg.heads_at(i), cfg.mlp_at(i)
    return 4 * W + (3 * H * hd * W + 3 * H * hd) + (H * hd * W + W) + (M * W + M) + (M * W + W)


def build_plan(model, scores: Scores, cfg: PlanConfig, vocab: Optional[list[int]] = None) -> PlanResult:
    total = count_parameters(model)
    budget = int(total * cfg.keep_params)
    saved = 0
    if vocab is not None:
        saved += (model.cfg.text.vocab_size - len(vocab)) * model.cfg.text.width
    cands = []  # (score per parameter, tower, layer, kind, index, params)
    keep_heads: dict = {}
    keep_mlp: dict = {}
    active = [t for t in towers(model) if t in cfg.prune_towers]
    for tower in active:
        tc = getattr(model.cfg, tower)
        hd, W = tc.dim_per_head, tc.width
        head_cost = 4 * hd * W + 3 * hd
        mlp_cost = 2 * W + 1
        for i in range(tc.depth):
            keep_heads[(tower, i)] = set(range(tc.heads_at(i)))
            keep_mlp[(tower, i)] = set(range(tc.mlp_at(i)))
            hs, ms = scores.heads[tower][i].float(), scores.mlp[tower][i].float()
            if scores.per_cost:  # already importance per ms, comparable across layers and kinds
                hp, mp = hs, ms
            else:  # normalise per layer and kind so heads and neurons compete on one scale, then per parameter
                hp = hs / (hs.abs().mean() + 1e-12) / head_cost
                mp = ms / (ms.abs().mean() + 1e-12) / mlp_cost
            if "heads" in cfg.granularity:
                cands += [(float(hp[h]), tower, i, "head", h, head_cost) for h in range(len(hs))]
            if "mlp" in cfg.granularity:
                cands += [(float(mp[m]), tower, i, "mlp", m, mlp_cost) for m in range(len(ms))]
    cands.sort(key=lambda c: c[0])
    for _, tower, i, kind, idx, cost in cands:
        if total - saved <= budget:
            break
        if kind == "head":
            if len(keep_heads[(tower, i)]) <= cfg.min_heads:
                continue
            keep_heads[(tower, i)].discard(idx)
        else:
            tc = getattr(model.cfg, tower)
            if len(keep_mlp[(tower, i)]) <= max(1, int(tc.mlp_at(i) * cfg.min_mlp_frac)):
                continue
            keep_mlp[(tower, i)].discard(idx)
        saved += cost
    widths: dict = {}
    if total - saved > budget and "width" in cfg.granularity:
        saved += _plan_width(model, scores, cfg, active, keep_heads, keep_mlp, vocab, total - saved - budget, widths)
    layers_keep = {t: list(range(getattr(model.cfg, t).depth)) for t in ("vision", "text")}
    if total - saved > budget and "layers" in cfg.granularity:
        norm = (lambda t: 1.0) if scores.per_cost else (lambda t: max(1.0, float(scores.layers[t].abs().mean())))
        order = sorted(((float(scores.layers[t][i]) / norm(t), t, i)
                        for t in active for i in range(getattr(model.cfg, t).depth)), key=lambda c: c[0])
        for _, tower, i in order:
            if total - saved <= budget:
                break
            if len(layers_keep[tower]) <= cfg.min_layers:
                continue
            tc = getattr(model.cfg, tower)
            layers_keep[tower].remove(i)
            hd, W = tc.dim_per_head, tc.width
            kept_cost = (4 * W + len(keep_heads[(tower, i)]) * (4 * hd * W + 3 * hd) + W
                         + len(keep_mlp[(tower, i)]) * (2 * W + 1) + W)
            saved += kept_cost
    if total - saved > budget and not cfg.best_effort:
        raise CompactError(
            f"cannot reach {cfg.keep_params:.0%} of the parameters ({budget:,}) with granularity "
            f"{', '.join(cfg.granularity)} and the per-layer minimums (best: {total - saved:,}); add 'layers', "
            "trim the vocabulary with --langs, or aim higher")
    plan = SlicePlan(vocab=vocab)
    removed: dict = {}
    for tower in ("vision", "text"):
        if tower not in active:
            continue
        tc = getattr(model.cfg, tower)
        tp = TowerPlan(layers=layers_keep[tower], width=widths.get(tower))
        removed[tower] = {"layers_removed": [i for i in range(tc.depth) if i not in layers_keep[tower]],
                          "width_removed": tc.width - len(widths[tower]) if tower in widths else 0,
                          "per_layer": {}}
        for i in layers_keep[tower]:
            kh, km = sorted(keep_heads[(tower, i)]), sorted(keep_mlp[(tower, i)])
            if len(kh) < tc.heads_at(i):
                tp.heads[i] = kh
            if len(km) < tc.mlp_at(i):
                tp.mlp[i] = km
            removed[tower]["per_layer"][str(i)] = {"heads_removed": tc.heads_at(i) - len(kh),
                                                   "mlp_removed": tc.mlp_at(i) - len(km)}
        setattr(plan, tower, tp)
    return PlanResult(plan, removed, total, total - saved)


def _channel_cost(model, tower: str, keep_heads: dict, keep_mlp: dict, vocab: Optional[list[int]]) -> int:
    """Parameters one residual-stream channel of `tower` holds, given the heads and neurons already kept."""
    tc = getattr(model.cfg, tower)
    hd = tc.dim_per_head
    per = 0
    for i in range(tc.depth):
        h, m = len(keep_heads[(tower, i)]), len(keep_mlp[(tower, i)])
        per += 4 + 3 * h * hd + h * hd + 1 + 2 * m + 1  # ln1/ln2, qkv rows' inputs, out rows, fc1 inputs, fc2 rows
    per += model.cfg.embed_dim  # the projection's input column
    if tower == "vision":
        n = (tc.image_size // tc.patch_size) ** 2
        per += 3 * tc.patch_size ** 2 + 1 + 1 + (n + 1) + 4  # patch conv, cls, pos, ln_pre, ln_post
    else:
        per += (len(vocab) if vocab is not None else tc.vocab_size) + tc.context_length + 2
    return per


def _plan_width(model, scores: Scores, cfg: PlanConfig, active: list[str], keep_heads: dict, keep_mlp: dict,
                vocab: Optional[list[int]], needed: int, widths: dict) -> int:
    """Remove the lowest-magnitude residual channels, the same share in every active tower, until `needed`
    parameters are saved or each tower is at `min_width_frac`. Returns the parameters saved."""
    from compact.models.surgery import width_scores

    costs = {t: _channel_cost(model, t, keep_heads, keep_mlp, vocab) for t in active}
    widths_now = {t: getattr(model.cfg, t).width for t in active}
    per_share = sum(costs[t] * widths_now[t] for t in active)  # parameters saved by removing 100% of every width
    share = min(1.0 - cfg.min_width_frac, needed / max(per_share, 1))
    saved = 0
    for t in active:
        k = min(int(round(share * widths_now[t] + 0.5)), int(widths_now[t] * (1 - cfg.min_width_frac)))
        if k <= 0:
            continue
        ws = width_scores(model, t)
        widths[t] = sorted(torch.topk(ws, widths_now[t] - k).indices.tolist())
        saved += k * costs[t]
    return saved
