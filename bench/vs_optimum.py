"""compact against Optimum on the same Hugging Face CLIP: `compact export onnx --optimize` (two towers) against
`optimum-cli export onnx --task zero-shot-image-classification` + `optimum-cli onnxruntime optimize -O3` (one
graph for both towers), timed side by side in one process (`bench.harness.compare_callables`), image + text.

    python -m bench.vs_optimum                          # a ViT-B/32-shaped HF CLIP at random init, batch 1 and 8
    python -m bench.vs_optimum --hf-model path/to/clip  # a local Hugging Face CLIP folder
    python -m bench.vs_optimum --threads 1 --batch 1
    python -m bench.vs_optimum --compact onnx --compact openvino-bf16

compact's side is timed in each deploy form asked for (default: all four), every one against the same Optimum
graph in its own alternating run:
- `onnx`: `compact export onnx --optimize`, fp32, the two towers through `compact_bundle.Bundle`-style sessions;
- `openvino`: `compact export openvino`, fp32 (INFERENCE_PRECISION_HINT=f32);
- `openvino-fixed`: `compact export openvino --fixed-batch B`, fp32, one export per timed batch B (text length
  stays dynamic): the form for an app that always embeds B items; Optimum's graph stays dynamic;
- `openvino-bf16`: the dynamic IR run in bf16 (what `compact quantize --method openvino_bf16` ships; OpenVINO's own
  default on CPUs with AVX512-BF16/AMX). Its parity against Optimum's fp32 output is reported beside the ratio.
The fp32 floor: the model's matmul/conv FLOPs (torch's FlopCounterMode on the same HF model, same token count)
divided by this machine's fp32 GEMM peak, measured in the same run on onnxruntime's own MatMul (the MLAS kernel
both sides end up in; torch's sgemm reached only 221 GFLOP/s here, below what Optimum's graph achieves). It bounds
what any fp32 graph can reach here; `fp32_floor_over_optimum` is the best ratio an fp32 graph could show.

Optimum pins an older transformers than compact uses, so it never enters compact's environment: it is installed
once into its own venv under the compact cache ($COMPACT_CACHE/optimum-venv; the package registry is needed the
first time) and run there through its CLI. Each side runs as it ships: Optimum's graph in a default onnxruntime
session, compact's two graphs through sessions made like `compact_bundle.Bundle` (worker threads not spinning).
Both get the same pixels and the same token ids. The goal in the README is compact <= 0.8x Optimum's latency.
Writes runs/bench/vs_optimum.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.harness import TimingConfig, compare_callables
from bench.profile import device_profile, versions

log = logging.getLogger(__name__)
OPTIMUM_PINS = ["optimum-onnx[onnxruntime]==0.1.0", "transformers>=4.51,<4.58", "torch==2.14.1"]
QUERY = "a photo of a dog on the beach"


def optimum_venv(cache: Path) -> Path:
    """The venv holding Optimum (created and filled on first use); returns its bin folder."""
    venv = cache / "optimum-venv"
    marker = venv / ".installed"
    if marker.is_file() and marker.read_text() == json.dumps(OPTIMUM_PINS):
        return venv / "bin"
    log.warning("installing Optimum into %s (once)", venv)
    subprocess.run(["python3", "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *OPTIMUM_PINS], check=True)
    marker.write_text(json.dumps(OPTIMUM_PINS))
    return venv / "bin"


def make_hf_clip(folder: Path) -> Path:
    """A ViT-B/32-shaped Hugging Face CLIP (transformers' CLIPConfig defaults) at random init, with the real CLIP
    BPE tokenizer and image processor, saved offline."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

    from compact.models.hf_tokenizers import clip_bpe_tokenizer

    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).eval().save_pretrained(folder)
    CLIPTokenizerFast(tokenizer_object=clip_bpe_tokenizer(), bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                      unk_token="<|endoftext|>", pad_token="<|endoftext|>").save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return folder


def optimum_export(bin_dir: Path, model: Path, out: Path) -> Path:
    raw, opt = out / "raw", out / "O3"
    subprocess.run([str(bin_dir / "optimum-cli"), "export", "onnx", "--model", str(model), "--task",
                    "zero-shot-image-classification", str(raw)], check=True)
    subprocess.run([str(bin_dir / "optimum-cli"), "onnxruntime", "optimize", "--onnx_model", str(raw), "-O3", "-o",
                    str(opt)], check=True)
    found = sorted(opt.glob("*.onnx"))
    if not found:
        raise SystemExit(f"optimum wrote no .onnx into {opt}")
    return found[0]


