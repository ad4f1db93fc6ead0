"""`compact prune`: score units, cut them out for real (smaller tensors), evaluate, optionally recover by
distilling from the unpruned model, and write a compact model folder with report.json."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from compact.errors import CompactError
from compact.models.compact_clip import count_parameters
from compact.models.flops import tower_flops
from compact.prune.importance import Calibration, compute_importance
from compact.prune.plan import GRANULARITIES, PlanConfig, build_plan
from compact.utils.io import locked

log = logging.getLogger(__name__)

# progress(stage, done, total, info)
PruneProgress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class PruneConfig:
    importance: str = "magnitude"
    keep_params: float = 0.5
    granularity: tuple[str, ...] = GRANULARITIES
    langs: Optional[tuple[str, ...]] = None  # trim the vocabulary to these languages' tokens (calibration text)
    calib: str = "reference:val"  # calibration data (taylor, mope, vocabulary corpus)
    calib_limit: int = 500
    eval_data: Optional[str] = "reference:test"  # None: no evaluation
    eval_langs: Optional[tuple[str, ...]] = None  # None: the model's languages, else every language of the data
    recover_steps: int = 0  # distillation steps from the unpruned model after pruning (0: none)
    recover_batch: int = 256
    recover_lr: float = 5e-4
    seed: int = 0
    prune_towers: tuple[str, ...] = ("vision", "text")
    cache_dir: Optional[str] = None  # mope score cache
    # Targets other than a parameter fraction (searched by bisection on the kept fraction):
    keep_flops: Optional[float] = None  # fraction of the analytic FLOPs (image + text) to keep
    target_latency_ms: Optional[float] = None  # measured ORT p50, image batch + text batch at latency_batch
    # Schedule: "oneshot", or "iterative" (prune -> recover, `iterations` times; width first, depth last).
    schedule: str = "oneshot"
    iterations: int = 3
    base_metric: str = "taylor"  # for --importance latency
    measure_latency: bool = True  # ORT latency and ONNX size before/after, side by side, in report.json
    latency_batch: int = 8

    def __post_init__(self) -> None:
        if self.schedule not in ("oneshot", "iterative"):
            raise CompactError(f"unknown schedule {self.schedule!r}; choose oneshot or iterative")
        if self.iterations < 1 or self.latency_batch < 1:
            raise CompactError("--iterations and the latency batch must be >= 1")
        if self.keep_flops is not None and not 0 < self.keep_flops <= 1:
            raise CompactError(f"--keep-flops is a fraction in (0, 1], got {self.keep_flops}")
        if self.target_latency_ms is not None and self.target_latency_ms <= 0:
            raise CompactError(f"--target-latency-ms must be positive, got {self.target_latency_ms}")
        if self.keep_flops is not None and self.target_latency_ms is not None:
            raise CompactError("give one target: --keep, --keep-flops or --target-latency-ms")


def _open(spec: str, limit: Optional[int] = None):
    from compact.data.sources import open_eval_data
    from compact.data.sources.reference import open_reference, reference_base

    if reference_base(spec) is not None:
        return open_reference(spec, limit)
    return open_eval_data(spec)


def _evaluate(model, data, langs):
    from compact.eval.runner import EvalConfig, evaluate

    return evaluate(model, data, EvalConfig(langs=langs))


@locked("out")
def run_prune(model_spec: str, cfg: PruneConfig, out: Path, overwrite: bool = False,
              progress: Optional[PruneProgress] = None) -> dict:
    from compact.models.convert import to_compact
    from compact.models.folder import save_model
    from compact.models.teachers import load_teacher
    from compact.utils.io import check_output_dir

    t0 = time.perf_counter()
    check_output_dir(Path(out), overwrite)
    original = load_teacher(model_spec)
    model = to_compact(original)
    before_params = count_parameters(model)
    work = _work_folder(Path(out), model, cfg) if cfg.recover_steps else None
    step = lambda s, d, t: progress(s, d, t, {}) if progress else None  # noqa: E731
    calib_data = _open(cfg.calib, cfg.calib_limit)
    langs = cfg.eval_langs or (model.languages if model.languages else None)
    calib = Calibration(data=calib_data, teacher=None, langs=tuple(langs or ("en",)), cache_dir=cfg.cache_dir,
                        base_metric=cfg.base_metric, latency_batch=cfg.latency_batch)
    vocab, tokenizer, vocab_report = None, None, None
    if cfg.langs:
        vocab, tokenizer, vocab_report = _trim_vocab(model, calib_data, cfg.langs)

    report: dict = {"model": model_spec, "config": asdict(cfg), "vocab": vocab_report, "removed": {}}
    n_iter = cfg.iterations if cfg.schedule == "iterative" else 1
    current = model
    searched = cfg.keep_flops is not None or cfg.target_latency_ms is not None  # keep found by bisection
    for it in range(n_iter):
        last = it == n_iter - 1
        step("score", it, n_iter)
        torch.manual_seed(cfg.seed)
        scores = compute_importance(cfg.importance, current, calib)
        if calib.latency_table is not None and "latency_table" not in report:
            report["latency_table"] = calib.latency_table
        # Iterative: the kept fraction shrinks geometrically; width (heads, FFN) first, layers only at the end.
        gran = tuple(cfg.granularity) if last else tuple(g for g in cfg.granularity if g != "layers") or \
            tuple(cfg.granularity)
        keep_total = _resolve_keep(model, current, scores, cfg, vocab if it == 0 else None, gran,
                                   fraction=(it + 1) / n_iter)
        keep_rel = min(1.0, keep_total * before_params / count_parameters(current))
        res = build_plan(current, scores, PlanConfig(keep_params=keep_rel, granularity=gran,
                                                     prune_towers=tuple(cfg.prune_towers),
                                                     best_effort=not last or searched),
                         vocab if it == 0 else None)
        from compact.models.surgery import slice_model

        pruned = slice_model(current, res.plan, tokenizer=tokenizer if it == 0 else None)
        if cfg.langs:
            pruned.languages = tuple(cfg.langs)
        report["removed"] = res.removed if n_iter == 1 else {**report["removed"], f"iteration_{it + 1}": res.removed}
        if n_iter > 1:
            report.setdefault("iterations", []).append({"keep_total": round(keep_total, 4),
                                                        "parameters": count_parameters(pruned), "granularity": gran})
        steps = cfg.recover_steps // n_iter if n_iter > 1 else cfg.recover_steps
        if last and cfg.eval_data:
            data = _open(cfg.eval_data)
            eval_langs = tuple(cfg.langs) if cfg.langs else langs
            step("evaluate", 0, 3 if cfg.recover_steps else 2)
            report.setdefault("eval", {})["before"] = _evaluate(model, data, eval_langs)
            step("evaluate", 1, 3 if cfg.recover_steps else 2)
            report["eval"]["after_pruning"] = _evaluate(pruned, data, eval_langs)
            step("evaluate", 2, 3 if cfg.recover_steps else 2)
        if steps:
            pruned = _recover(model_spec, pruned, cfg, report, progress, steps, work, it)
        current = pruned
    if cfg.recover_steps and cfg.eval_data:
        report["eval"]["after_recovery"] = _evaluate(current, data, eval_langs)
        step("evaluate", 3, 3)
    after_params = count_parameters(current)
    report["parameters"] = {"before": _params(model), "after": _params(current),
                            "ratio": round(after_params / before_params, 4)}
    report["flops"] = {"before": tower_flops(model), "after": tower_flops(current)}
    if cfg.measure_latency:
        from compact.prune.latency import LatencyConfig, compare_models

        step("latency", 0, 1)
        report["latency"] = compare_models(model, current, LatencyConfig(batch=cfg.latency_batch))
        step("latency", 1, 1)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    save_model(current, Path(out), overwrite=True, extra_files={"report.json": report})
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _work_folder(out: Path, model, cfg: PruneConfig) -> Path:
    """`.NAME.work` beside the output holds the recovery checkpoints, so a killed prune resumes its recovery where
    it stopped (re-run the same command). It belongs to one model and config, named by a hash of both: anything
    else finds it stale and starts afresh."""
    from compact.utils.checkpoint import owned_work_folder
    from export.towers import model_hash

    return owned_work_folder(out.parent / f".{out.name}.work", {"model": model_hash(model), "config": asdict(cfg)})


def _resolve_keep(model, current, scores, cfg: PruneConfig, vocab, gran, fraction: float = 1.0) -> float:
    """The fraction of the *original* parameters to keep after this iteration. A FLOPs or latency target is
    turned into one by bisection on the kept fraction (plans are cheap; latency is measured on ORT)."""
    if cfg.keep_flops is None and cfg.target_latency_ms is None:
        return cfg.keep_params ** fraction
    from compact.models.surgery import slice_model

    base_params = count_parameters(model)
    cur_params = count_parameters(current)

    def candidate(keep_total: float):
        keep_rel = min(1.0, keep_total * base_params / cur_params)
        plan = build_plan(current, scores, PlanConfig(keep_params=keep_rel, granularity=gran, best_effort=True,
                                                      prune_towers=tuple(cfg.prune_towers)), vocab)
        return slice_model(current, plan.plan)

    if cfg.keep_flops is not None:
        full = _flops(model)
        goal = full * cfg.keep_flops ** fraction
        meets = lambda m: _flops(m) <= goal  # noqa: E731
    else:
        goal = cfg.target_latency_ms
        meets = lambda m: _latency_ms(m, cfg) <= goal  # noqa: E731
    lo, hi = 0.02, 1.0
    if meets(candidate(hi)):
        return hi
    if not meets(candidate(lo)):
        raise CompactError(f"the target cannot be met even keeping 2% of the parameters "
                           f"({'FLOPs' if cfg.keep_flops else 'latency'} goal {goal:.4g}); relax it")
    for _ in range(7):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if meets(candidate(mid)) else (lo, mid)  # lo always meets the target
    return lo


def _flops(m) -> float:
    f = tower_flops(m)
    return float((f.get("image") or 0) + (f.get("text") or 0))


def _latency_ms(m, cfg: PruneConfig) -> float:
    from bench.harness import TimingConfig, time_callable
    from compact.prune.latency import LatencyConfig, tower_runner

    total = 0.0
    lc = LatencyConfig(batch=cfg.latency_batch)
    with tempfile.TemporaryDirectory(prefix="compact-latency-") as tmp:
        for tower in ("vision", "text"):
            run, _ = tower_runner(m, tower, lc, Path(tmp))
            total += time_callable(run, TimingConfig(warmup=3, min_iters=10, max_seconds=1.5)).median_s * 1e3
    return total


def _params(m) -> dict:
    return {"image": count_parameters(m.visual), "text": count_parameters(m.text), "total": count_parameters(m)}


def _trim_vocab(model, data, langs):
    from compact.models.hf_tokenizers import trim_tokenizer
    from compact.models.tokenizer import HFTokenizer

    tok = model.tokenizer
    if not isinstance(tok, HFTokenizer):
        raise CompactError(f"vocabulary pruning needs a vocabulary; this model's tokenizer is {tok.type_name!r}")
    missing = [lg for lg in langs if lg not in data.pairs]
    if missing:
        raise CompactError(f"the calibration data {data.name} has no captions in {missing}; the vocabulary would lose "
                           "their tokens. Give --calib data with those languages or drop them from --langs")
    corpus = [c for lg in langs for _, c in data.pairs[lg]]
    if data.classification is not None:
        corpus += [p for lg in langs for ps in data.classification.prompts.get(lg, []) for p in ps]
    specials = [i for i in (tok.bos_id, tok.eos_id, tok.pad_id) if i is not None]
    res = trim_tokenizer(tok.tok, corpus, keep_ids=specials)
    new = {old: i for i, old in enumerate(res.old_ids)}
    t2 = HFTokenizer(res.tokenizer, tok.context_length, new[tok.bos_id] if tok.bos_id is not None else None,
                     new[tok.eos_id], new[tok.pad_id])
    return list(res.old_ids), t2, {"before": res.vocab_before, "after": res.vocab_after, "langs": list(langs)}


def _recovery_cache(recipe, samples: int, work: Path, progress) -> Optional[Path]:
    """The unpruned model's embeddings of every training image and caption, computed once, when recovery draws at
    least twice as many samples as the training split holds (the default `compact run`: 25,600 draws from 8,000
    images); otherwise None and the teacher runs on each batch. Same embeddings either way (the distill cache's
    test); one cache serves every iteration, as the teacher is always the unpruned model."""
    from compact.distill.trainer import open_recipe_data, build_recipe_cache

    train, _ = open_recipe_data(recipe)
    if samples < 2 * len(train.images):
        return None
    cache = work / "teacher-cache"
    build_recipe_cache(recipe, cache, progress=(lambda what, a, b: progress(f"recover {what}", a, b, {}))
                       if progress else None)
    return cache


def _recover(model_spec, pruned, cfg: PruneConfig, report: dict, progress, steps: int, work: Path,
             it: int) -> object:
    """Distil the pruned model back towards the unpruned one (feature + affinity on image-caption pairs).
    Checkpointed under `work`; an iteration finished before a kill is read back instead of trained again."""
    from compact.data.sources.reference import reference_base
    from compact.distill.recipe import DistillRecipe, StageConfig
    from compact.distill.trainer import DistillOptions, Distiller
    from compact.models.folder import load_model, save_model
    from compact.utils.io import write_json

    done, record = work / f"recovered-{it}", work / f"recovery-{it}.json"
    if (done / "config.json").is_file() and record.is_file():
        log.info("recovery %d finished before the interruption; reading %s", it + 1, done)
        report.setdefault("recovery", []).append(json.loads(record.read_text()))
        return load_model(done)
    save_model(pruned, work / f"pruned-{it}", overwrite=True)
    data = reference_base(cfg.calib) or cfg.calib  # recovery trains on the train split of the same data
    langs = list(pruned.languages or cfg.eval_langs or ["en"])
    recipe = DistillRecipe(teacher=model_spec, data=data, langs=langs, student_init=str(work / f"pruned-{it}"),
                           stages=[StageConfig(name="align", steps=steps, batch_size=cfg.recover_batch,
                                               lr=cfg.recover_lr,
                                               losses={"feature_cosine": 1.0, "affinity": 1.0})],
                           val_every=0, seed=cfg.seed, checkpoint_every=max(5, steps // 4))
    cache = _recovery_cache(recipe, steps * cfg.recover_batch, work, progress)
    d = Distiller(recipe, DistillOptions(out=done, resume=True, cache=cache,
                                         batch_hint="pass --recover-batch {smaller}"),
                  progress=(lambda s, a, b, info: progress(f"recover {s}", a, b, info)) if progress else None)
    d.setup()
    state = d.train()
    rec = {"steps": steps, "loss_curve": state["curves"].get("align", []), "seconds": round(state["seconds"], 1),
           "teacher": "cached" if cache else "online"}
    save_model(d.student.eval(), done, overwrite=True)
    write_json(record, rec)
    shutil.rmtree(d.work, ignore_errors=True)
    shutil.rmtree(work / f"pruned-{it}", ignore_errors=True)
    report.setdefault("recovery", []).append(rec)
    return load_model(done)
