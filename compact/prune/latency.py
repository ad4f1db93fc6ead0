"""Measured latency for pruning: per-tower ONNX Runtime timings of a model, side by side with another one, and
the lookup table the latency-aware importance divides by.

The table holds, per tower and layer, the measured cost of one attention head, one FFN neuron and the whole
layer: the tower is timed as it is and with half of that layer's heads (or neurons, or the layer) removed,
in alternating blocks in one process (`bench.harness.compare_callables`), and the time saved is divided by the units
removed. Timing uses the ONNX graphs `compact export onnx` writes, with the batch and text length frozen to the
timed ones, on ORT CPU.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from compact.models.surgery import SlicePlan, TowerPlan, slice_model

log = logging.getLogger(__name__)

TOWER_NAMES = {"vision": "image", "text": "text"}


@dataclass(frozen=True)
class LatencyConfig:
    runtime: str = "onnxruntime"
    batch: int = 8
    text_len: int = 16  # tokens per text in the timed batches
    threads: Optional[int] = None
    seconds: float = 2.0  # cap per side-by-side comparison

    def __post_init__(self) -> None:
        from compact.errors import CompactError

        if self.runtime != "onnxruntime":
            raise CompactError(f"latency measurement for pruning supports onnxruntime, not {self.runtime!r}")
        if self.batch <= 0 or self.text_len < 2 or self.seconds <= 0:
            raise CompactError("latency batch must be >= 1, text length >= 2 and seconds > 0")


def _feeds(model, tower: str, cfg: LatencyConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if tower == "vision":
        s = model.cfg.vision.image_size
        return {"pixel_values": rng.standard_normal((cfg.batch, 3, s, s)).astype(np.float32)}
    n = min(cfg.text_len, model.cfg.text.context_length)
    ids = rng.integers(3, max(4, model.cfg.text.vocab_size - 1), (cfg.batch, n)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def tower_runner(model, tower: str, cfg: LatencyConfig, folder: Path) -> tuple[Callable[[], object], int]:
    """(zero-argument callable running `tower` on ORT with fixed inputs, ONNX file size in bytes)."""
    from export.targets.onnx import export_onnx, ort_session
    from export.towers import prepare, towers

    name = TOWER_NAMES[tower]
    # Frozen to the timed shapes: the same exporter as `compact export onnx`, without symbolic shapes, which
    # halve the export time (a latency table exports every layer's variants) and do not change what is timed.
    seq = min(cfg.text_len, model.cfg.text.context_length)
    t = next(x for x in towers(prepare(model), fixed_batch=cfg.batch, fixed_seq=seq) if x.name == name)
    path = folder / f"{name}-{id(model)}.onnx"
    export_onnx(t, path)
    sess = ort_session(path, cfg.threads or 0)
    feeds = _feeds(model, tower, cfg)
    return (lambda: sess.run(None, feeds)), path.stat().st_size


def compare_models(a, b, cfg: LatencyConfig = LatencyConfig(), towers=("vision", "text")) -> dict:
    """Per tower: ORT p50 of `a` and `b` timed in alternating blocks, their ratio with a 95% CI, and ONNX file sizes."""
    from bench.harness import TimingConfig, compare_callables

    out = {}
    with tempfile.TemporaryDirectory(prefix="compact-latency-") as tmp:
        for tower in towers:
            ra, sa = tower_runner(a, tower, cfg, Path(tmp))
            rb, sb = tower_runner(b, tower, cfg, Path(tmp))
            r = compare_callables(ra, rb, TimingConfig(warmup=3, min_iters=10, max_seconds=cfg.seconds,
                                                       threads=cfg.threads))
            out[TOWER_NAMES[tower]] = {"before_ms": round(r.a.median_s * 1e3, 4), "after_ms": round(r.b.median_s * 1e3, 4),
                                       "ratio": round(r.ratio_b_over_a, 4),
                                       "ratio_ci95": [round(r.ratio_ci_low, 4), round(r.ratio_ci_high, 4)],
                                       "onnx_bytes_before": sa, "onnx_bytes_after": sb,
                                       "onnx_size_ratio": round(sb / sa, 4), "batch": cfg.batch, "iters": r.a.n}
        return {"runtime": cfg.runtime, "towers": out}


def latency_table(model, cfg: LatencyConfig = LatencyConfig(), towers=("vision", "text")) -> dict:
    """Per tower and layer, the measured ms saved by removing one head, one FFN neuron, or the layer."""
    from bench.harness import TimingConfig, compare_callables

    table: dict = {}
    timing = TimingConfig(warmup=2, min_iters=10, max_seconds=cfg.seconds, threads=cfg.threads)
    with tempfile.TemporaryDirectory(prefix="compact-latency-") as tmp:
        for tower in towers:
            tcfg = getattr(model.cfg, tower)
            full, _ = tower_runner(model, tower, cfg, Path(tmp))
            rows = {"heads": [], "mlp": [], "layers": []}
            base_ms = None
            for i in range(tcfg.depth):
                H, M = tcfg.heads_at(i), tcfg.mlp_at(i)
                variants = {"heads": (TowerPlan(list(range(tcfg.depth)), heads={i: list(range((H + 1) // 2))}),
                                      H - (H + 1) // 2),
                            "mlp": (TowerPlan(list(range(tcfg.depth)), mlp={i: list(range(M // 2))}), M - M // 2)}
                if tcfg.depth > 1:
                    variants["layers"] = (TowerPlan([j for j in range(tcfg.depth) if j != i]), 1)
                for kind in ("heads", "mlp", "layers"):
                    if kind not in variants or variants[kind][1] == 0:
                        rows[kind].append(None)
                        continue
                    plan, removed = variants[kind]
                    smaller = slice_model(copy.deepcopy(model), SlicePlan(**{tower: plan}))
                    run, _ = tower_runner(smaller, tower, cfg, Path(tmp))
                    r = compare_callables(full, run, timing)
                    base_ms = r.a.median_s * 1e3
                    rows[kind].append(max(0.0, (r.a.median_s - r.b.median_s) * 1e3) / removed)
            table[tower] = {**rows, "tower_ms": base_ms}
    return {"runtime": cfg.runtime, "batch": cfg.batch, "per_unit_ms": table}
