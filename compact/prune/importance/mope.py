"""MoPE (Module-wise Pruning Error, MoPE-CLIP): remove each candidate unit, measure the drop in the cross-modal
metric (zero-shot plus mean R@1 on the calibration split, averaged over languages), rank by that drop.

This is the expensive metric: one evaluation per head, per FFN chunk and per layer. Scores are cached as JSON
under the calibration cache dir, keyed by a hash of the model weights and the calibration data.
FFN neurons are scored in `chunks` groups per layer (each neuron of a group gets the group's score).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from compact.errors import DataError
from compact.prune.importance import Calibration, Scores, register_importance, towers
from compact.prune.importance._objective import masked

MIN_IMAGES = 72  # two per class of the reference benchmark; fewer makes the metric mostly noise
CHUNKS = 8


def _metric(model, calib: Calibration) -> float:
    from compact.eval.runner import EvalConfig, evaluate

    rep = evaluate(model, calib.data, EvalConfig(langs=calib.langs, batch_size=256))
    zs = [v for v in rep["zero_shot"].values()]
    r1 = [0.5 * (r["i2t_r1"] + r["t2i_r1"]) for r in rep["retrieval"].values()]
    vals = zs + r1
    return float(sum(vals) / len(vals))


def _key(model, calib: Calibration) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().numpy().tobytes())
    h.update(calib.data.name.encode())
    h.update(str(len(calib.data.images)).encode())
    h.update(",".join(calib.langs).encode())
    return h.hexdigest()[:16]


@register_importance("mope")
def mope(model, calib: Calibration) -> Scores:
    if calib.data is None:
        raise DataError("mope needs calibration data; pass --calib DATA")
    n = len(calib.data.images)
    if n < MIN_IMAGES:
        raise DataError(f"the calibration set has {n} images; mope needs at least {MIN_IMAGES} to measure a "
                        "pruning error above noise. Use a bigger --calib split or --importance magnitude")
    cache_file = None
    if calib.cache_dir:
        cache_file = Path(calib.cache_dir) / f"mope-{_key(model, calib)}.json"
        if cache_file.is_file():
            return Scores.from_json(json.loads(cache_file.read_text()))
    model.eval()
    with torch.no_grad():
        base = _metric(model, calib)
        s = Scores()
        for tower in towers(model):
            cfg = getattr(model.cfg, tower)
            heads, mlp, layers = [], [], []
            for i in range(cfg.depth):
                hs = []
                for h in range(cfg.heads_at(i)):
                    with masked(model, tower, i, "head", h):
                        hs.append(base - _metric(model, calib))
                heads.append(torch.tensor(hs))
                M = cfg.mlp_at(i)
                chunk_scores = torch.zeros(M)
                for c in torch.arange(M).chunk(CHUNKS):
                    with masked(model, tower, i, "mlp", c):
                        chunk_scores[c] = base - _metric(model, calib)
                mlp.append(chunk_scores)
                with masked(model, tower, i, "layer"):
                    layers.append(base - _metric(model, calib))
            s.heads[tower], s.mlp[tower], s.layers[tower] = heads, mlp, torch.tensor(layers)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(s.to_json()))
        tmp.replace(cache_file)
    return s
