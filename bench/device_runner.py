"""Benchmark a compact bundle on a device with only a runtime + numpy + the standard library.

Copied by `compact bench bundle` into a self-contained folder beside the model files and the inputs (.npy).
Writes a result JSON that `compact bench report` merges with results from other machines:

    python bench_runner.py                                   # onnxruntime, every core
    python bench_runner.py --runtime openvino --threads 4 -o result.json

This file must not import compact, torch or anything beyond numpy, the runtime and the standard library.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
Z95 = 1.959963984540054


def load_onnxruntime(path, threads, entry=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return lambda feeds: sess.run(None, {k: v for k, v in feeds.items() if k in names})[0], ort.__version__


def load_openvino(path, threads, entry=None):
    import openvino as ov

    core = ov.Core()
    # the precision the bundle ships with (`compact quantize` records bf16 for openvino_bf16 / nncf_openvino_bf16);
    # f32 otherwise, since this CPU plugin would pick bf16 on its own where the CPU has it
    cfg = {"INFERENCE_PRECISION_HINT": (entry or {}).get("inference_precision", "f32")}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(path), "CPU", cfg)
    req = compiled.create_infer_request()
    names = {p.get_any_name() for p in compiled.inputs}

    def run(feeds):
        req.infer({k: v for k, v in feeds.items() if k in names})
        return req.get_output_tensor(0).data

    return run, ov.get_version()


RUNTIMES = {"onnxruntime": (load_onnxruntime, (".onnx",)), "openvino": (load_openvino, (".xml", ".onnx"))}


def median_ci(x):
    x = np.sort(np.asarray(x, dtype=np.float64))
    half = Z95 * math.sqrt(len(x)) / 2
    return float(x[max(int(math.floor(len(x) / 2 - half)), 0)]), float(x[min(int(math.ceil(len(x) / 2 + half)), len(x) - 1)])


def time_call(fn, args):
    for _ in range(args.warmup):
        fn()
    samples, start, check = [], time.perf_counter(), args.min_iters
    limit, reason, converged = (args.iters, "fixed", True) if args.iters else (args.max_iters, "max_iters", False)
    while len(samples) < limit:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if not args.iters and len(samples) >= check:
            lo, hi = median_ci(samples)
            if (hi - lo) / 2 <= args.target_ci * float(np.median(samples)):
                reason, converged = "ci", True
                break
            if time.perf_counter() - start > args.max_seconds:
                reason = "max_seconds"
                break
            check = len(samples) + max(5, len(samples) // 8)
    x = np.asarray(samples) * 1e3
    lo, hi = median_ci(x)
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    return {"n": len(x), "converged": converged, "stop_reason": reason, "warmup": args.warmup,
            "threads": args.threads or None, "total_s": round(time.perf_counter() - start, 4),
            "ci_rel": round((hi - lo) / 2 / p50, 5), "median_ms": p50, "mean_ms": float(x.mean()),
            "std_ms": float(x.std(ddof=1)) if len(x) > 1 else 0.0, "min_ms": float(x.min()), "p50_ms": p50,
            "p90_ms": p90, "p99_ms": p99, "ci_low_ms": lo, "ci_high_ms": hi, "samples_ms": [round(v, 6) for v in x]}


def peak_rss_mb():
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2 ** 20 if sys.platform == "darwin" else 1024), 1)
    except Exception:  # no resource module (Windows)
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.machine()
        except Exception:  # sysctl missing or refused
            pass
    return platform.processor() or platform.machine()


def slug(text):
    text = re.sub(r"\((R|TM|tm|r)\)", "", text)
    text = re.sub(r"@.*$", "", text)
    text = re.sub(r"\b(CPU|Processor|\d+-Core|Gen)\b", "", text, flags=re.I)
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", choices=sorted(RUNTIMES), default="onnxruntime")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    ap.add_argument("--iters", type=int, default=0, help="fixed iteration count (0: until the median's CI is ±2%%)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-iters", type=int, default=20)
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--target-ci", type=float, default=0.02)
    ap.add_argument("-o", "--out", default=None, help="result JSON (default: the timm-style name, here)")
    args = ap.parse_args(argv)
    if args.iters < 0 or args.threads < 0 or args.warmup < 0 or args.min_iters <= 0 or args.max_iters <= 0:
        ap.error("counts must be positive")
    with open(os.path.join(HERE, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(HERE, "inputs", "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    load, exts = RUNTIMES[args.runtime]
    towers, version, precision = {}, None, "fp32"
    for tower in sorted({e["tower"] for e in index}):
        entry = next(f for f in manifest["files"] if f["tower"] == tower and f["path"].endswith(exts))
        precision = entry.get("precision", precision)
        t0 = time.perf_counter()
        run, version = load(os.path.join(HERE, entry["path"]), args.threads, entry)
        load_s = time.perf_counter() - t0
        batches, first_ms = [], None
        for item in (e for e in index if e["tower"] == tower):
            feeds = {k: np.load(os.path.join(HERE, "inputs", v)) for k, v in item["feeds"].items()}
            if first_ms is None:
                t0 = time.perf_counter()
                run(feeds)
                first_ms = (time.perf_counter() - t0) * 1e3
            stats = time_call(lambda: run(feeds), args)
            seq = {"seq": int(feeds["input_ids"].shape[1])} if "input_ids" in feeds else {}
            batches.append({"batch": item["batch"], **seq, **stats,
                            "throughput_per_s": round(item["batch"] / stats["p50_ms"] * 1e3, 3)})
        towers[tower] = {"file": entry["path"], "size_bytes": entry.get("size_bytes", 0), "size_kind": "file",
                         "load_s": round(load_s, 4), "first_inference_ms": round(first_ms, 3),
                         "peak_rss_mb": peak_rss_mb(), "batches": batches, "skipped_batches": []}
    tag = slug(cpu_model())
    model = index[0].get("model", "model")
    label = args.runtime if args.runtime != "openvino" or manifest["target"] == "openvino" else "openvino-onnx"
    result = {"kind": "compact-bench", "model": model, "bundle": HERE, "target": manifest.get("target"),
              "source": manifest.get("source"), "runtime": args.runtime, "runtime_label": label,
              "runtime_version": version, "precision": precision, "device": "cpu", "device_tag": tag,
              "threads": args.threads or None, "inputs": index[0].get("inputs", "real"),
              "timing": {k: getattr(args, k) for k in ("warmup", "iters", "min_iters", "max_iters", "target_ci",
                                                       "max_seconds")},
              "towers": towers, "on_device_runner": True,
              "profile": {"cpu": cpu_model(), "cores_logical": os.cpu_count(), "os": f"{platform.system()} "
                          f"{platform.release()}", "machine": platform.machine(), "python": platform.python_version(),
                          "runtimes": {args.runtime: version}, "device_tag": tag}}
    out = args.out or os.path.join(HERE, f"latency-{model}-{label}-{precision}-{tag}.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    for tower, t in towers.items():
        for b in t["batches"]:
            sys.stdout.write(f"{tower:5s} batch {b['batch']:3d}: p50 {b['p50_ms']:.3f} ms  p90 {b['p90_ms']:.3f} ms  "
                             f"({b['n']} calls)\n")
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
