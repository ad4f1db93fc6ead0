"""`compact quantize MODEL -o OUT [--method M ... | --auto] --runtime R`: quantize, gate against fp32, choose.

For each requested tower and method the candidate is compared with the fp32 model on the same runtime:
embedding cosine (mean, worst 1%) and SQNR on held-out samples in every language, per-language zero-shot and
retrieval deltas on evaluation data, and latency timed side by side with fp32 (alternating blocks, one process).
Auto mode keeps, per tower, the fastest candidate that passes the gate; the towers may get different methods.
A result that breaches `max_drop` (points, any language) or `min_cosine` is reported, not written, unless
`force`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from compact.errors import CompactError
from compact.models.dual_encoder import DualEncoder, TokenBatch
from compact.quantize import RUNTIMES, Candidate, Runner, get_method, list_methods
from compact.quantize.calibration import CalibrationSet, calibration_set
from compact.quantize.gates import cosine_stats, eval_deltas
from compact.utils.faults import failpoint
from compact.utils.io import atomic_dir, check_output_dir, locked, raise_if_disk_full

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

# The export target that carries each runtime's fp32 graphs.
BASE_TARGET = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}


@dataclass
class QuantizeConfig:
    runtime: str = "onnxruntime"
    methods: Optional[tuple[str, ...]] = None  # None with auto: every method of the runtime usable here
    auto: bool = False
    towers: tuple[str, ...] = ("image", "text")
    calib: Optional[str] = None  # data source for calibration; None: the reference generator
    calib_images: int = 64
    calib_texts_per_lang: int = 32
    eval_data: Optional[str] = None  # per-language zero-shot / retrieval deltas; None: skip (cosine gate only)
    eval_limit: Optional[int] = 500
    max_drop: float = 1.0  # points, any language, any reported metric
    min_cosine: float = 0.99  # mean embedding cosine against fp32, per tower
    force: bool = False
    latency_batch: int = 8
    threads: Optional[int] = None
    timing_iters: Optional[int] = None  # None: adaptive (CI of the ratio within ±2%, capped)
    timing_seconds: float = 10.0
    overwrite: bool = False
    method_options: dict = field(default_factory=dict)
    # QAT recovery (torchao_qat_int8): distillation steps per tower; None: auto mode skips QAT, an explicitly
    # named QAT method uses its default.
    qat_steps: Optional[int] = None
    qat_batch: int = 128
    qat_lr: float = 1e-4
    qat_data: Optional[str] = None  # training images + captions; None: the reference train split
    name: Optional[str] = None  # display name written into the output bundle's manifest
    opset: Optional[int] = None  # of the fp32 ONNX every ONNX method starts from; None: the export target's default
    # onnxruntime: start from the graph with ORT's fused Attention / LayerNorm / GELU (`compact export onnx
    # --optimize`), fp32 and int8 alike; False: the plain ONNX graph any ONNX runtime reads.
    ort_fusion: bool = True
    # int8 weights with one bit of headroom (onnxruntime reduce_range, NNCF OverflowFix.ENABLE) against the int16
    # saturation of x86 CPUs without VNNI (compact/quantize/saturation.py); auto: on where this CPU saturates.
    reduce_range: str = "auto"

    @property
    def fused_ort(self) -> bool:
        """The fp32 base (and so every candidate) is the ORT-fused graph."""
        return self.runtime == "onnxruntime" and self.ort_fusion

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise CompactError(f"unknown runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        bad = [t for t in self.towers if t not in ("image", "text")]
        if bad or not self.towers:
            raise CompactError(f"towers must be image and/or text, got {list(self.towers)}")
        if not self.auto and not self.methods:
            raise CompactError("name a method (--method) or pass --auto; list them with `compact quantize --list`")
        if self.max_drop < 0 or not 0 < self.min_cosine <= 1:
            raise CompactError("--max-drop must be >= 0 and --min-cosine in (0, 1]")
        if self.latency_batch <= 0 or self.calib_images <= 0 or self.calib_texts_per_lang <= 0:
            raise CompactError("batch and calibration sizes must be positive")
        if not self.timing_seconds > 0:
            raise CompactError(f"--timing-seconds must be positive, got {self.timing_seconds}")
        from compact.quantize.saturation import check_setting

        check_setting(self.reduce_range)
        if self.opset is not None:
            from export.bundle import check_opset

            check_opset(self.opset)
        if self.qat_steps is not None and self.runtime != "torch":
            raise CompactError("--qat-steps is for --runtime torch (torchao QAT); drop it or switch the runtime")
        if (self.qat_steps is not None and self.qat_steps <= 0) or self.qat_batch <= 0 or self.qat_lr <= 0:
            raise CompactError("--qat-steps, the QAT batch and the QAT learning rate must be positive")


class RememberingRunner:
    """A runner that keeps its outputs by the bytes of its inputs. During the candidate search every evaluation
    feeds the tower that is not swapped the same batches as the fp32 evaluation did, so its fp32 outputs are
    computed once instead of once per candidate."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.outputs: dict[str, np.ndarray] = {}

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        h = hashlib.blake2b(digest_size=16)
        for k in sorted(feeds):
            v = np.ascontiguousarray(feeds[k])
            h.update(f"{k}:{v.dtype}:{v.shape}".encode())
            h.update(v.tobytes())
        key = h.hexdigest()
        if key not in self.outputs:
            self.outputs[key] = self.runner(feeds)
        return self.outputs[key]


