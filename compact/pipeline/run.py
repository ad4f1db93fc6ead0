"""`compact run [RECIPE]`: teacher -> distilled student -> pruned -> quantized -> exported -> benchmarked, with
the per-language quality of every model in one report.

Each stage writes into `OUT/<stage>/` and finishes by writing `OUT/<stage>/stage.json` with a content hash of
its config and of the stages it reads. On a re-run a stage whose hash is unchanged is skipped, so re-running
after a crash (or a kill) resumes at the first unfinished stage; the distill stage also resumes from its own
checkpoint inside the stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

from compact.errors import CompactError
from compact.pipeline.recipe import PipelineRecipe
from compact.utils.io import atomic_write_text, locked, recover_interrupted

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
PIPELINE_FILE = "pipeline.json"
FORMAT_VERSION = 1

# progress(stage, done, total, info)
Progress = Callable[[str, int, int, Optional[dict]], None]


def reference_stage_config(r: PipelineRecipe) -> dict:
    """The reference stage's key: the specs, and for each built-in reference they name, what its build is made of.
    A cache rebuilt for another generator or config then re-runs the stage (and those after it) instead of a
    finished run folder silently keeping results of the old teacher."""
    from compact.reference.build import build_identity

    return {"teacher": r.teacher, "data": r.data, "seed": r.seed,
            "builds": {size: build_identity(size, r.seed) for size in reference_sizes(r)}}


def reference_sizes(r: PipelineRecipe) -> list[str]:
    """The built-in reference sizes ("small", "quick", ...) the recipe's teacher and data name."""
    from compact.data.sources.reference import NAMES

    return sorted({NAMES[s.split(":")[0]] for s in (r.teacher, r.data) if s.split(":")[0] in NAMES})


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Pipeline:
    def __init__(self, recipe: PipelineRecipe, out: Path, progress: Optional[Progress] = None,
                 on_stage: Optional[Callable[[str, str], None]] = None):
        self.r = recipe
        self.out = Path(out)
        self.progress = progress
        self.on_stage = on_stage  # (stage, "run" | "skip" | "done") for the CLI's stage-by-stage lines
        self.hashes: dict[str, str] = {}
        self.summary: dict[str, dict] = {}
        self.skipped: dict[str, str] = {}  # what this machine could not do, and why
        self.ran: list[str] = []  # stages run (not skipped) by this invocation, for report.json

    # ---- the stage machinery ------------------------------------------------------------------------------
    def _stage(self, name: str, config: dict, deps: tuple[str, ...], fn: Callable[[Path], dict]) -> dict:
        h = _hash({"v": FORMAT_VERSION, "stage": name, "config": config, "deps": [self.hashes[d] for d in deps]})
        folder = self.out / name
        marker = folder / STAGE_FILE
        if marker.is_file():
            try:
                done = json.loads(marker.read_text())
            except json.JSONDecodeError:
                done = {}
            if done.get("hash") == h:
                self.hashes[name] = h
                self.summary[name] = done.get("summary", {})
                self.skipped.update(done.get("skipped", {}))
                if self.on_stage:
                    self.on_stage(name, "skip")
                return self.summary[name]
        if self.on_stage:
            self.on_stage(name, "run")
        self.ran.append(name)
        t0 = time.perf_counter()
        before = dict(self.skipped)
        summary = fn(folder)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        folder.mkdir(parents=True, exist_ok=True)
        new_skips = {k: v for k, v in self.skipped.items() if k not in before}
        atomic_write_text(marker, json.dumps({"hash": h, "summary": summary, "skipped": new_skips}, indent=2))
        self.hashes[name] = h
        self.summary[name] = summary
        if self.on_stage:
            self.on_stage(name, "done")
        return summary

    def _fresh(self, folder: Path) -> None:
        """A stage that did not finish leaves a partial folder; it is rebuilt from scratch (except distill,
        which resumes from its checkpoint)."""
        if folder.exists():
            shutil.rmtree(folder)

    def _bars(self, stage: str):
        if not self.progress:
            return None
        return lambda name, done, total, info=None: self.progress(f"{stage}: {name}", done, total, info)

    # ---- the stages ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        r = self.r
        self.out.mkdir(parents=True, exist_ok=True)
        machine = machine_facts()
        self._stage("reference", reference_stage_config(r), (), self._reference)
        self._stage("distill", {"distill": asdict(r.distill), "teacher": r.teacher, "data": r.data,
                                "langs": r.langs, "seed": r.seed}, ("reference",), self._distill)
        student = self.out / "distill"
        if r.prune.enabled:
            self._stage("prune", {"prune": asdict(r.prune), "eval": r.eval_data()}, ("distill",), self._prune)
            student = self.out / "prune"
        self.student = student
        dep = "prune" if r.prune.enabled else "distill"
        if r.quantize.enabled:
            self._stage("quantize", {"quantize": asdict(r.quantize), "eval": r.eval_data()}, (dep,), self._quantize)
        self._stage("export", {"export": asdict(r.export)}, (dep,), self._export)
        q = ("quantize",) if r.quantize.enabled else ()
        self._stage("eval", {"eval": asdict(r.eval), "data": r.eval_data()}, (dep, *q), self._eval)
        self._stage("bench", {"bench": asdict(r.bench)}, ("export", "eval"), self._bench)
        self._stage("report", {}, ("bench", "eval"), self._report)
        seconds = {k: v.get("seconds") for k, v in self.summary.items()}
        # Stage timings for scripts (bench/make_run.py); a stage skipped on this run keeps the seconds it took.
        atomic_write_text(self.out / "report.json", json.dumps({
            "format": "compact-run-report", "version": FORMAT_VERSION,
            "stages": {k: {"seconds": v, "ran_this_time": k in self.ran} for k, v in seconds.items()},
            "total_seconds": round(sum(v or 0 for v in seconds.values()), 1), "skipped": self.skipped,
            "machine": machine, "report": str(self.out / "report.html")}, indent=2))
        return {"out": str(self.out), "stages": self.summary, "skipped": self.skipped, "machine": machine}

    def _reference(self, folder: Path) -> dict:
        from compact.reference.build import ReferenceBuildConfig, build_reference

        built = {}
        for size in reference_sizes(self.r):
            s = build_reference(ReferenceBuildConfig(size=size, seed=self.r.seed), progress=self._bars("reference"))
            built[size] = {"teacher": s["teacher"], "data": s["data"], "train_seconds": s.get("train_seconds"),
                           "zero_shot": s.get("eval", {}).get("zero_shot")}
        folder.mkdir(parents=True, exist_ok=True)
        return {"built": built}

    def _distill(self, folder: Path) -> dict:
        from compact.distill.recipe import load_recipe
        from compact.distill.trainer import DistillOptions, build_recipe_cache, run_distill

        recipe = load_recipe(self.r.distill.recipe)
        recipe.teacher, recipe.data, recipe.langs, recipe.seed = self.r.teacher, self.r.data, list(self.r.langs), \
            self.r.seed
        cache = None
        if self.r.distill.cache:
            cache = self.out / ".distill-cache"
            build_recipe_cache(recipe, cache, progress=self._bars("distill cache"))
        ckpt = folder.parent / f".{folder.name}.work" / "checkpoint"
        recover_interrupted(ckpt)  # a kill between a checkpoint's two renames left the previous one aside
        resume = (ckpt / "state.json").is_file()
        if not resume:
            self._fresh(folder)
        opts = DistillOptions(out=folder, cache=cache, resume=resume, overwrite=True,
                              max_steps=self.r.distill.max_steps, evaluate=False)  # the eval stage evaluates it
        rep = run_distill(recipe, opts, progress=self._bars("distill"))
        return {"parameters": rep.get("parameters"), "resumed": resume}

    def _prune(self, folder: Path) -> dict:
        from compact.prune.prune import PruneConfig, run_prune

        self._fresh(folder)
        p = self.r.prune
        data = self.r.data
        cfg = PruneConfig(importance=p.importance, keep_params=p.keep, granularity=tuple(p.granularity),
                          calib=f"{data}:val", calib_limit=p.calib_limit, eval_data=None,
                          recover_steps=p.recover_steps, measure_latency=p.latency, seed=self.r.seed)
        rep = run_prune(str(self.out / "distill"), cfg, folder, overwrite=True, progress=self._bars("prune"))
        return {"parameters": rep["parameters"], "flops": rep["flops"]}

    def _quantize(self, folder: Path) -> dict:
        from compact.quantize.run import GateError, QuantizeConfig, run_quantize

        self._fresh(folder)
        q = self.r.quantize
        cfg = QuantizeConfig(runtime=q.runtime, methods=tuple(q.methods) or None, auto=q.auto,
                             eval_data=self.r.eval_data().rsplit(":", 1)[0] + ":val", eval_limit=q.eval_limit,
                             max_drop=q.max_drop, min_cosine=q.min_cosine, force=q.force, overwrite=True,
                             name="student-int8", timing_seconds=q.timing_seconds, reduce_range=q.reduce_range)
        try:
            rep = run_quantize(str(self.student), cfg, folder, progress=self._bars("quantize"))
        except GateError as e:
            self.skipped["quantized student"] = str(e)
            return {"written": False, "reason": str(e)}
        for name, why in rep.get("skipped", {}).items():
            self.skipped[f"quantize method {name}"] = why
        return {"written": True, "choice": rep["choice"],
                "candidates": [{k: r.get(k) for k in ("method", "tower", "cosine_mean", "passed")}
                               | {"speedup": r.get("latency", {}).get("speedup")} for r in rep["candidates"]]}

    def _export(self, folder: Path) -> dict:
        from export.bundle import ExportConfig, export_model
        from export.targets import get_target

        self._fresh(folder)
        files = {}
        jobs = [("student", str(self.student), t) for t in self.r.export.targets]
        if self.r.export.teacher:
            jobs += [("teacher", self.r.teacher, t) for t in self.r.export.targets if t == "onnx"]
        for i, (who, spec, target) in enumerate(jobs):
            why = get_target(target).missing()
            if why:
                self.skipped[f"export {target}"] = why
                continue
            if self.progress:
                self.progress("export", i, len(jobs), {"bundle": f"{who}-{target}"})
            name = who if who == "teacher" or not self.r.prune.enabled else "student-pruned"
            m = export_model(spec, target, folder / f"{who}-{target}", ExportConfig(name=name), source=spec)
            files[f"{who}-{target}"] = {f["path"]: {"size_bytes": f["size_bytes"], "parity": f["parity"]}
                                        for f in m["files"]}
        if self.progress:
            self.progress("export", len(jobs), len(jobs), None)
        return {"bundles": files}

    def _bundles(self) -> list[Path]:
        out = sorted(p for p in (self.out / "export").iterdir() if (p / "manifest.json").is_file())
        qb = self.out / "quantize" / "bundle"
        if (qb / "manifest.json").is_file():
            out.append(qb)
        return out

    def _bench(self, folder: Path) -> dict:
        from bench.harness import TimingConfig
        from bench.report import accuracy_of, write_reports
        from bench.run import BenchConfig, bench_bundles

        self._fresh(folder)
        b = self.r.bench
        cfg = BenchConfig(runtimes=tuple(b.runtimes), batch_sizes=tuple(b.batch),
                          timing=TimingConfig(iters=b.iters, max_seconds=b.max_seconds, min_iters=10, warmup=3))
        res = bench_bundles(self._bundles(), cfg, progress=(lambda s, d, t: self.progress(f"bench: {s}", d, t, None))
                            if self.progress else None)
        for s in res.skipped:
            self.skipped[f"bench {s['runtime']} on {Path(s['bundle']).name}"] = s["reason"]
        accuracy = {}
        for f in (self.out / "eval").glob("*.json"):
            if f.name != STAGE_FILE:
                accuracy[f.stem] = accuracy_of(json.loads(f.read_text()))
        write_reports(res.results, folder, res.skipped, [res.profile], accuracy)
        return {"results": len(res.results)}

    def _eval(self, folder: Path) -> dict:
        from compact.data.sources.reference import open_reference, reference_base
        from compact.eval.runner import EvalConfig, evaluate
        from compact.models.teachers import load_teacher

        self._fresh(folder)
        folder.mkdir(parents=True)
        spec = self.r.eval_data()
        if reference_base(spec):
            data = open_reference(spec, self.r.eval.limit)
        else:
            from compact.data.sources import open_eval_data

            data = open_eval_data(spec)
        models = {"teacher": self.r.teacher, "student": str(self.out / "distill")}
        if self.r.prune.enabled:
            models["student-pruned"] = str(self.out / "prune")
        qb = self.out / "quantize" / "bundle"
        if (qb / "manifest.json").is_file():
            models["student-int8"] = str(qb)
        reports = {}
        for i, (name, model_spec) in enumerate(models.items()):
            if self.progress:
                self.progress("eval", i, len(models), {"model": name})
            rep = evaluate(load_teacher(model_spec), data, EvalConfig(langs=tuple(self.r.langs)))
            rep["model"] = name
            atomic_write_text(folder / f"{name}.json", json.dumps(rep, indent=2))
            reports[name] = {k: rep[k] for k in ("zero_shot",)}
        if self.progress:
            self.progress("eval", len(models), len(models), None)
        return {"models": list(models), "zero_shot": {k: v["zero_shot"] for k, v in reports.items()}}

    def _report(self, folder: Path) -> dict:
        from compact.pipeline.html import write_report

        self._fresh(folder)
        folder.mkdir(parents=True)
        path = write_report(self.out, self.r, self.summary, self.skipped)
        shutil.copy2(path, self.out / "report.html")
        return {"report": str(self.out / "report.html")}


