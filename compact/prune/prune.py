"""`compact prune`: score units, cut them out for real (smaller tensors), evaluate, optionally recover by
distilling from the unpruned model, and write a compact model folder with report.json."""

from __future__ import annotations

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


def _open(spec: str, limit: Optional[int] = None):
    from compact.data.sources import open_eval_data
    from compact.data.sources.reference import open_reference, reference_base

    if reference_base(spec) is not None:
        return open_reference(spec, limit)
    return open_eval_data(spec)


def _evaluate(model, data, langs):
    from compact.eval.runner import EvalConfig, evaluate

    return evaluate(model, data, EvalConfig(langs=langs))


def run_prune(model_spec: str, cfg: PruneConfig, out: Path, overwrite: bool = False,
              progress: Optional[PruneProgress] = None) -> dict:
    from compact.models.convert import to_compact
    from compact.models.folder import save_model
    from compact.models.surgery import slice_model
    from compact.models.teachers import load_teacher
    from compact.utils.io import check_output_dir

    t0 = time.perf_counter()
    check_output_dir(Path(out), overwrite)
    original = load_teacher(model_spec)
    model = to_compact(original)
    before_params = count_parameters(model)
    step = lambda s, d, t: progress(s, d, t, {}) if progress else None  # noqa: E731
    step("score", 0, 1)
    calib_data = _open(cfg.calib, cfg.calib_limit)
    langs = cfg.eval_langs or (model.languages if model.languages else None)
    calib = Calibration(data=calib_data, teacher=None, langs=tuple(langs or ("en",)), cache_dir=cfg.cache_dir)
    torch.manual_seed(cfg.seed)
    scores = compute_importance(cfg.importance, model, calib)
    step("score", 1, 1)
    vocab, tokenizer, vocab_report = None, None, None
    if cfg.langs:
        vocab, tokenizer, vocab_report = _trim_vocab(model, calib_data, cfg.langs)
    res = build_plan(model, scores, PlanConfig(keep_params=cfg.keep_params, granularity=tuple(cfg.granularity),
                                               prune_towers=tuple(cfg.prune_towers)), vocab)
    pruned = slice_model(model, res.plan, tokenizer=tokenizer)
    if cfg.langs:
        pruned.languages = tuple(cfg.langs)
    after_params = count_parameters(pruned)
    report: dict = {
        "model": model_spec, "config": asdict(cfg),
        "removed": res.removed, "vocab": vocab_report,
        "parameters": {"before": _params(model), "after": _params(pruned), "ratio": round(after_params / before_params, 4)},
        "flops": {"before": tower_flops(model), "after": tower_flops(pruned)},
    }
    if cfg.eval_data:
        data = _open(cfg.eval_data)
        eval_langs = tuple(cfg.langs) if cfg.langs else langs
        step("evaluate", 0, 3 if cfg.recover_steps else 2)
        report["eval"] = {"before": _evaluate(model, data, eval_langs)}
        step("evaluate", 1, 3 if cfg.recover_steps else 2)
        report["eval"]["after_pruning"] = _evaluate(pruned, data, eval_langs)
        step("evaluate", 2, 3 if cfg.recover_steps else 2)
    if cfg.recover_steps:
        pruned = _recover(model_spec, pruned, cfg, report, progress)
        if cfg.eval_data:
            report["eval"]["after_recovery"] = _evaluate(pruned, data, eval_langs)
            step("evaluate", 3, 3)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    save_model(pruned, Path(out), overwrite=True, extra_files={"report.json": report})
    return report


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


def _recover(model_spec, pruned, cfg: PruneConfig, report: dict, progress) -> object:
    """Distil the pruned model back towards the unpruned one (feature + affinity on image-caption pairs)."""
    from compact.distill.recipe import DistillRecipe, StageConfig
    from compact.distill.trainer import DistillOptions, Distiller
    from compact.models.folder import load_model, save_model

    tmp = Path(tempfile.mkdtemp(prefix="compact-prune-"))
    try:
        save_model(pruned, tmp / "pruned")
        from compact.data.sources.reference import reference_base

        data = reference_base(cfg.calib) or cfg.calib  # recovery trains on the train split of the same data
        langs = list(pruned.languages or cfg.eval_langs or ["en"])
        recipe = DistillRecipe(teacher=model_spec, data=data, langs=langs, student_init=str(tmp / "pruned"),
                               stages=[StageConfig(name="align", steps=cfg.recover_steps, batch_size=cfg.recover_batch,
                                                   lr=cfg.recover_lr,
                                                   losses={"feature_cosine": 1.0, "affinity": 1.0})],
                               val_every=0, seed=cfg.seed, checkpoint_every=10**9)
        d = Distiller(recipe, DistillOptions(out=tmp / "recovered"),
                      progress=(lambda s, a, b, info: progress(f"recover {s}", a, b, info)) if progress else None)
        d.setup()
        state = d.train()
        report["recovery"] = {"steps": cfg.recover_steps, "loss_curve": state["curves"].get("align", []),
                              "seconds": round(state["seconds"], 1)}
        out = d.student.eval()
        save_model(out, tmp / "recovered")
        return load_model(tmp / "recovered")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
