"""How close the student gets to this machine's matrix-multiply peak: achieved GFLOP/s at batch 32 (analytic
FLOPs from `compact.models.flops` / measured p50) against a GEMM peak measured in the same run, same threads.

    python -m bench.roofline                          # runs/student, onnxruntime + torch, batch 32
    python -m bench.roofline --model runs/student-trained --runtime onnxruntime --batch 32 --max-seconds 5

The GEMM peak is the best of fp32 square matmuls (torch, 512..2048) timed by the same harness. The ratio says
how much of the machine the towers use; small models sit far below it (memory- and overhead-bound).
Writes runs/bench/roofline.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

from bench.compare import side_callable
from bench.harness import TimingConfig, time_callable
from bench.inputs import InputConfig, load_tokenizer, tower_feeds
from bench.profile import device_profile, versions

log = logging.getLogger(__name__)


def gemm_peak(threads: int, timing: TimingConfig, sizes=(512, 1024, 2048)) -> dict:
    import torch

    torch.set_num_threads(threads)
    best = {"gflops": 0.0}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        s = time_callable(lambda: torch.mm(a, b), timing)
        g = 2 * n ** 3 / s.median_s / 1e9
        log.warning("GEMM %4d x %4d: %.1f GFLOP/s", n, n, g)
        if g > best["gflops"]:
            best = {"gflops": g, "n": n, "p50_ms": s.median_s * 1e3}
    return best


def measure(model_spec: str, runtimes: list[str], batch: int, threads: int, timing: TimingConfig) -> dict:
    from compact.models.flops import tower_flops
    from compact.models.teachers import load_teacher
    from export import ExportConfig, export_model
    from export.bundle import read_manifest

    model = load_teacher(model_spec)
    peak = gemm_peak(threads, timing)
    rows = []
    with tempfile.TemporaryDirectory(prefix="compact-roofline-") as tmp:
        bundle = Path(tmp) / "onnx"
        export_model(model_spec, "onnx", bundle, ExportConfig())
        manifest = read_manifest(bundle)
        seq = tower_feeds(bundle, manifest, "text", batch, InputConfig(), load_tokenizer(bundle, manifest))
        flops = tower_flops(model, text_tokens=int(seq["input_ids"].shape[1]))
        for rt in runtimes:
            for tower in ("image", "text"):
                fn, close, _ = side_callable(bundle, rt, tower, batch, InputConfig(), threads)
                try:
                    s = time_callable(fn, timing)
                finally:
                    close()
                g = flops[tower] * batch / s.median_s / 1e9
                rows.append({"runtime": rt, "tower": tower, "batch": batch, "p50_ms": s.median_s * 1e3,
                             "flops_per_item": flops[tower], "gflops": g, "fraction_of_gemm_peak": g / peak["gflops"]})
                log.warning("%-12s %-5s b%d: %.3f ms, %.1f GFLOP/s = %.1f%% of the GEMM peak", rt, tower, batch,
                            s.median_s * 1e3, g, 100 * g / peak["gflops"])
    return {"model": model_spec, "batch": batch, "threads": threads, "text_tokens": flops["text_tokens"],
            "gemm_peak": peak, "rows": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/student")
    ap.add_argument("--runtime", action="append", choices=["onnxruntime", "openvino", "torch"], default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/roofline.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    threads = args.threads or len(os.sched_getaffinity(0))
    runtimes = args.runtime or ["onnxruntime", "torch"]
    timing = TimingConfig(warmup=3, min_iters=20, max_iters=1000, max_seconds=args.max_seconds, threads=threads)
    result = measure(args.model, runtimes, args.batch, threads, timing)
    result["profile"] = device_profile(versions(runtimes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    log.warning("wrote %s", args.out)


if __name__ == "__main__":
    main()
