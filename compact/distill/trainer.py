"""`compact distill`: train a small multilingual student from a teacher, in stages, resumable, optionally DDP.

Determinism: every batch is a pure function of (seed, stage, step), so a run resumed from a checkpoint draws
exactly the batches the uninterrupted run would have, and the final weights agree.

Scale-out: under `torchrun --nproc_per_node=N` each rank takes an equal slice of every global batch, the step
module is wrapped in DistributedDataParallel, and embeddings are all-gathered (with gradient) before the loss,
so losses that couple a batch (contrastive, affinity) see the global batch exactly as one process would.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from compact.distill.cache import OnlineTeacher, TeacherCache, data_fingerprint, teacher_fingerprint
from compact.distill.data import (ImageCaptionSet, ParallelText, image_caption_set, parallel_from_eval_data,
                                  parallel_from_tsv)
from compact.distill.losses import LossInputs, build_loss
from compact.distill.recipe import DistillRecipe, StageConfig
from compact.distill.student import build_student
from compact.distill.tokenizers import TokenizerConfig, build_student_tokenizer
from compact.errors import CompactError, DataError
from compact.models.compact_clip import CompactCLIP, count_parameters
from compact.models.folder import save_model
from compact.utils.amp import bf16_ok, train_autocast, training_precision
from compact.utils.checkpoint import load_checkpoint, save_checkpoint
from compact.utils.io import check_output_dir, recover_interrupted
from compact.utils.memory import batch_must_fit
from compact.utils.schedule import adamw, warmup_cosine

log = logging.getLogger(__name__)

# progress(stage_name, step, total_steps, info)
DistillProgress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class DistillOptions:
    out: Path
    cache: Optional[Path] = None  # a `compact distill cache` folder; None: run the teacher online
    resume: bool = False
    overwrite: bool = False
    max_steps: Optional[int] = None  # caps every stage's steps (smoke runs)
    epochs: Optional[float] = None  # overrides every stage's steps with passes over its data
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    stop_after: Optional[int] = None  # testing: stop (as if killed) after this many global steps
    batch_hint: Optional[str] = None  # out-of-memory advice ({smaller}: half the batch); default: the recipe's field
    evaluate: bool = True  # student and teacher on the test split into report.json (`compact run` evaluates every
    # model in its own eval stage, so it turns this off instead of evaluating the teacher and student twice)


def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _init_distributed() -> None:
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo" if not torch.cuda.is_available() else "nccl")


def _gather(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    dist, _, world = _dist()
    if x is None or world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


def _gather_plain(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    dist, _, world = _dist()
    if x is None or world == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def lr_at(step: int, stage: StageConfig, total: int) -> float:
    return warmup_cosine(step, total, stage.lr, stage.warmup_frac)


def _generator(seed: int, stage: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 10_007 + step)


class StepModule(nn.Module):
    """Student plus the stage's losses; forward(batch) -> loss. One module, so DDP can wrap it."""

    def __init__(self, student: CompactCLIP, losses: nn.ModuleDict, weights: dict[str, float],
                 length_groups: int = 1):
        super().__init__()
        self.student = student
        self.losses = losses
        self.weights = weights
        self.length_groups = length_groups

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        s = self.student
        s_img = s.encode_image(batch["pixels"]) if "pixels" in batch else None
        s_txt = encode_text_by_length(s, batch["ids"], batch["mask"], self.length_groups) if "ids" in batch else None
        x = LossInputs(s_img=_gather(s_img), s_txt=_gather(s_txt), t_img=batch.get("t_img"),
                       t_txt=batch.get("t_txt"), logit_scale=s.log_logit_scale.exp().clamp(max=100),
                       teacher_scale=batch["teacher_scale"], progress=batch["progress"])
        parts = {name: loss(x) for name, loss in self.losses.items()}
        total = sum(self.weights[n] * v for n, v in parts.items())
        return total, {n: float(v.detach()) for n, v in parts.items()}