class RunnerEncoder(DualEncoder):
    """A DualEncoder whose towers are runners (numpy in, numpy out), for per-language evaluation of candidates.
    Tokenizer and preprocessing come from the fp32 model."""

    def __init__(self, base: DualEncoder, runners: dict[str, Runner], max_batch: int = 64):
        super().__init__()
        self.base = base
        self.runners = runners
        self.max_batch = max_batch
        self.embed_dim = base.embed_dim
        self.preprocess_cfg = base.preprocess_cfg
        self.languages = base.languages
        self.variable_length_text = base.variable_length_text

    def tokenize(self, texts) -> TokenBatch:
        return self.base.tokenize(texts)

    def _run(self, tower: str, feeds: dict[str, np.ndarray]) -> torch.Tensor:
        n = len(next(iter(feeds.values())))
        outs = [self.runners[tower]({k: v[s:s + self.max_batch] for k, v in feeds.items()})
                for s in range(0, n, self.max_batch)]
        return torch.from_numpy(np.concatenate(outs).astype(np.float32))

    # A tower without a runner (not quantized: `--towers image`) runs in the fp32 torch model.
    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        if "image" not in self.runners:
            return F.normalize(self.base.encode_image(pixels).float(), dim=-1)
        return self._run("image", {"pixel_values": pixels.float().numpy()})

    @torch.no_grad()
    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if "text" not in self.runners:
            return F.normalize(self.base.encode_text(ids, mask).float(), dim=-1)
        return self._run("text", {"input_ids": ids.numpy().astype(np.int64),
                                  "attention_mask": mask.numpy().astype(np.int64)})

    @property
    def logit_scale(self) -> float:
        return self.base.logit_scale


