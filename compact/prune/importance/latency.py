"""Latency-aware importance: a base metric's score divided by the unit's measured latency cost on the target
runtime (ORT CPU), from a lookup table timed on this machine (`compact.prune.latency.latency_table`).

The base scores are first made comparable across layers and kinds (each divided by the mean of its tower and
kind), then divided by the unit's cost in ms, so the planner can rank heads, FFN neurons and layers of every
depth on one scale: importance per millisecond. Units that cost much time for little importance go first, so
pruning serves a device, not a parameter count. Costs are floored at 10% of their kind's mean, so a unit timed
as free (noise) is not ranked as priceless.
"""

from __future__ import annotations

import torch

from compact.prune.importance import Calibration, Scores, compute_importance, register_importance, towers


@register_importance("latency")
def latency_aware(model, calib: Calibration) -> Scores:
    from compact.prune.latency import LatencyConfig, latency_table

    base = compute_importance(calib.base_metric, model, calib)
    lut = latency_table(model, LatencyConfig(batch=calib.latency_batch), tuple(towers(model)))
    calib.latency_table = lut
    s = Scores(per_cost=True)
    for tower in towers(model):
        costs = lut["per_unit_ms"][tower]
        hmean = torch.cat([h.float() for h in base.heads[tower]]).abs().mean() + 1e-12
        mmean = torch.cat([m.float() for m in base.mlp[tower]]).abs().mean() + 1e-12
        lmean = base.layers[tower].float().abs().mean() + 1e-12
        s.heads[tower] = [h.float() / hmean / _cost(costs["heads"], i) for i, h in enumerate(base.heads[tower])]
        s.mlp[tower] = [m.float() / mmean / _cost(costs["mlp"], i) for i, m in enumerate(base.mlp[tower])]
        s.layers[tower] = torch.stack([base.layers[tower][i].float() / lmean / _cost(costs["layers"], i)
                                       for i in range(len(base.layers[tower]))])
    return s


def _cost(values: list, i: int) -> float:
    known = [v for v in values if v is not None]
    mean = sum(known) / len(known) if known else 1.0
    v = values[i] if values[i] is not None else mean
    return max(v, 0.1 * mean, 1e-9)