def encode_text_by_length(model, ids: torch.Tensor, mask: torch.Tensor, groups: int) -> torch.Tensor:
    """`model.encode_text(ids, mask)`, computed in `groups` groups of similar length, each cut to its own longest
    text, and put back in the batch's order. Same result as one call for towers that accept any length
    (`variable_length_text`); other towers, and groups=1, take the one call."""
    if groups <= 1 or not model.variable_length_text or ids.shape[0] < 2 * groups:
        return model.encode_text(ids, mask)
    lengths = mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for idx in order.chunk(groups):
        n = max(1, int(lengths[idx].max()))
        parts.append(model.encode_text(ids[idx, :n], mask[idx, :n]))
    return torch.cat(parts)[torch.argsort(order)]


class Distiller:
    def __init__(self, recipe: DistillRecipe, opts: DistillOptions, progress: Optional[DistillProgress] = None):
        self.recipe, self.opts, self.progress = recipe, opts, progress
        _init_distributed()
        self.dist, self.rank, self.world = _dist()
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.out = Path(opts.out)
        self.work = self.out.parent / f".{self.out.name}.work"
        self.ckpt = self.work / "checkpoint"

    # ---- setup -------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from compact.models.teachers import load_teacher

        r = self.recipe
        if self.opts.resume and self.rank == 0:
            # A kill between a checkpoint's two renames leaves the previous one aside; a kill mid-write leaves a
            # partial temporary folder. Both are put right before anything reads the checkpoint.
            if recover_interrupted(self.ckpt):
                log.info("restored the checkpoint a killed run had moved aside: %s", self.ckpt)
        if self.world > 1:
            self.dist.barrier()
        if not (self.opts.resume and (self.ckpt / "state.json").is_file()):
            check_output_dir(self.out, self.opts.overwrite)
        t0 = time.perf_counter()
        self.teacher = load_teacher(r.teacher)
        self.train_data, self.val_data = open_recipe_data(r)
        self.parallel = _parallel(r, self.train_data)
        self.parallel.check_langs(r.langs)
        self.parallel = self.parallel.only(r.langs)
        if r.student_init:
            self._init_from(Path(r.student_init))
        else:
            corpus = list(dict.fromkeys(self.parallel.text + self.parallel.en))
            spec = r.student.tokenizer
            self.tok = build_student_tokenizer(TokenizerConfig(spec.kind, spec.context_length, spec.vocab_size),
                                               corpus, self.teacher)
            self.student, self.student_report = build_student(r.student, self.tok, self.teacher, r.langs, r.seed)
        needs_images = any(s.name in ("vision", "align") for s in r.stages)
        self.images: Optional[ImageCaptionSet] = None
        if needs_images:
            self.images = image_caption_set(self.train_data, self.student.preprocess_cfg, r.langs)
        # The pivot-language texts whose teacher embeddings training needs (what a cache must hold).
        self.teacher_texts = list(dict.fromkeys(
            self.parallel.en + (self.images.captions[self.images.pivot] if self.images else [])))
        self.targets = self._targets(self.teacher_texts)
        self.setup_seconds = time.perf_counter() - t0

    def _init_from(self, path: Path) -> None:
        from compact.distill.tokenizers import StudentTokenizer
        from compact.models.folder import load_model

        self.student = load_model(path)
        self.student.languages = tuple(self.recipe.langs)
        t = self.student.tokenizer
        self.tok = StudentTokenizer(t, None, {"kind": f"from {path}", "vocab_before": None,
                                              "vocab_after": t.vocab_size, "context_length": t.context_length})
        self.student_report = {"inherited": [f"all (student_init {path})"], "layers": {},
                               "parameters": {"image": count_parameters(self.student.visual),
                                              "text": count_parameters(self.student.text),
                                              "total": count_parameters(self.student)}}

    def _targets(self, texts):
        if self.opts.cache is None:
            return OnlineTeacher(self.teacher, self.train_data)
        cache = TeacherCache(self.opts.cache)
        cache.check(teacher_fingerprint(self.teacher), data_fingerprint(self.train_data, texts))
        return cache

    # ---- batches -----------------------------------------------------------------------------------------------
    def batch(self, si: int, stage: StageConfig, step: int, total: int) -> dict:
        g = _generator(self.recipe.seed, si, step)
        B = stage.batch_size
        if B % self.world:
            raise CompactError(f"stage {stage.name}: batch_size {B} is not divisible by the {self.world} ranks")
        out: dict = {"teacher_scale": self.targets.teacher_scale, "progress": step / max(1, total)}
        if stage.name == "text":
            idx = torch.randint(0, len(self.parallel), (B,), generator=g)
            mine = idx[self.rank::self.world]
            order = torch.cat([idx[r::self.world] for r in range(self.world)])  # see below
            tb = self.student.tokenize([self.parallel.text[i] for i in mine]).trimmed()
            out.update(ids=tb.ids, mask=tb.mask, t_txt=self.targets.text([self.parallel.en[i] for i in order]))
            return out
        assert self.images is not None
        idx = torch.randint(0, len(self.images), (B,), generator=g)
        mine = idx[self.rank::self.world]
        # Rank r's samples sit at positions r, r+world, ... of the global batch; the gathered student embeddings
        # come back rank-major, so the teacher targets are put in that same order.
        order = torch.cat([idx[r::self.world] for r in range(self.world)])
        out["pixels"] = self.images.batch_pixels(mine)
        out["t_img"] = self.targets.image(order)
        if stage.name == "align":
            langs = self.recipe.langs
            li = torch.randint(0, len(langs), (B,), generator=g)
            li_mine = li[self.rank::self.world]
            caps = [self.images.captions[langs[j]][i] for i, j in zip(mine.tolist(), li_mine.tolist())]
            tb = self.student.tokenize(caps).trimmed()
            out.update(ids=tb.ids, mask=tb.mask,
                       t_txt=self.targets.text([self.images.captions[self.images.pivot][i] for i in order.tolist()]))
        return out

    # ---- training ----------------------------------------------------------------------------------------------
    def _stage_modules(self, stage: StageConfig) -> tuple[StepModule, list[nn.Parameter]]:
        s_dim, t_dim = self.student.embed_dim, self.teacher.embed_dim
        losses = nn.ModuleDict({n: build_loss(n, s_dim, t_dim, stage.loss_params.get(n)) for n in stage.losses})
        module = StepModule(self.student, losses, dict(stage.losses), self.recipe.length_groups)
        towers = {"text": [self.student.text], "vision": [self.student.visual],
                  "align": [self.student.visual, self.student.text]}[stage.name]
        params = [p for t in towers for p in t.parameters()] + list(losses.parameters())
        if stage.name == "align":
            params.append(self.student.log_logit_scale)
        return module, params

    def stage_steps(self, stage: StageConfig) -> int:
        epochs = self.opts.epochs if self.opts.epochs is not None else stage.epochs
        steps = stage.steps
        if epochs is not None:
            n = len(self.parallel) if stage.name == "text" else len(self.images)
            steps = max(1, math.ceil(epochs * n / stage.batch_size))
        return min(steps, self.opts.max_steps or steps)

    def _restore(self) -> tuple[int, int, dict]:
        """(stage index, step, saved state) from the checkpoint; the student's weights are loaded here."""
        import json

        from safetensors.torch import load_file

        from compact.utils.checkpoint import MODEL, STATE

        try:
            meta = json.loads((self.ckpt / STATE).read_text())
            weights = load_file(str(self.ckpt / MODEL))
        except (OSError, ValueError) as e:
            raise CompactError(f"checkpoint {self.ckpt} is unreadable ({e}); delete it to start over") from None
        self.student.load_state_dict({k[len("student."):]: v for k, v in weights.items() if k.startswith("student.")})
        self._ckpt_weights = weights
        saved = meta["extra"]
        return int(saved["stage"]), int(meta["step"]), saved

    def train(self) -> dict:
        r = self.recipe
        state = {"stage": 0, "step": 0, "curves": {}, "val": {}, "seconds": 0.0}
        start_stage, start_step = 0, 0
        if self.opts.resume and (self.ckpt / "state.json").is_file():
            start_stage, start_step, saved = self._restore()
            state.update(saved)
            log.info("resuming at stage %d step %d", start_stage, start_step)
        use_bf16 = r.bf16 and bf16_ok(self.opts.device)
        state["precision"] = training_precision(self.opts.device, use_bf16)
        global_steps = 0
        for si, stage in enumerate(r.stages):
            if si < start_stage:
                continue  # finished before the interruption; its weights are in the checkpoint
            total = self.stage_steps(stage)
            module, params = self._stage_modules(stage)
            opt = adamw(params, stage.lr, stage.weight_decay)
            step = 0
            if si == start_stage and start_step:
                holder = nn.ModuleDict({"student": self.student, "losses": module.losses})
                load_checkpoint(self.ckpt, holder, opt)
                step = start_step
            runner = module
            if self.world > 1:
                from torch.nn.parallel import DistributedDataParallel

                runner = DistributedDataParallel(module, find_unused_parameters=True)
            self.student.train()
            curve = state["curves"].setdefault(stage.name, [])
            t_last, s_last, t0 = time.perf_counter(), step, time.perf_counter()
            while step < total:
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, stage, total)
                batch = self.batch(si, stage, step, total)
                with batch_must_fit(stage.batch_size, f"training stage {stage.name!r}", self.opts.batch_hint or
                                    f"set batch_size: {{smaller}} for stage {stage.name!r} in the recipe (the "
                                    "steps then see fewer samples: raise steps to match)"):
                    with train_autocast(self.opts.device, use_bf16):
                        loss, parts = runner(batch)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                if stage.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
                opt.step()
                with torch.no_grad():
                    self.student.log_logit_scale.clamp_(0, math.log(100))
                step += 1
                global_steps += 1
                info: dict = {}
                if step % 10 == 0 or step == total:
                    now = time.perf_counter()
                    info = {"loss": float(loss.detach()), "samples_per_s": (step - s_last) * stage.batch_size / max(now - t_last, 1e-9)}
                    t_last, s_last = now, step
                    curve.append([step, round(float(loss.detach()), 5)])
                if r.val_every and step % r.val_every == 0 and step < total:
                    val = self.validate(stage.name, step)
                    state["val"].setdefault(f"{stage.name}@{step}", val)
                    if val.get("zero_shot"):
                        info["val_zero_shot"] = sum(val["zero_shot"].values()) / len(val["zero_shot"])
                    t_last = time.perf_counter()
                if info and self.progress and self.rank == 0:
                    self.progress(stage.name, step, total, info)
                done = step == total
                if (step % r.checkpoint_every == 0 or done) and self.rank == 0:
                    state["seconds"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    st = dict(state, stage=si + 1 if done else si)
                    save_checkpoint(self.ckpt, nn.ModuleDict({"student": self.student, "losses": module.losses}),
                                    None if done else opt, 0 if done else step, st)
                if self.world > 1 and (step % r.checkpoint_every == 0 or done):
                    self.dist.barrier()
                if self.opts.stop_after is not None and global_steps >= self.opts.stop_after:
                    raise _Stopped()
            state["seconds"] += time.perf_counter() - t0
            state["val"][stage.name] = self.validate(stage.name, step)
            state["stage"] = si + 1
        self.student.eval()
        return state

    def validate(self, stage: str, step: int) -> dict:
        if self.val_data is None:
            return {}
        from compact.eval.runner import EvalConfig, evaluate

        was = self.student.training
        rep = evaluate(self.student.eval(), self.val_data, EvalConfig(langs=tuple(self.recipe.langs)))
        self.student.train(was)
        out = {"step": step, "zero_shot": {k: round(v, 4) for k, v in rep["zero_shot"].items()}}
        log.info("val after %s step %d: %s", stage, step, out["zero_shot"])
        return out


class _Stopped(Exception):
    """Raised by `stop_after` (tests): leaves the checkpoint exactly as a kill would."""


def open_recipe_data(r: DistillRecipe):
    """(train, val) data of a recipe: the reference benchmark's splits, or any source `compact eval` reads."""
    from compact.data.sources import open_eval_data
    from compact.data.sources.reference import open_reference, reference_base

    base = reference_base(r.data)
    if base is not None:
        train = open_reference(f"{base}:train", r.train_limit)
        val = open_reference(f"{base}:val", r.val_limit) if r.val_data is None else open_eval_data(r.val_data)
        return train, val
    train = open_eval_data(r.data)
    val = open_eval_data(r.val_data) if r.val_data else None
    return train, val


def _parallel(r: DistillRecipe, train) -> ParallelText:
    par = ParallelText()
    if train.parallel:
        par.extend(parallel_from_eval_data(train, r.langs))
    for path in r.parallel:
        par.extend(parallel_from_tsv(Path(path)))
    if bool(r.captions_file) != bool(r.translations_file):
        raise DataError("give both a captions file and a translations file (or neither)")
    if r.captions_file:
        from compact.distill.data import parallel_from_files

        par.extend(parallel_from_files(Path(r.captions_file), Path(r.translations_file)))
    if not len(par):
        raise DataError("no parallel text: the training data has no pivot language and the recipe lists no "
                        "parallel files; add `parallel: [file.tsv]` (columns en, text, lang)")
    return par


def build_recipe_cache(recipe: DistillRecipe, out: Path, cfg=None, overwrite: bool = False, progress=None) -> dict:
    """`compact distill cache`: the teacher's embeddings of the recipe's training images and pivot texts."""
    from compact.distill.cache import CacheConfig, build_cache
    from compact.models.teachers import load_teacher

    teacher = load_teacher(recipe.teacher)
    train, _ = open_recipe_data(recipe)
    par = _parallel(recipe, train).only(recipe.langs)
    texts = par.en + ([c for _, c in train.pairs[train.parallel]] if train.parallel else [])
    return build_cache(teacher, train, texts, out, cfg or CacheConfig(), overwrite=overwrite, progress=progress)


def run_distill(recipe: DistillRecipe, opts: DistillOptions, progress: Optional[DistillProgress] = None) -> dict:
    """Run every stage of `recipe`, evaluate on the test split, write the model folder + report.json to opts.out.
    The output is locked for the run (rank 0 of a torchrun job holds it for every rank)."""
    from compact.utils.io import output_lock

    if int(os.environ.get("RANK", "0")) != 0:
        return _run_distill(recipe, opts, progress)
    with output_lock(Path(opts.out)):
        return _run_distill(recipe, opts, progress)


def _run_distill(recipe: DistillRecipe, opts: DistillOptions, progress: Optional[DistillProgress] = None) -> dict:
    from compact.eval.runner import EvalConfig, evaluate

    t_start = time.perf_counter()
    d = Distiller(recipe, opts, progress)
    d.setup()
    try:
        state = d.train()
    except _Stopped:
        return {"stopped": True}
    if d.rank != 0:
        return {"rank": d.rank}
    student_eval = teacher_eval = None
    if opts.evaluate:
        test = _test_data(recipe, d)
        langs = tuple(recipe.langs)
        if progress:
            progress("evaluate", 0, 2, {})
        student_eval = evaluate(d.student, test, EvalConfig(langs=langs),
                                teacher=d.teacher if d.teacher.embed_dim == d.student.embed_dim else None)
        teacher_eval = evaluate(d.teacher, test, EvalConfig(langs=langs))
        if progress:
            progress("evaluate", 2, 2, {})
    teacher_params = _tower_params(d.teacher)
    report = {
        "recipe": asdict(recipe),
        "student": {"parameters": d.student_report["parameters"], "inherited": d.student_report["inherited"],
                    "inherited_layers": d.student_report["layers"],
                    "tokenizer": d.tok.report},
        "teacher": {"spec": recipe.teacher, "parameters": teacher_params},
        "param_ratio": round(d.student_report["parameters"]["total"] / teacher_params["total"], 4),
        "eval": {"student": student_eval, "teacher": teacher_eval} if opts.evaluate else None,
        "loss_curves": state["curves"],
        "val": state["val"],
        "cache": str(opts.cache) if opts.cache else None,
        "seconds": {"setup": round(d.setup_seconds, 1), "train": round(state["seconds"], 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "world_size": d.world,
    }
    save_model(d.student, opts.out, overwrite=True, extra_files={"report.json": report})
    shutil.rmtree(d.work, ignore_errors=True)
    return report


def _test_data(recipe: DistillRecipe, d: Distiller):
    from compact.data.sources.reference import open_reference, reference_base

    base = reference_base(recipe.data)
    if base is not None:
        return open_reference(f"{base}:test")
    return d.val_data if d.val_data is not None else d.train_data


def _tower_params(model) -> dict:
    """Parameters per tower of any teacher: compact/open_clip (`visual`) or Hugging Face (`vision_model`)."""
    inner = getattr(model, "model", model)
    total = count_parameters(model)
    if hasattr(inner, "visual"):
        image = count_parameters(inner.visual)
    elif hasattr(inner, "vision_model"):
        image = count_parameters(inner.vision_model) + count_parameters(inner.visual_projection)
    else:
        return {"image": None, "text": None, "total": total}
    return {"image": image, "text": total - image, "total": total}
