"""How a quantized tower is compared with fp32: embedding cosine (mean and worst 1%), SQNR, and the
per-language zero-shot / retrieval deltas on evaluation data."""

from __future__ import annotations

import numpy as np


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (torchao's `compute_error`)."""
    noise = float(np.sum((ref.astype(np.float64) - got) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


def cosine_stats(ref: np.ndarray, got: np.ndarray) -> dict:
    a = ref / np.maximum(np.linalg.norm(ref, axis=-1, keepdims=True), 1e-12)
    b = got / np.maximum(np.linalg.norm(got, axis=-1, keepdims=True), 1e-12)
    cos = (a * b).sum(-1)
    worst = np.sort(cos)[: max(1, int(np.ceil(0.01 * len(cos))))]
    return {"cosine_mean": float(cos.mean()), "cosine_worst1pct": float(worst.mean()), "cosine_min": float(cos.min()),
            "sqnr_db": sqnr_db(ref, got), "n": int(len(cos))}


def eval_deltas(base: dict, cand: dict) -> dict:
    """Per-language deltas in points (candidate - fp32) of zero-shot and R@1 retrieval, plus the worst drop."""
    out: dict = {"zero_shot": {}, "t2i_r1": {}, "i2t_r1": {}}
    drops = []
    for lang in base["langs"]:
        if lang in base.get("zero_shot", {}):
            d = 100 * (cand["zero_shot"][lang] - base["zero_shot"][lang])
            out["zero_shot"][lang] = round(d, 2)
            drops.append(-d)
        r0, r1 = base.get("retrieval", {}).get(lang), cand.get("retrieval", {}).get(lang)
        if r0 and r1:
            for k in ("t2i_r1", "i2t_r1"):
                d = 100 * (r1[k] - r0[k])
                out[k][lang] = round(d, 2)
                drops.append(-d)
    out["max_drop"] = round(max(drops), 2) if drops else 0.0
    return out
