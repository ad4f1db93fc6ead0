"""Embed one photo, then one query, through the shipped bundle API (`compact_bundle.Bundle`), with onnxruntime's
worker threads spinning between calls (its default) and sleeping (compact's default), side by side in one
process (`bench.harness.compare_callables`, alternating settled blocks).

    python -m bench.photo_then_query                              # open_clip:ViT-B-32 (random init), --optimize
    python -m bench.photo_then_query --model runs/student --threads 2
    python -m bench.photo_then_query --bundle bundles/student-onnx

Rows, each spin on (A) against spin off (B):
  image           the image session alone, one preprocessed photo
  text            the text session alone, one tokenized query
  image+text      the two sessions back to back (what an app does)
  photo->query    end to end: `embed_pixels(photo)` then `embed_texts([query])` (resize, tokenize included)
and, per setting, image+text against image alone + text alone (1.0: no cost for switching sessions).
Writes runs/bench/photo_then_query.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.harness import TimingConfig, compare_callables
from bench.profile import device_profile, versions

log = logging.getLogger(__name__)
QUERY = "a photo of a dog on the beach"


def bundle_class(folder: Path):
    """The bundle's own compact_bundle.py (what apps import), not compact's source copy."""
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("compact_bundle_bench", folder / "compact_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Bundle


def measure(folder: Path, threads: int, timing: TimingConfig) -> dict:
    Bundle = bundle_class(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    optimized = any(f.get("optimized") for f in manifest["files"])
    on = Bundle(str(folder), threads=threads, optimized=optimized, spin=True)
    off = Bundle(str(folder), threads=threads, optimized=optimized, spin=False)
    photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    px = on.preprocess([photo])
    feeds = on.tokenize([QUERY])

    def work(b):
        return {"image": lambda: b.run_image(px), "text": lambda: b.run_text(feeds),
                "image+text": lambda: (b.run_image(px), b.run_text(feeds)),
                "photo->query": lambda: (b.embed_pixels(photo), b.embed_texts([QUERY]))}

    w_on, w_off = work(on), work(off)
    rows = {}
    for name in w_on:
        r = compare_callables(w_on[name], w_off[name], timing)
        rows[name] = {"spin_ms": r.a.median_s * 1e3, "no_spin_ms": r.b.median_s * 1e3, **r.to_dict()}
        log.warning("%-13s spin %8.3f ms   no spin %8.3f ms   no-spin speed-up %.2fx (95%% CI %.2f-%.2f)", name,
                    r.a.median_s * 1e3, r.b.median_s * 1e3, r.speedup_b_over_a, r.speedup_ci_low, r.speedup_ci_high)
    switch = {}
    for key, label in (("spin_ms", "spin"), ("no_spin_ms", "no spin")):
        alone = rows["image"][key] + rows["text"][key]
        switch[label] = rows["image+text"][key] / alone
        log.warning("%-8s image+text %.3f ms = %.2fx image alone + text alone (%.3f ms)", label,
                    rows["image+text"][key], switch[label], alone)
    return {"optimized_graphs": optimized, "rows": rows, "back_to_back_over_alone": switch}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", default="open_clip:ViT-B-32", help="exported to ONNX (--optimize) first")
    src.add_argument("--bundle", type=Path, default=None, help="an ONNX bundle (compact export onnx)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: every core)")
    ap.add_argument("--max-seconds", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/photo_then_query.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads is not None and args.threads <= 0:
        ap.error("--threads must be positive")
    threads = args.threads or len(os.sched_getaffinity(0))
    timing = TimingConfig(warmup=3, min_iters=30, max_iters=3000, max_seconds=args.max_seconds)
    with tempfile.TemporaryDirectory(prefix="compact-ptq-") as tmp:
        folder = args.bundle
        if folder is None:
            from export import ExportConfig, export_model

            folder = Path(tmp) / "bundle"
            log.warning("exporting %s to ONNX (--optimize)", args.model)
            export_model(args.model, "onnx", folder, ExportConfig(optimize=True))
        result = measure(Path(folder), threads, timing)
    result = {"model": str(args.bundle or args.model), "threads": threads, "query": QUERY, "photo": "480x640 RGB",
              "definition": "speedup_b_over_a = spin p50 / no-spin p50 (B = spinning off), paired bootstrap 95% CI",
              "profile": device_profile(versions(["onnxruntime"])), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    log.warning("wrote %s", args.out)


if __name__ == "__main__":
    main()
