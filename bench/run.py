"""`compact bench run`: every (bundle, runtime) pair that can run here, both towers, at several batch sizes.

Per tower: cold load time, first-inference time, p50/p90/p99/mean/std at each batch size (see
`bench.harness`), throughput, peak RSS, the artifact's size on disk. Per bundle: the tokenizer's own time per
text and two end-to-end timings: "embed one photo" (preprocess a decoded image + image tower) and "embed one
query" (tokenize + text tower). Pairs that cannot run (runtime not installed, runtime does not read the
bundle's format) are listed in `skipped` with the reason.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence


from bench.harness import TimingConfig, time_callable
from bench.inputs import InputConfig, fixed_batch, load_tokenizer, preprocess, sample_images, sample_texts, tower_feeds
from bench.profile import device_profile, device_tag, versions
from bench.runtimes import BenchRuntime, RuntimeConfig, get_runtime, list_runtimes
from compact.errors import CompactError
from compact.utils.faults import failpoint
from compact.utils.memory import batch_must_fit
from export.bundle import read_manifest

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
TOWERS = ("image", "text")


@dataclass
class BenchConfig:
    runtimes: tuple[str, ...] = ("onnxruntime",)
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    towers: tuple[str, ...] = TOWERS
    timing: TimingConfig = field(default_factory=TimingConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    threads: Optional[int] = None  # None: every core this process may use
    end_to_end: bool = True  # also time "embed one photo" / "embed one query" and the tokenizer
    keep_samples: bool = True  # per-call samples in the JSON (the distribution plot needs them)
    model: Any = None  # torch runtimes: a DualEncoder or spec instead of the manifest's source model
    # onnxruntime: worker threads spin-wait between calls (ORT's default: the steady state of one busy session).
    # False times what compact_bundle, the apps and `compact eval` ship (spinning off; bench/photo_then_query.py).
    spin: bool = True

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(int(b) <= 0 for b in self.batch_sizes):
            raise CompactError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if self.threads is not None and self.threads <= 0:
            raise CompactError(f"thread count must be positive, got {self.threads}")
        bad = [t for t in self.towers if t not in TOWERS]
        if bad:
            raise CompactError(f"unknown tower {bad[0]!r}; choose from {', '.join(TOWERS)}")
        for name in self.runtimes:
            get_runtime(name)  # unknown names fail here, listing the known ones

    def resolved_threads(self) -> int:
        return self.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


@dataclass
class BenchResult:
    results: list[dict]  # one per (bundle, runtime): see `bench_pair`
    skipped: list[dict]  # {"bundle", "runtime", "reason"}
    profile: dict


def model_name(manifest: dict, bundle: Path) -> str:
    if manifest.get("name"):  # set by `compact export --name` / `compact run`
        return re.sub(r"[^A-Za-z0-9._]+", "-", str(manifest["name"])).strip("-").lower() or "model"
    spec = str((manifest.get("source") or {}).get("model") or bundle.name)
    name = spec.rstrip("/").split(":")[-1].split("/")[-1] or Path(bundle).name
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-").lower() or "model"


def result_name(r: dict) -> str:
    """timm-style: what was measured on what, e.g. latency-student-onnxruntime-fp32-amd-epyc.json."""
    return f"latency-{r['model']}-{r['runtime_label']}-{r['precision']}-{r['device_tag']}.json"


def runtime_label(rt: BenchRuntime, manifest: dict) -> str:
    native = not rt.targets or manifest.get("target") == rt.targets[0]
    return rt.name if native else f"{rt.name}-{manifest.get('target')}"


def plan(bundles: Sequence[Path], cfg: BenchConfig) -> tuple[list[tuple[Path, dict, BenchRuntime]], list[dict]]:
    """The (bundle, manifest, runtime) pairs to run and the skipped ones with their reasons. Runtimes that run
    the source model (torch) run once per distinct source model, not once per bundle."""
    pairs, skipped, seen = [], [], set()
    manifests = [(Path(b), read_manifest(Path(b))) for b in bundles]
    for name in cfg.runtimes:
        rt = get_runtime(name)
        why = rt.missing()
        for bundle, manifest in manifests:
            reason = why or rt.accepts(manifest)
            if reason is None and not rt.targets:
                key = (rt.name, (manifest.get("source") or {}).get("sha256") or str(bundle))
                reason = "same source model already benchmarked from another bundle" if key in seen else None
                seen.add(key)
            if reason:
                skipped.append({"bundle": str(bundle), "runtime": name, "reason": reason})
            else:
                pairs.append((bundle, manifest, rt))
    return pairs, skipped


def bench_bundles(bundles: Sequence[Path], cfg: BenchConfig = BenchConfig(),
                  progress: Optional[Progress] = None) -> BenchResult:
    if not bundles:
        raise CompactError("no export bundle given; pass one or more folders written by `compact export`")
    pairs, skipped = plan(bundles, cfg)
    results = []
    for i, (bundle, manifest, rt) in enumerate(pairs):
        stage = f"{model_name(manifest, bundle)} / {rt.name}"
        results.append(bench_pair(bundle, manifest, rt, cfg, progress, stage))
        failpoint("bench.result")
        if progress:
            progress("bench", i + 1, len(pairs))
    prof = device_profile(versions(sorted({rt.name for _, _, rt in pairs})))
    for r in results:
        r["profile"] = prof
    return BenchResult(results, skipped, prof)


def bench_pair(bundle: Path, manifest: dict, rt: BenchRuntime, cfg: BenchConfig,
               progress: Optional[Progress] = None, stage: str = "") -> dict:
    """One runtime on one bundle: every tower at every batch size, plus the end-to-end timings."""
    threads = cfg.resolved_threads()
    rcfg = RuntimeConfig(threads=threads, model=cfg.model, spin=cfg.spin)
    tokenizer = load_tokenizer(bundle, manifest) if "text" in cfg.towers else None
    towers = {}
    precisions = {}
    for tower in cfg.towers:
        if not any(f["tower"] == tower for f in manifest["files"]):
            continue
        entry = rt.entry(manifest, tower)
        precisions[tower] = entry.get("precision", "fp32")
        towers[tower] = _bench_tower(bundle, manifest, rt, tower, entry, rcfg, cfg, tokenizer, progress, stage)
        towers[tower]["precision"] = precisions[tower]
    # One name for the pair (report rows, file names); towers quantized differently read e.g. "image-int8.text-fp32"
    # (it said the last tower's precision, so a bundle with an int8 image tower was listed as fp32).
    kinds = set(precisions.values())
    precision = kinds.pop() if len(kinds) == 1 else ".".join(f"{t}-{p}" for t, p in precisions.items())
    out = {
        "kind": "compact-bench", "model": model_name(manifest, bundle), "bundle": str(bundle),
        "target": manifest.get("target"), "source": manifest.get("source"), "runtime": rt.name,
        "runtime_label": runtime_label(rt, manifest), "runtime_version": rt.version(), "precision": precision,
        "device": rt.device, "device_tag": device_tag(rt.device), "threads": threads,
        **({"spin": cfg.spin} if rt.name.startswith("onnxruntime") else {}),
        "inputs": cfg.inputs.source, "timing": cfg.timing.to_dict(), "towers": towers,
    }
    if tokenizer is not None and cfg.end_to_end:
        out["tokenizer"] = _tokenizer_time(tokenizer, cfg.timing)
    return out


def _rss() -> tuple[float, float]:
    """(current, peak since the last reset) resident memory in MB; the peak is Linux's VmHWM."""
    import psutil

    cur = psutil.Process().memory_info().rss / 2 ** 20
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            hwm = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        hwm = cur
    return cur, max(cur, hwm)


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def _bench_tower(bundle, manifest, rt, tower, entry, rcfg, cfg, tokenizer, progress, stage) -> dict:
    gc.collect()
    _reset_peak()
    rss0, _ = _rss()
    t0 = time.perf_counter()
    handle = rt.load(bundle, manifest, tower, rcfg)
    load_s = time.perf_counter() - t0
    rss_loaded, _ = _rss()
    fixed = fixed_batch(manifest, tower)
    hi = _max_batch(entry)
    batches, first_ms, skipped = [], None, []
    todo = [b for b in cfg.batch_sizes if (fixed is None or b == fixed) and b <= hi]
    skipped = [{"batch": b, "reason": f"the graph's batch axis is fixed to {fixed}" if fixed else f"above the "
                f"graph's max batch {hi}"} for b in cfg.batch_sizes if b not in todo]
    try:
        for k, b in enumerate(todo):
            with batch_must_fit(b, f"timing the {tower} tower on {rt.name}",
                                f"leave {b} out of --batch (batch {{smaller}} or less fits more easily)"):
                feeds = tower_feeds(bundle, manifest, tower, b, cfg.inputs, tokenizer)
                x = rt.prepare(handle, feeds)

                def call(x=x, h=handle):
                    y = rt.run(h, x)
                    rt.synchronize(h)
                    return y

                if first_ms is None:
                    t0 = time.perf_counter()
                    call()
                    first_ms = (time.perf_counter() - t0) * 1e3
                stats = time_callable(call, cfg.timing)
            row = {"batch": b, **({"seq": int(feeds["input_ids"].shape[1])} if tower == "text" else {}),
                   **stats.to_dict(samples=cfg.keep_samples), "throughput_per_s": round(b / stats.median_s, 3)}
            batches.append(row)
            if progress:
                progress(f"{stage} {tower}", k + 1, len(todo))
        e2e = _end_to_end(bundle, manifest, rt, handle, tower, tokenizer, cfg) if cfg.end_to_end else None
    finally:
        rt.close(handle)
    _, peak = _rss()
    size, kind = _size(rt, entry, handle)
    del handle
    return {"file": entry["path"] if rt.targets else f"torch:{(manifest.get('source') or {}).get('model')}",
            "size_bytes": size, "size_kind": kind, "load_s": round(load_s, 4),
            "first_inference_ms": None if first_ms is None else round(first_ms, 3),
            "rss_before_mb": round(rss0, 1), "rss_loaded_mb": round(rss_loaded, 1), "peak_rss_mb": round(peak, 1),
            "batches": batches, "skipped_batches": skipped, **({"end_to_end": e2e} if e2e else {})}