@dataclass
class QuantContext:
    """What every method sees: the fp32 model, its exported graphs for the runtime, calibration data."""

    cfg: QuantizeConfig
    model: DualEncoder  # the prepared (compact) fp32 model
    towers: dict  # name -> export.towers.Tower (fp32 torch modules + example inputs)
    calib: CalibrationSet
    work: Path
    fp32_bundle: Optional[Path] = None  # the runtime's fp32 export bundle (onnx / openvino / tensorrt)
    fp32_runners: dict[str, Runner] = field(default_factory=dict)
    compiled_fp32: dict[str, Runner] = field(default_factory=dict)  # torch.compile'd fp32 towers, for fair timing
    progress: Optional[Progress] = None
    _held_out: Optional[CalibrationSet] = field(default=None, repr=False)
    int8_weights: dict = field(default_factory=dict)  # saturation.resolve_reduce_range: {"reduce_range", "why"}

    def __post_init__(self) -> None:
        from compact.quantize.saturation import resolve_reduce_range

        self.int8_weights = resolve_reduce_range(self.cfg.reduce_range, runtime=self.cfg.runtime)

    @property
    def reduce_range(self) -> bool:
        """int8 weights keep 7 bits (see compact/quantize/saturation.py)."""
        return bool(self.int8_weights["reduce_range"])

    def fp32_entry(self, tower: str) -> dict:
        """The manifest entry of the fp32 graph every method of this runtime starts from (and that fp32 is
        timed on): onnxruntime with `ort_fusion` takes the fused graph (`export --optimize`) where there is one."""
        from export.bundle import read_manifest

        files = [f for f in read_manifest(self.fp32_bundle)["files"] if f["tower"] == tower]
        fused = [f for f in files if f.get("optimized")] if self.cfg.fused_ort else []
        return fused[0] if fused else next(f for f in files if not f.get("optimized"))

    def fp32_file(self, tower: str) -> Path:
        return self.fp32_bundle / self.fp32_entry(tower)["path"]

    def threads(self) -> int:
        return int(self.cfg.threads or 0)

    def held_out(self) -> CalibrationSet:
        """Inputs from the calibration source that calibration did not see (another draw), for a method that
        chooses between its own variants: scored on the calibration feeds, the variant that fits them best won
        even where it was worse on other inputs (NNCF's SmoothQuant on the reference students)."""
        if self._held_out is None:
            self._held_out = calibration_set(self.model, self.cfg.calib, 32, 16, seed=2)
        return self._held_out


def torch_runner(module: torch.nn.Module) -> Runner:
    @torch.no_grad()
    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()]
        return module(*args).float().numpy()

    return run


def _fp32_runners(ctx: QuantContext) -> dict[str, Runner]:
    rt = ctx.cfg.runtime
    if rt == "torch":
        return {name: torch_runner(t.module) for name, t in ctx.towers.items()}
    if rt == "openvino":
        from export.targets.openvino import compile_ir, compiled_runner

        return {t: compiled_runner(compile_ir(ctx.fp32_file(t), "f32", ctx.threads())) for t in ctx.towers}
    if rt in ("onnxruntime", "tensorrt"):
        from export.targets.onnx import ort_session, session_runner

        return {t: session_runner(ort_session(ctx.fp32_file(t), ctx.threads())) for t in ctx.towers}
    raise CompactError(f"quantization for runtime {rt!r} is applied at export: use `compact export coreml "
                       "--coreml-weights int8|palettize4|palettize6`")


def _repeat_to(feed: dict[str, np.ndarray], b: int) -> dict[str, np.ndarray]:
    reps = int(np.ceil(b / len(next(iter(feed.values())))))
    return {k: np.concatenate([v] * reps)[:b] for k, v in feed.items()}


def _latency_feeds(ctx: QuantContext, tower: str) -> dict[str, list[dict[str, np.ndarray]]]:
    """The timed workloads. Image: one batch. Text: "mix", one batch of real captions per language (scripts
    tokenize to very different lengths: 20 tokens for one, 100+ for another), and "longest", the longest
    calibration batch, a worst case where attention (which int8 does not speed up) weighs most."""
    b = ctx.cfg.latency_batch
    if tower == "image":
        return {"mix": [_repeat_to({"pixel_values": ctx.calib.pixels}, b)]}
    first: dict[str, dict] = {}
    for lang, f in zip(ctx.calib.feed_langs, ctx.calib.text_feeds):
        first.setdefault(lang, f)
    mix = [_repeat_to(f, b) for f in first.values()]
    longest = max(ctx.calib.text_feeds, key=lambda f: f["input_ids"].shape[1])
    return {"mix": mix, "longest": [_repeat_to(longest, b)]}