def gemm_gflops(n: int = 512, seconds: float = 0.3) -> float:
    """fp32 n x n matmul rate with torch's current threads: the machine's speed at this moment."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        calls += 1
    return 2 * n**3 * calls / (time.perf_counter() - t0) / 1e9


def machine_facts() -> dict:
    """What sets the stage timings: cores, torch threads, bf16 autocast, and the fp32 GEMM rate right now (a shared
    VM's second core is sometimes much slower; a run 3x over budget with a low rate is the machine, not compact)."""
    import os

    import torch

    from compact.utils.amp import cpu_has_bf16

    gflops = gemm_gflops()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cores": cores, "torch_threads": torch.get_num_threads(), "bf16_autocast": cpu_has_bf16(),
            "gemm_fp32_gflops": round(gflops, 1)}


@locked("out")
def run_pipeline(recipe: PipelineRecipe, out: Path, progress: Optional[Progress] = None,
                 on_stage: Optional[Callable[[str, str], None]] = None, overwrite: bool = False) -> dict:
    """Run (or resume) the pipeline in `out`. A non-empty `out` that is not a pipeline folder is refused unless
    `overwrite`; a pipeline folder is reused, re-running only the stages whose config or inputs changed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CompactError(f"output {out} exists and is not a folder; choose another path")
    marker = out / PIPELINE_FILE
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        if not overwrite:
            raise CompactError(f"output folder {out} is not empty and holds no compact run; pass --overwrite to "
                               "replace it or choose another path")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"format": "compact-run", "version": FORMAT_VERSION,
                                          "recipe": asdict(recipe)}, indent=2, default=str))
    return Pipeline(recipe, out, progress, on_stage).run()
