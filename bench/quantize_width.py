"""Where int8 pays: the int8/fp32 speed-up that `compact quantize --auto` reaches, per runtime and tower, against
the student's width and depth. int8 speeds up the GEMMs only; LayerNorm, GELU, softmax attention and each op's
fixed cost stay float, and their share grows as the towers get narrower. This sweep says how wide a student must
be before quantizing it is worth it on the machine it runs on.

    python -m bench.quantize_width                                  # 96x3,128x2,128x3,192x3 from runs/student
    python -m bench.quantize_width --base runs/student --shapes 96x3,256x4 --runtime onnxruntime
    python -m bench.quantize_width --threads 1                      # fp32 and int8 timed at one thread

Each shape is the base model's config (tokenizer, context, patch size, pooling) with both towers at that width and
depth (heads of 32, MLP 4x), at random init: the speed of a dynamic or calibrated int8 graph does not depend on
the weights' values, and there is no quality to keep (no gate; cosine is still reported). Writes
runs/bench/quantize_width.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from bench.report import publish


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """"96x3,128x2" -> [(96, 3), (128, 2)]; one-line error on anything else."""
    from compact.errors import CompactError

    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        w, sep, d = part.lower().partition("x")
        if not sep or not w.isdigit() or not d.isdigit() or int(w) % 32 or int(d) < 1:
            raise CompactError(f"shape {part!r} is not WIDTHxDEPTH with a width that is a multiple of 32, "
                               "e.g. --shapes 96x3,128x2")
        out.append((int(w), int(d)))
    if not out:
        raise CompactError("--shapes is empty; pass e.g. --shapes 96x3,128x2")
    return out


def student_at(base, width: int, depth: int, seed: int = 0):
    """`base` (a CompactCLIP) re-shaped to `width` x `depth` in both towers, random init."""
    import torch

    from compact.models.compact_clip import CompactCLIP

    heads = width // 32
    cfg = base.cfg
    shape = {"width": width, "depth": depth, "heads": heads, "mlp_dim": 4 * width, "head_dim": None}
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, **shape),
                              text=dataclasses.replace(cfg.text, **shape))
    torch.manual_seed(seed)
    return CompactCLIP(cfg, base.tokenizer, base.preprocess_cfg, base.languages).eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="runs/student", help="a compact model folder (its tokenizer and config)")
    ap.add_argument("--shapes", default="96x3,128x2,128x3,192x3")
    ap.add_argument("--runtime", action="append", default=None, help="onnxruntime, openvino (repeatable)")
    ap.add_argument("--batch", type=int, default=8, help="latency batch")
    ap.add_argument("--threads", type=int, default=None, help="runtime threads while timing (default: the runtime's)")
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")

    from compact.models.compact_clip import count_parameters
    from compact.models.folder import load_model
    from compact.quantize.run import QuantizeConfig, run_quantize

    from compact.errors import CompactError

    try:
        shapes = parse_shapes(args.shapes)
    except CompactError as e:
        ap.error(str(e))  # usage plus the one-line reason, exit 2
    base = load_model(Path(args.base))
    runtimes = args.runtime or ["onnxruntime", "openvino"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="compact-qwidth-") as tmp:
        for width, depth in shapes:
            model = student_at(base, width, depth)
            params = count_parameters(model)
            for rt in runtimes:
                cfg = QuantizeConfig(runtime=rt, auto=True, eval_data=None, latency_batch=args.batch,
                                     threads=args.threads)
                rep = run_quantize(model, cfg, Path(tmp) / f"{width}x{depth}-{rt}")
                for tower, method in rep["choice"].items():
                    cands = [c for c in rep["candidates"] if c["tower"] == tower and "latency" in c]
                    best = max(cands, key=lambda c: c["latency"]["speedup"])
                    lat = best["latency"]
                    rows.append({"width": width, "depth": depth, "params": params, "runtime": rt, "tower": tower,
                                 "chosen": method, "best_method": best["method"], "fp32_ms": lat["fp32_ms"],
                                 "int8_ms": lat["quantized_ms"], "speedup": lat["speedup"],
                                 "speedup_ci95": lat["speedup_ci95"], "cosine": best["cosine_mean"],
                                 "longest_batch": lat.get("longest_batch")})
    lines = ["| shape | params | runtime | tower | fastest int8 | fp32 ms | int8 ms | speed-up (95% CI) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["speedup_ci95"]
        lines.append(f"| {r['width']}x{r['depth']} | {r['params'] / 1e6:.2f} M | {r['runtime']} | {r['tower']} "
                     f"| `{r['best_method']}` | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} "
                     f"| {r['speedup']:.2f}x ({lo:.2f}-{hi:.2f}) |")
    publish("\n".join(lines), Path(args.out), "quantize_width", {"rows": rows, "base": args.base, "batch": args.batch,
                                                                   "threads": args.threads})


if __name__ == "__main__":
    main()