def _measure_latency(ctx: QuantContext, tower: str, fp32: Runner, cand: Runner) -> dict:
    from bench.harness import TimingConfig, compare_callables

    def timed(feeds: list[dict], seconds: float) -> dict:
        tc = TimingConfig(warmup=3, iters=ctx.cfg.timing_iters, min_iters=10, max_iters=400,
                          max_seconds=seconds, threads=ctx.cfg.threads)
        r = compare_callables(lambda: [fp32(f) for f in feeds], lambda: [cand(f) for f in feeds], tc)
        return {"fp32_ms": round(r.a.median_s * 1e3, 4), "quantized_ms": round(r.b.median_s * 1e3, 4),
                "speedup": round(r.speedup_b_over_a, 4),
                "speedup_ci95": [round(r.speedup_ci_low, 4), round(r.speedup_ci_high, 4)], "iters": r.a.n,
                "converged": r.converged}

    work = _latency_feeds(ctx, tower)
    out = {"batch": ctx.cfg.latency_batch, "workload": "one batch" if tower == "image" else
           f"one batch per language ({len(work['mix'])}), per call",
           **timed(work["mix"], ctx.cfg.timing_seconds)}
    if "longest" in work:
        out["longest_batch"] = {"tokens": int(work["longest"][0]["input_ids"].shape[1]),
                                **timed(work["longest"], ctx.cfg.timing_seconds / 2)}
    return out


def _trt_engines_here() -> bool:
    from export.trt_engine import engine_support

    return engine_support()[0]


def _trt_engine(ctx: QuantContext, onnx_path: Path, tower: str, precision: str) -> Runner:
    from export.targets.tensorrt import read_trt_metadata
    from export.trt_engine import TrtRunner, build_engine

    profiles = read_trt_metadata(ctx.fp32_file(tower))["profiles"]  # quantizers may drop the metadata
    engine = ctx.work / f"{Path(onnx_path).stem}.{precision}.engine"
    build_engine(Path(onnx_path), engine, profiles, precision=precision,
                 timing_cache=ctx.work / "timing.cache")
    return TrtRunner(engine)


def _trt_fp32_engine(ctx: QuantContext, tower: str) -> Runner:
    key = f"trt:{tower}"
    if key not in ctx.compiled_fp32:
        ctx.compiled_fp32[key] = _trt_engine(ctx, ctx.fp32_file(tower), tower, "fp32")
    return ctx.compiled_fp32[key]


def _compiled_fp32(ctx: QuantContext, tower: str) -> Runner:
    if tower not in ctx.compiled_fp32:
        ctx.compiled_fp32[tower] = torch_runner(torch.compile(ctx.towers[tower].module, dynamic=False))
    return ctx.compiled_fp32[tower]


def _gate_outputs(ctx: QuantContext, gate: CalibrationSet, tower: str, run: Runner) -> np.ndarray:
    return np.concatenate([run(f) for f in gate.feeds(tower)])


