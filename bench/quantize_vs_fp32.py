"""fp32 against the best int8 (or bf16) per runtime and tower, as `compact quantize --auto` chooses it: every
candidate is timed against fp32 in one process (alternating blocks), and the table reports the chosen one's
speed-up with its 95% CI next to its cosine and worst per-language drop. Text is timed on one batch of real
captions per language; the last column is the longest calibration batch alone (a worst case: attention, which
int8 leaves in float, weighs most there).

    python -m bench.quantize_vs_fp32                                  # runs/student on onnxruntime and openvino
    python -m bench.quantize_vs_fp32 --model reference --runtime onnxruntime --eval-data reference:val
    python -m bench.quantize_vs_fp32 --model open_clip:ViT-B-32 --eval-data ''   # random init: speed + cosine only
    python -m bench.quantize_vs_fp32 --threads 1 --threads 2          # one auto run per thread count

Writes runs/bench/quantize_vs_fp32-<model>.json (the full quantize reports) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from bench.report import publish


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/student")
    ap.add_argument("--runtime", action="append", default=None, help="onnxruntime, openvino, torch (repeatable)")
    ap.add_argument("--eval-data", default="reference:val")
    ap.add_argument("--eval-limit", type=int, default=1000, help="images (1000: the whole reference val split)")
    ap.add_argument("--batch", type=int, default=8, help="latency batch")
    ap.add_argument("--opset", type=int, default=None, help="ONNX opset of the fp32 graphs (default: the export target's)")
    ap.add_argument("--no-ort-fusion", action="store_true", help="onnxruntime: plain ONNX graphs, no fused Attention")
    ap.add_argument("--threads", type=int, action="append", default=None,
                    help="runtime threads while timing, fp32 and quantized alike (repeatable: one run each; "
                         "default: the runtime's own choice)")
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)

    from compact.quantize.run import GateError, QuantizeConfig, run_quantize

    runtimes = args.runtime or ["onnxruntime", "openvino"]
    if any(t < 1 for t in args.threads or []):
        ap.error("--threads must be >= 1")
    threads = args.threads or [None]
    reports = {}
    with tempfile.TemporaryDirectory(prefix="compact-qbench-") as tmp:
        for n in threads:
            for rt in runtimes:
                key = rt if n is None else f"{rt}@{n}t"
                cfg = QuantizeConfig(runtime=rt, auto=True, eval_data=args.eval_data or None,
                                     eval_limit=args.eval_limit, latency_batch=args.batch, opset=args.opset,
                                     ort_fusion=not args.no_ort_fusion, threads=n)
                try:
                    reports[key] = run_quantize(args.model, cfg, Path(tmp) / key)
                except GateError:  # the report is written either way; the table says what failed
                    reports[key] = json.loads((Path(tmp) / key / "report.json").read_text())
    lines = ["| runtime | tower | chosen | speed-up vs fp32 (95% CI) | cosine | worst drop (pts) | passes gate "
             "| longest text batch |", "|---|---|---|---|---|---|---|---|"]
    for rt, rep in reports.items():
        for tower, method in rep["choice"].items():
            rows = [r for r in rep["candidates"] if r["tower"] == tower and "latency" in r]
            best = max(rows, key=lambda r: r["latency"]["speedup"]) if method == "fp32" and rows else \
                next((r for r in rows if r["method"] == method), None)
            if best is None:
                continue
            lat = best["latency"]
            lines.append(f"| {rt} | {tower} | {method if method != 'fp32' else 'fp32 (fastest tried: ' + best['method'] + ')'} "
                         f"| {lat['speedup']:.2f}x ({lat['speedup_ci95'][0]:.2f}-{lat['speedup_ci95'][1]:.2f}) "
                         f"| {best['cosine_mean']:.4f} | {best.get('eval', {}).get('max_drop', float('nan')):.1f} "
                         f"| {'yes' if best['passed'] else 'no'} | {_longest(lat)} |")
    name = re.sub(r"[^A-Za-z0-9._]+", "-", args.model).strip("-")
    publish("\n".join(lines), Path(args.out), f"quantize_vs_fp32-{name}", {"reports": reports})


def _longest(lat: dict) -> str:
    w = lat.get("longest_batch")
    return f"{w['speedup']:.2f}x at {w['tokens']} tokens" if w else "-"


if __name__ == "__main__":
    main()