def _max_batch(entry: dict) -> int:
    axis = entry["inputs"][0].get("dynamic_axes", {}).get("0")
    return int(axis["max"]) if axis else 1 << 30


def _size(rt: BenchRuntime, entry: dict, handle) -> tuple[int, str]:
    if rt.targets:
        return int(entry.get("size_bytes", 0)), "file"
    module = getattr(handle, "module", None)
    params = getattr(getattr(module, "_orig_mod", module), "parameters", None)
    return (sum(p.numel() * p.element_size() for p in params()) if params else 0), "parameters"


def _end_to_end(bundle, manifest, rt, handle, tower, tokenizer, cfg) -> Optional[dict]:
    """One decoded photo -> embedding, or one query string -> embedding, as an app calls it."""
    if tower == "image":
        image = sample_images(1)[0]

        def photo():
            return rt.to_numpy(rt.run(handle, rt.prepare(handle, {"pixel_values": preprocess(manifest, [image])})))

        return {"name": "embed one photo", **time_callable(photo, cfg.timing).to_dict(samples=False)}
    if tokenizer is None:
        return None
    text = sample_texts()[0]

    def query():
        ids, mask = tokenizer([text])
        return rt.to_numpy(rt.run(handle, rt.prepare(handle, {"input_ids": ids, "attention_mask": mask})))

    return {"name": "embed one query", **time_callable(query, cfg.timing).to_dict(samples=False)}


def _tokenizer_time(tokenizer, timing: TimingConfig) -> dict:
    texts = sample_texts()
    stats = time_callable(lambda: tokenizer(texts), timing)
    return {"kind": tokenizer.kind, "texts_per_call": len(texts), "ms_per_text": round(stats.median_s * 1e3 / len(texts), 6),
            "p50_ms_per_call": round(stats.median_s * 1e3, 6)}


def available_runtimes() -> dict[str, Optional[str]]:
    """Every registered runtime and why it cannot run here (None: it can)."""
    return {n: get_runtime(n).missing() for n in list_runtimes()}
