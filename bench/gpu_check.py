"""GPU paths, checked on a CUDA machine: torch CUDA (fp32 and bf16 autocast) and onnxruntime's CUDA execution
provider, each against the CPU for parity and side by side for latency (`bench.harness`), on real architectures
at random init (latency and parity do not depend on the weights).

    python -m bench.gpu_check -o runs/bench/gpu_check.json
    python -m bench.gpu_check --model open_clip:ViT-B-32 --recipe recipes/distill-cpu-fast.yaml

Models: open_clip ViT-B-32 (the teacher shape), and each --recipe's student built offline
(`random_init_student`). Each is exported to ONNX on the CPU (parity-checked there as always), then:
  torch-cuda    the exported towers as torch modules on the GPU, fp32 and bf16 autocast: cosine vs CPU torch
  ort-cuda      the exported ONNX graphs on CUDAExecutionProvider: cosine vs CPUExecutionProvider
Latency: GPU p50 per tower at batch 1 and 64; ort-cuda is timed against ort-cpu in alternating blocks.
Exits 2 (a clear line, no traceback) where torch sees no GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    from compact.quantize.gates import cosine_stats

    return cosine_stats(a, b)["cosine_min"]


def check_model(name: str, model, tmp: Path, batches: list[int], seconds: float) -> dict:
    import torch

    from bench.harness import TimingConfig, compare_callables, time_callable
    from export import ExportConfig, export_model
    from export.towers import prepare, towers

    out = {"model": name}
    bundle = tmp / name.replace(":", "_").replace("/", "_")
    manifest = export_model(model, "onnx", bundle, ExportConfig(compare_shapes=False))
    out["cpu_parity"] = {f["tower"]: f["parity"]["cosine_min"] for f in manifest["files"]}
    prep = prepare(model)
    tw = {t.name: t for t in towers(prep)}
    timing = TimingConfig(warmup=5, min_iters=30, max_seconds=seconds)
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels, where they are installed that way
    out["ort_providers"] = ort.get_available_providers()
    for tower_name, tower in tw.items():
        size = prep.model.preprocess_cfg.image_size
        for b in batches:
            g = torch.Generator().manual_seed(b)
            if tower_name == "image":
                feeds = {"pixel_values": torch.randn(b, 3, size, size, generator=g)}
            else:
                seq = min(16, prep.context_length)
                feeds = {"input_ids": torch.randint(3, 200, (b, seq), generator=g),
                         "attention_mask": torch.ones(b, seq, dtype=torch.long)}
            args = [feeds[n] for n in tower.input_names]
            mod = tower.module.eval()
            with torch.inference_mode():
                ref = mod(*args).numpy()
                gpu = mod.cuda()
                gargs = [a.cuda() for a in args]
                fp32 = gpu(*gargs).float().cpu().numpy()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    bf16 = gpu(*gargs).float().cpu().numpy()

                def run_cuda(bf: bool):
                    def call():
                        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf):
                            gpu(*gargs)
                        torch.cuda.synchronize()
                    return call

                t32 = time_callable(run_cuda(False), timing)
                t16 = time_callable(run_cuda(True), timing)
            mod.cpu()
            row = {"tower": tower_name, "batch": b,
                   "torch_cuda_fp32": {"cosine_min": _cos(ref, fp32), "p50_ms": t32.median_s * 1e3},
                   "torch_cuda_bf16": {"cosine_min": _cos(ref, bf16), "p50_ms": t16.median_s * 1e3}}
            path = str(bundle / f"{tower_name}.onnx")
            np_feeds = {k: v.numpy() for k, v in feeds.items()}
            cpu = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            if "CUDAExecutionProvider" in ort.get_available_providers():
                cuda = ort.InferenceSession(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
                got = cuda.run(None, np_feeds)[0]
                want = cpu.run(None, np_feeds)[0]
                r = compare_callables(lambda: cpu.run(None, np_feeds), lambda: cuda.run(None, np_feeds), timing)
                row["ort_cuda"] = {"providers": cuda.get_providers(), "cosine_min_vs_cpu_ep": _cos(want, got),
                                   "max_abs_err": float(np.abs(want - got).max()), "p50_ms": r.b.median_s * 1e3,
                                   "cpu_p50_ms": r.a.median_s * 1e3, "speedup_vs_cpu": r.speedup_b_over_a,
                                   "speedup_ci95": [r.speedup_ci_low, r.speedup_ci_high]}
            else:
                row["ort_cuda"] = {"skipped": "this onnxruntime build has no CUDAExecutionProvider"}
            log.warning("%s %s b%d: %s", name, tower_name, b, json.dumps(row, default=float)[:400])
            out.setdefault("rows", []).append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model specs (default: open_clip:ViT-B-32)")
    ap.add_argument("--recipe", action="append", type=Path, default=None,
                    help="distill recipes whose student to build at random init (repeatable)")
    ap.add_argument("--batch", action="append", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=2.0)
    ap.add_argument("-o", "--out", type=Path, default=Path("runs/bench/gpu_check.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import torch

    if not torch.cuda.is_available():
        print("bench.gpu_check needs a CUDA GPU: torch.cuda.is_available() is False here", file=sys.stderr)
        return 2
    from compact.distill.recipe import load_recipe
    from compact.distill.student import random_init_student
    from compact.models.teachers import load_teacher

    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "models": []}
    try:
        import onnxruntime as ort

        result["onnxruntime"] = ort.__version__
    except ImportError:
        result["onnxruntime"] = None
    batches = args.batch or [1, 64]
    with tempfile.TemporaryDirectory(prefix="compact-gpu-") as tmp:
        for spec in args.model or ["open_clip:ViT-B-32"]:
            result["models"].append(check_model(spec, load_teacher(spec), Path(tmp), batches, args.max_seconds))
        for recipe in args.recipe or []:
            student, _ = random_init_student(load_recipe(recipe), "open_clip:ViT-B-32")
            result["models"].append(check_model(recipe.stem, student, Path(tmp), batches, args.max_seconds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    log.warning("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