def _default_session(path: Path, threads: int):
    """A session as Optimum's ORTModel makes it: onnxruntime's defaults, threads pinned like compact's side."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


VARIANTS = ("onnx", "openvino", "openvino-fixed", "openvino-bf16")
FIXED = ("openvino-fixed",)  # variants exported once per batch, with that batch frozen


def compact_runners(variant: str, bundle: Path, threads: int) -> dict:
    """tower -> feeds -> embeddings, for one of compact's deploy forms (see the module docstring), loaded through
    the bench runtime registry as `compact bench run` loads them (ORT-optimised graphs, no spin-wait)."""
    from bench.runtimes import RuntimeConfig, get_runtime
    from export.bundle import read_manifest

    rt = get_runtime("onnxruntime" if variant == "onnx" else "openvino")  # openvino, openvino-fixed, -bf16
    cfg = RuntimeConfig(threads=threads, optimized=True, spin=False,
                        precision_hint="bf16" if variant == "openvino-bf16" else "f32")
    manifest = read_manifest(bundle)
    handles = {t: rt.load(bundle, manifest, t, cfg) for t in ("image", "text")}
    return {t: (lambda feeds, h=h: np.array(rt.to_numpy(rt.run(h, rt.prepare(h, feeds))))) for t, h in handles.items()}


def ort_gemm_peak(threads: int, timing: TimingConfig, sizes=(768, 1024, 2048)) -> float:
    """GFLOP/s of onnxruntime's fp32 MatMul (one-node graphs, square n x n), the best of `sizes`."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from bench.harness import time_callable

    best = 0.0
    for n in sizes:
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                                  [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(n)
        feeds = {x: rng.standard_normal((n, n), dtype=np.float32) for x in "ab"}
        g = 2 * n ** 3 / time_callable(lambda: sess.run(None, feeds), timing).median_s / 1e9
        log.warning("onnxruntime MatMul %4d x %4d: %.1f GFLOP/s", n, n, g)
        best = max(best, g)
    return best


def hf_flops(hf_folder: Path, tokens: int) -> dict:
    """Matmul/conv FLOPs per item of each tower (torch FlopCounterMode on the HF model itself)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPModel

    # eager attention: the counter does not see inside the CPU's fused scaled_dot_product_attention kernel
    model = CLIPModel.from_pretrained(str(hf_folder), attn_implementation="eager").eval()
    size = model.config.vision_config.image_size
    out = {}
    with torch.no_grad():
        for tower, fn in (("image", lambda: model.get_image_features(pixel_values=torch.zeros(1, 3, size, size))),
                          ("text", lambda: model.get_text_features(input_ids=torch.ones(1, tokens, dtype=torch.long)))):
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            out[tower] = int(counter.get_total_flops())
    return out


def measure(optimum_onnx: Path, bundles: dict[str, Path | dict[int, Path]], hf_folder: Path, batches: list[int], threads: int,
            timing: TimingConfig, peak_gflops: float | None = None) -> list[dict]:
    from transformers import CLIPConfig, CLIPTokenizerFast

    from compact.quantize.gates import cosine_stats

    tok = CLIPTokenizerFast.from_pretrained(str(hf_folder))
    size = CLIPConfig.from_pretrained(str(hf_folder)).vision_config.image_size
    opt = _default_session(optimum_onnx, threads)
    opt_inputs = {i.name for i in opt.get_inputs()}
    tokens = int(tok([QUERY], return_tensors="np")["input_ids"].shape[1])
    flops = hf_flops(hf_folder, tokens) if peak_gflops else None
    # a variant's bundle is one folder, or {batch: folder} for the fixed-batch exports
    shared = {v: compact_runners(v, p, threads) for v, p in bundles.items() if not isinstance(p, dict)}
    rows = []
    for b in batches:
        runners = {v: shared[v] if v in shared else compact_runners(v, p[b], threads) for v, p in bundles.items()}
        rng = np.random.default_rng(b)
        px = rng.standard_normal((b, 3, size, size), dtype=np.float32)
        enc = tok([QUERY] * b, return_tensors="np", padding=True)
        ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
        feeds = {k: v for k, v in {"pixel_values": px, "input_ids": ids, "attention_mask": mask}.items()
                 if k in opt_inputs}
        names = [o.name for o in opt.get_outputs()]
        out = dict(zip(names, opt.run(None, feeds)))
        img_feeds, txt_feeds = {"pixel_values": px}, {"input_ids": ids, "attention_mask": mask}
        floor = None
        if flops:
            floor = {"gemm_peak_gflops": peak_gflops, "flops_per_item": flops,
                     "floor_ms": (flops["image"] + flops["text"]) * b / (peak_gflops * 1e9) * 1e3}
        for variant, run in runners.items():
            parity = {"image": cosine_stats(out["image_embeds"], run["image"](img_feeds))["cosine_min"],
                      "text": cosine_stats(out["text_embeds"], run["text"](txt_feeds))["cosine_min"]}
            r = compare_callables(lambda: opt.run(None, feeds),
                                  lambda: (run["image"](img_feeds), run["text"](txt_feeds)), timing)
            row = {"batch": b, "compact": variant, "optimum_ms": r.a.median_s * 1e3, "compact_ms": r.b.median_s * 1e3,
                   "compact_over_optimum": r.ratio_b_over_a, "ci95": [r.ratio_ci_low, r.ratio_ci_high],
                   "parity_cosine_min": parity, **r.to_dict()}
            if floor:
                row["fp32_floor"] = {**floor, "fp32_floor_over_optimum": floor["floor_ms"] / row["optimum_ms"]}
            rows.append(row)
            log.warning("batch %d, compact %s: Optimum -O3 %.2f ms, compact %.2f ms: compact/Optimum %.3f (95%% CI "
                        "%.3f-%.3f); cosine vs Optimum image %.6f text %.6f%s", b, variant, r.a.median_s * 1e3,
                        r.b.median_s * 1e3, r.ratio_b_over_a, r.ratio_ci_low, r.ratio_ci_high, parity["image"],
                        parity["text"], f"; fp32 floor {floor['floor_ms']:.2f} ms = "
                        f"{row['fp32_floor']['fp32_floor_over_optimum']:.3f} of Optimum" if floor else "")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-model", type=Path, default=None, help="a local HF CLIP folder (default: random init)")
    ap.add_argument("--batch", action="append", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads, both sides (default: every core)")
    ap.add_argument("--max-seconds", type=float, default=15.0)
    ap.add_argument("--compact", action="append", choices=VARIANTS, default=None,
                    help="compact's deploy form(s) to time against Optimum (default: all)")
    ap.add_argument("--no-floor", action="store_true", help="skip the fp32 GEMM-peak floor")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/vs_optimum.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from compact.utils.cache import cache_dir
    from export import ExportConfig, export_model

    threads = args.threads or len(os.sched_getaffinity(0))
    bin_dir = optimum_venv(cache_dir())
    timing = TimingConfig(warmup=3, min_iters=20, max_iters=2000, max_seconds=args.max_seconds)
    with tempfile.TemporaryDirectory(prefix="compact-vsopt-") as tmp:
        tmp = Path(tmp)
        hf = args.hf_model or make_hf_clip(tmp / "hf-clip")
        onnx_opt = optimum_export(bin_dir, hf, tmp / "optimum")
        variants = args.compact or list(VARIANTS)
        bundles = {}
        for v in variants:
            target = "onnx" if v == "onnx" else "openvino"
            if v in FIXED:
                bundles[v] = {}
                for b in args.batch or [1, 8]:
                    folder = tmp / f"{target}-b{b}"
                    if not folder.exists():
                        export_model(f"hf:{hf}", target, folder, ExportConfig(fixed_batch=b))
                    bundles[v][b] = folder
                continue
            if not (tmp / target).exists():
                export_model(f"hf:{hf}", target, tmp / target, ExportConfig(optimize=target == "onnx"))
            bundles[v] = tmp / target
        peak = None
        if not args.no_floor:
            peak = ort_gemm_peak(threads, TimingConfig(warmup=3, min_iters=10, max_iters=200, max_seconds=3))
        rows = measure(onnx_opt, bundles, hf, args.batch or [1, 8], threads, timing, peak)
    result = {"model": str(args.hf_model or "HF CLIPConfig() defaults (ViT-B/32 shape), random init"),
              "threads": threads, "optimum": OPTIMUM_PINS, "goal": "compact_over_optimum <= 0.8",
              "variants": {"onnx": "fp32, ORT-optimised, two sessions", "openvino": "fp32 IR, hint f32",
                           "openvino-fixed": "fp32 IR exported with --fixed-batch B for each batch B, hint f32",
                           "openvino-bf16": "fp32 IR, INFERENCE_PRECISION_HINT=bf16"},
              "definition": "compact_over_optimum = median(compact image+text) / median(Optimum one graph), "
                            "alternating blocks, paired bootstrap 95% CI",
              "profile": device_profile(versions(["onnxruntime", "openvino"])), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    log.warning("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
