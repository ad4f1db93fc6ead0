"""Importance metrics for structured pruning, one file each, found through `IMPORTANCE`.

Every metric returns `Scores`: per tower, per layer, one score per attention head and per FFN neuron, and one
per layer. Higher means more important. Scores are comparable within a unit kind and tower, so the planner
ranks them there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from compact.errors import CompactError


@dataclass
class Scores:
    heads: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # tower -> per layer (H,)
    mlp: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # tower -> per layer (M,)
    layers: dict[str, torch.Tensor] = field(default_factory=dict)  # tower -> (L,)
    # True when the scores are already importance per unit of cost (latency-aware): the planner then ranks them
    # as they are, across layers and kinds, instead of normalising per layer and dividing by parameter counts.
    per_cost: bool = False

    def to_json(self) -> dict:
        f = lambda t: [round(float(x), 8) for x in t]  # noqa: E731
        return {"heads": {k: [f(t) for t in v] for k, v in self.heads.items()},
                "mlp": {k: [f(t) for t in v] for k, v in self.mlp.items()},
                "layers": {k: f(v) for k, v in self.layers.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Scores":
        t = torch.tensor
        return cls(heads={k: [t(x) for x in v] for k, v in d["heads"].items()},
                   mlp={k: [t(x) for x in v] for k, v in d["mlp"].items()},
                   layers={k: t(v) for k, v in d["layers"].items()})


@dataclass
class Calibration:
    """What data-driven metrics need: a teacher (the unpruned model, usually) and calibration data."""

    data: Optional[object] = None  # an EvalData (images + captions per language + classification view)
    teacher: Optional[object] = None  # a DualEncoder whose embeddings define the distillation objective
    langs: tuple[str, ...] = ("en",)
    batch_size: int = 64
    cache_dir: Optional[str] = None  # where expensive scores (mope) are cached
    base_metric: str = "taylor"  # latency-aware: the score divided by the measured cost
    latency_batch: int = 8
    latency_table: Optional[dict] = None  # filled by the latency-aware metric, for the report


Metric = Callable[[object, Calibration], Scores]
IMPORTANCE: dict[str, Metric] = {}


def register_importance(name: str) -> Callable[[Metric], Metric]:
    def wrap(fn: Metric) -> Metric:
        IMPORTANCE[name] = fn
        return fn

    return wrap


def compute_importance(name: str, model, calib: Calibration) -> Scores:
    _import_builtin()
    if name not in IMPORTANCE:
        raise CompactError(f"unknown importance metric {name!r}; known: {', '.join(sorted(IMPORTANCE))}")
    return IMPORTANCE[name](model, calib)


def list_importance() -> list[str]:
    _import_builtin()
    return sorted(IMPORTANCE)


def towers(model) -> list[str]:
    """The towers structured pruning can cut: compact ViTs and the text transformer (timm towers are left)."""
    return (["vision"] if model.cfg.vision.type == "vit" else []) + ["text"]


def _import_builtin() -> None:
    from compact.prune.importance import latency, magnitude, mope, taylor  # noqa: F401