@locked("out")
def run_quantize(model, cfg: QuantizeConfig, out: Path, progress: Optional[Progress] = None) -> dict:
    """Quantize `model` (a spec or DualEncoder) for `cfg.runtime`; writes OUT and returns report.json's dict."""
    from compact.eval.runner import EvalConfig, evaluate
    from export.bundle import ExportConfig, export_model, load_for_export
    from export.towers import prepare, towers

    out = Path(out)
    check_output_dir(out, cfg.overwrite)
    names = list(cfg.methods) if cfg.methods else list_methods(cfg.runtime)
    methods = [get_method(n) for n in names]
    wrong = [m.name for m in methods if m.runtime != cfg.runtime]
    if wrong:
        raise CompactError(f"method(s) {wrong} run on another runtime than {cfg.runtime}; pick from "
                           f"{list_methods(cfg.runtime)}")
    unknown = sorted(set(cfg.method_options) - {k for m in methods for k in m.options})
    if unknown:
        known = {m.name: sorted(m.options) for m in methods if m.options}
        raise CompactError(f"method option(s) {unknown} are read by none of {names}; "
                           f"options they read: {known or 'none'}")
    skipped = {}
    usable = []
    for m in methods:
        why = m.missing()
        if why and not cfg.auto:
            m.require()
        if not why and cfg.auto and not cfg.methods and not m.opted_in(cfg):
            why = f"auto mode tries it only when asked: pass {m.needs_opt_in}"
        if why:
            skipped[m.name] = why
        else:
            usable.append(m)
    if not usable:
        raise CompactError(f"no quantization method for {cfg.runtime} is usable here: {skipped}")
    for m in usable:
        m.check_options(cfg.method_options)  # a bad value is a one-line error before any work

    source = str(model) if isinstance(model, (str, Path)) else type(model).__name__
    original = load_for_export(source) if isinstance(model, (str, Path)) else model.eval()
    prep = prepare(original)
    base = prep.model
    tws = {t.name: t for t in towers(prep) if t.name in cfg.towers}
    work = Path(tempfile.mkdtemp(prefix=".quantize-", dir=out.parent if out.parent.exists() else None))
    try:
        if progress:
            progress("calibration", 0, 1)
        calib = calibration_set(base, cfg.calib, cfg.calib_images, cfg.calib_texts_per_lang)
        gate = calibration_set(base, None, 32, 16, seed=1)  # held out: other scenes than calibration
        ctx = QuantContext(cfg, base, tws, calib, work, progress=progress)
        if cfg.runtime in BASE_TARGET:
            ctx.fp32_bundle = work / "fp32"
            # One graph per tower, the one the bundle keeps: ORT-fused for the towers being quantized (with
            # ort_fusion), plain for the rest.
            graphs = {t: "optimized" if cfg.fused_ort and t in cfg.towers else "plain" for t in ("image", "text")}
            export_model(base, BASE_TARGET[cfg.runtime], ctx.fp32_bundle, source=source,
                         cfg=ExportConfig(opset=cfg.opset, optimize=cfg.fused_ort,
                                          tower_graphs=graphs if cfg.runtime == "onnxruntime" else {}))
        ctx.fp32_runners = _fp32_runners(ctx)
        if progress:
            progress("calibration", 1, 1)

        eval_data = None
        base_eval = None
        if cfg.eval_data:
            from compact.data.sources import open_eval_data
            from compact.data.sources.reference import open_reference, reference_base

            eval_data = (open_reference(cfg.eval_data, cfg.eval_limit) if reference_base(cfg.eval_data)
                         else open_eval_data(cfg.eval_data))
        fp32_for_eval = {t: RememberingRunner(r) for t, r in ctx.fp32_runners.items()}
        if eval_data is not None:
            base_eval = evaluate(RunnerEncoder(base, fp32_for_eval), eval_data, EvalConfig())

        def eval_with(swap: dict[str, Runner]) -> dict:
            """Per-language deltas against fp32 with the towers in `swap` replaced by candidate runners."""
            runners = dict(fp32_for_eval, **swap)
            return eval_deltas(base_eval, evaluate(RunnerEncoder(base, runners), eval_data, EvalConfig()))

        # Without TensorRT here the engines cannot be timed: TensorRT candidates are then ranked by SQNR.
        by_sqnr = cfg.runtime == "tensorrt" and not _trt_engines_here()
        refs = {t: _gate_outputs(ctx, gate, t, ctx.fp32_runners[t]) for t in tws}
        candidates: list[dict] = []
        kept: dict[str, Candidate] = {}
        total = len(usable) * len(tws)
        done = 0
        for m in usable:
            for tower in tws:
                if progress:
                    progress("candidates", done, total)
                row = {"method": m.name, "tower": tower, "runtime": cfg.runtime}
                try:
                    cand = m.quantize(ctx, tower)
                    got = _gate_outputs(ctx, gate, tower, cand.runner)
                except Exception as e:  # noqa: BLE001
                    raise_if_disk_full(e)  # a full disk is not a failed candidate
                    # One method failing (its quantizer, or the runtime refusing its graph, e.g. ORT's QLinearConv
                    # on per-channel activation zero points) is a failed candidate, not the end of the search.
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    if not isinstance(e, CompactError):
                        msg = f"{type(e).__name__}: {msg[:300]}"
                        log.warning("%s on the %s tower failed: %s", m.name, tower, msg)
                    row.update(passed=False, error=msg)
                    candidates.append(row)
                    done += 1
                    continue
                row.update(precision=cand.precision, **cosine_stats(refs[tower], got), details=cand.details)
                if base_eval is not None:
                    row["eval"] = eval_with({tower: cand.runner})
                if cand.timed_runner is not None:  # compiled candidate: time it against compiled fp32
                    row["latency"] = _measure_latency(ctx, tower, _compiled_fp32(ctx, tower), cand.timed_runner)
                    row["latency"]["compiled"] = True
                elif cfg.runtime == "tensorrt" and not by_sqnr:
                    row["latency"] = _measure_latency(ctx, tower, _trt_fp32_engine(ctx, tower),
                                                      _trt_engine(ctx, cand.files[0], tower, "int8"))
                    row["latency"]["runtime"] = "tensorrt"
                else:
                    row["latency"] = _measure_latency(ctx, tower, ctx.fp32_runners[tower], cand.runner)
                    if cfg.runtime == "tensorrt":  # a QDQ graph on ORT CPU says nothing about TensorRT speed
                        row["latency"]["runtime"] = "onnxruntime-cpu (not TensorRT: it does not run here)"
                fails = _gate_failures(row, cfg)
                row["passed"] = not fails
                if fails:
                    row["failed"] = fails
                candidates.append(row)
                key = f"{m.name}:{tower}"
                kept[key] = cand
                done += 1
                failpoint("quantize.candidate")
        if progress:
            progress("candidates", total, total)

        def eval_choice(combo: dict[str, str]) -> dict:
            return eval_with({t: kept[f"{m}:{t}"].runner for t, m in combo.items() if m != "fp32"})

        choice = _choose(candidates, cfg, by_sqnr)
        final = {"choice": choice}
        if base_eval is not None and any(v != "fp32" for v in choice.values()):
            final["eval"] = eval_choice(choice)
            if cfg.auto and final["eval"]["max_drop"] > cfg.max_drop and len(
                    [t for t, m in choice.items() if m != "fp32"]) > 1:
                # Each tower passed alone but together they drop too much: try the other passing combinations,
                # best first, and keep the first that passes together (fp32 for both if none does).
                both = {"choice": dict(choice), "max_drop": final["eval"]["max_drop"]}
                combo, ev, tried = _joint_fallback(candidates, choice, cfg, eval_choice, by_sqnr)
                choice = combo
                final = {"choice": choice, "combined_fallback": {"both": both, "tried": tried}}
                if ev is not None:
                    final["eval"] = ev
        breaches = [f"{r['method']} on {r['tower']}: {', '.join(r['failed'])}" for r in candidates
                    if r.get("failed") and choice.get(r["tower"]) == r["method"]]
        if final.get("eval") and final["eval"]["max_drop"] > cfg.max_drop:
            breaches.append(f"both towers together drop {final['eval']['max_drop']} points (> {cfg.max_drop})")
        report = {"runtime": cfg.runtime, "source": source, "config": _jsonable(asdict(cfg)),
                  "calibration": {"images": int(len(calib.pixels)), "langs": calib.langs,
                                  "texts_per_lang": cfg.calib_texts_per_lang, "source": cfg.calib or "reference generator"},
                  "int8_weights": ctx.int8_weights, "fp32_eval": base_eval, "candidates": candidates,
                  "skipped": skipped, **final,
                  "gate": {"max_drop": cfg.max_drop, "min_cosine": cfg.min_cosine, "breaches": breaches},
                  "written": not breaches or cfg.force}
        if breaches and not cfg.force:
            with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
                (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
            raise GateError(f"the quantized model breaches the gate ({'; '.join(breaches)}); only {out}/report.json "
                            "was written. Pass --force to write it anyway, or --max-drop/--min-cosine to change the gate")
        with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
            _write_output(ctx, choice, kept, candidates, tmp, source)
            (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


class GateError(CompactError):
    """The quantized result breaches --max-drop / --min-cosine (report written, model not)."""


def _joint_fallback(candidates: list[dict], first: dict, cfg, joint_eval, by_sqnr: bool, max_tries: int = 8):
    """Combinations of each tower's passing candidates (and fp32), best first by the product of speed-ups (or
    by how many towers are quantized, then SQNR, when speed cannot be measured); returns the first whose joint
    per-language drop passes, its eval and what was tried. Falls back to fp32 everywhere."""
    import itertools

    options = {}
    for tower in first:
        rows = [r for r in candidates if r["tower"] == tower and r.get("passed") and "latency" in r]
        if not by_sqnr:
            rows = [r for r in rows if r["latency"]["speedup"] > 1.0]
        options[tower] = [(r["method"], r["sqnr_db"] if by_sqnr else r["latency"]["speedup"]) for r in rows]
        options[tower].append(("fp32", 0.0 if by_sqnr else 1.0))

    def score(combo):
        if by_sqnr:
            return (sum(m != "fp32" for m, _ in combo), sum(v for _, v in combo))
        out = 1.0
        for _, v in combo:
            out *= v
        return (out,)

    towers = list(first)
    combos = sorted(itertools.product(*(options[t] for t in towers)), key=score, reverse=True)
    tried = []
    for combo in combos:
        choice = {t: m for t, (m, _) in zip(towers, combo)}
        if choice == first:
            continue  # measured already: it is why we are here
        if all(m == "fp32" for m in choice.values()) or len(tried) >= max_tries:
            break
        ev = joint_eval(choice)
        tried.append({"choice": choice, "max_drop": ev["max_drop"]})
        if ev["max_drop"] <= cfg.max_drop:
            return choice, ev, tried
    return {t: "fp32" for t in towers}, None, tried


def _gate_failures(row: dict, cfg: QuantizeConfig) -> list[str]:
    fails = []
    if row["cosine_mean"] < cfg.min_cosine:
        fails.append(f"cosine {row['cosine_mean']:.4f} < {cfg.min_cosine}")
    drop = row.get("eval", {}).get("max_drop")
    if drop is not None and drop > cfg.max_drop:
        fails.append(f"drops {drop} points (> {cfg.max_drop})")
    return fails


def _choose(candidates: list[dict], cfg: QuantizeConfig, by_sqnr: bool = False) -> dict[str, str]:
    """Per tower: the fastest passing candidate (auto), or the most accurate one (SQNR) when speed cannot be
    measured on the runtime (`by_sqnr`), else fp32. With explicit methods and no auto, the first named method is
    used for every tower even if it fails the gate (then the gate decides what is written)."""
    choice = {}
    for tower in cfg.towers:
        rows = [r for r in candidates if r["tower"] == tower and "latency" in r]
        if cfg.auto and by_sqnr:
            ok = [r for r in rows if r["passed"]]
            choice[tower] = max(ok, key=lambda r: r["sqnr_db"])["method"] if ok else "fp32"
        elif cfg.auto:
            ok = [r for r in rows if r["passed"] and r["latency"]["speedup"] > 1.0]
            choice[tower] = max(ok, key=lambda r: r["latency"]["speedup"])["method"] if ok else "fp32"
        else:
            choice[tower] = rows[0]["method"] if rows else "fp32"
    return choice


def _write_output(ctx: QuantContext, choice: dict, kept: dict, candidates: list[dict], tmp: Path, source: str) -> None:
    """Runtime graphs: an export bundle (manifest + tokenizer) whose files are the chosen graphs per tower, so
    bench, apps and `compact eval` use it directly. torch: a compact model folder plus quantization.json."""
    if ctx.cfg.runtime == "torch":
        from compact.models.folder import save_model
        from compact.quantize.torch_load import QUANT_FILE

        model = ctx.model
        retrained = {t: kept[f"{m}:{t}"].tower_state for t, m in choice.items()
                     if m != "fp32" and kept[f"{m}:{t}"].tower_state is not None}
        if retrained:  # QAT changed these towers' weights: save those, quantization.json re-applies int8
            import copy

            model = copy.deepcopy(ctx.model)
            for t, state in retrained.items():
                (model.visual if t == "image" else model.text).load_state_dict(state)
        save_model(model, tmp / "model")
        (tmp / "model" / QUANT_FILE).write_text(json.dumps(
            {t: {"method": m, **kept[f"{m}:{t}"].details.get("config", {})} for t, m in choice.items() if m != "fp32"},
            indent=2))
        return
    bundle = tmp / "bundle"
    shutil.copytree(ctx.fp32_bundle, bundle)
    from export.bundle import MANIFEST, read_manifest

    manifest = read_manifest(bundle)
    files = []
    towers = list(dict.fromkeys(f["tower"] for f in manifest["files"]))
    for tower in towers:
        # One graph per tower: the one the methods started from. A fused (ORT-only) base loses its "optimized"
        # flag here, since it is now the tower's only graph (readers pick non-optimized entries by default).
        base = ctx.fp32_entry(tower) if tower in ctx.towers else \
            next(f for f in manifest["files"] if f["tower"] == tower and not f.get("optimized"))
        for other in manifest["files"]:
            if other["tower"] == tower and other["path"] != base["path"]:
                (bundle / other["path"]).unlink(missing_ok=True)
        f = {k: v for k, v in base.items() if k != "optimized"}
        if base.get("optimized"):
            f["runtime_only"] = "onnxruntime"
            f["runtime_only_reason"] = "ORT's com.microsoft fused ops: Attention, QAttention, MultiHeadAttention"
        method = choice.get(tower, "fp32")
        if method == "fp32":
            files.append(f)
            continue
        cand = kept[f"{method}:{tower}"]
        row = next(r for r in candidates if r["method"] == method and r["tower"] == tower)
        main = cand.files[0]
        names = []
        for p in cand.files:
            shutil.copy2(p, bundle / p.name)
            names.append(p.name)
        entry = dict(f, path=main.name, precision=cand.precision, quantization=method,
                     size_bytes=sum((bundle / n).stat().st_size for n in names),
                     parity={"verified": True, "runtime": ctx.cfg.runtime, "against": "fp32",
                             **{k: row[k] for k in ("cosine_mean", "cosine_worst1pct", "cosine_min", "sqnr_db")}},
                     **{k: v for k, v in cand.details.items() if k in ("inference_precision", "reduce_range")})
        entry.pop("companions", None)
        if len(names) > 1:
            entry["companions"] = names[1:]
        for old in [f["path"], *f.get("companions", [])]:
            if old not in names:
                (bundle / old).unlink(missing_ok=True)
        files.append(entry)
    manifest["files"] = files
    manifest["quantization"] = {t: m for t, m in choice.items()}
    if ctx.cfg.runtime == "tensorrt":  # build_engine.sh and the profiles must name the quantized graphs
        from export.bundle import ExportConfig
        from export.targets import Artifact, get_target

        manifest.update(get_target("tensorrt").finalize(
            bundle, [Artifact(f["path"], f["tower"], f.get("precision", "fp32")) for f in files], ExportConfig()))
    if ctx.cfg.name:
        manifest["name"] = ctx.cfg.name
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))
