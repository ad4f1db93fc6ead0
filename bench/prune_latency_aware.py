"""Latency-aware pruning against plain taylor at the same parameter budget: both pruned models' towers timed
in alternating blocks on ORT CPU in one process, plus their parameters and (optionally) per-language zero-shot.

    python -m bench.prune_latency_aware                       # the reference teacher, keep 0.1 with --langs en
    python -m bench.prune_latency_aware --model runs/student --keep 0.7 --no-langs

Writes runs/bench/prune_latency_aware.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.report import publish


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="reference")
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--langs", default="en")
    ap.add_argument("--no-langs", action="store_true")
    ap.add_argument("--calib", default="reference:val")
    ap.add_argument("--eval-data", default="reference:test")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)

    from compact.models.folder import load_model
    from compact.prune.latency import LatencyConfig, compare_models
    from compact.prune.prune import PruneConfig, run_prune

    langs = None if args.no_langs else tuple(args.langs.split(","))
    results, models = {}, {}
    with tempfile.TemporaryDirectory(prefix="compact-plat-") as tmp:
        for metric in ("taylor", "latency"):
            cfg = PruneConfig(importance=metric, base_metric="taylor", keep_params=args.keep, langs=langs,
                              calib=args.calib, calib_limit=300, eval_data=args.eval_data or None,
                              measure_latency=False, latency_batch=args.batch)
            rep = run_prune(args.model, cfg, Path(tmp) / metric)
            models[metric] = load_model(Path(tmp) / metric)
            results[metric] = {"parameters": rep["parameters"]["after"], "removed": rep["removed"],
                               "zero_shot": (rep.get("eval") or {}).get("after_pruning", {}).get("zero_shot")}
        lat = compare_models(models["taylor"], models["latency"], LatencyConfig(batch=args.batch, seconds=5.0))
    lines = ["| tower | taylor p50 ms | latency-aware p50 ms | latency-aware / taylor (95% CI) |", "|---|---|---|---|"]
    for tower, v in lat["towers"].items():
        lines.append(f"| {tower} | {v['before_ms']:.3f} | {v['after_ms']:.3f} | {v['ratio']:.3f} "
                     f"({v['ratio_ci95'][0]:.3f}-{v['ratio_ci95'][1]:.3f}) |")
    for m, r in results.items():
        zs = r["zero_shot"] or {}
        lines.append(f"\n{m}: {r['parameters']['total']:,} parameters; zero-shot after pruning (no recovery): "
                     + ", ".join(f"{k} {100 * v:.1f}" for k, v in zs.items()))
    publish("\n".join(lines), Path(args.out), "prune_latency_aware", {"latency": lat, "results": results})


if __name__ == "__main__":
    main()
