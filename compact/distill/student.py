"""Build the student: its config from the recipe, its tokenizer, and weights inherited from the teacher
(TinyCLIP-style: chosen layers, heads, FFN neurons and channels, by magnitude) where the shapes allow."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from compact.distill.recipe import StudentSpec
from compact.distill.tokenizers import StudentTokenizer
from compact.errors import CompactError
from compact.models.compact_clip import CompactCLIP, count_parameters
from compact.models.config import ModelConfig, TextConfig, VisionConfig
from compact.models.surgery import SlicePlan, TowerPlan, head_scores, mlp_scores, slice_model, top, width_scores

log = logging.getLogger(__name__)


def _pick_layers(n_src: int, n: int, how: str) -> list[int]:
    if how == "first":
        return list(range(n))
    if how != "uniform":
        raise CompactError(f"inherit_layers {how!r} must be 'uniform' or 'first'")
    if n == 1:
        return [n_src - 1]
    return sorted({round(i * (n_src - 1) / (n - 1)) for i in range(n)})


def _towers(spec: StudentSpec) -> list[str]:
    if spec.inherit is True:
        return ["vision", "text"] if spec.vision.type == "vit" else ["text"]
    if spec.inherit is False:
        return []
    bad = [t for t in spec.inherit if t not in ("vision", "text")]
    if bad:
        raise CompactError(f"inherit lists {bad}; use true, false or a list of 'vision' and 'text'")
    return list(spec.inherit)


def student_config(spec: StudentSpec, tok: StudentTokenizer, teacher_cfg: ModelConfig | None,
                   teacher_embed_dim: int, teacher_image_size: int) -> ModelConfig:
    v, t = spec.vision, spec.text
    tv = teacher_cfg.vision if teacher_cfg is not None and teacher_cfg.vision.type == "vit" else None
    vision = VisionConfig(type=v.type, image_size=v.image_size or teacher_image_size,
                          patch_size=v.patch_size or (tv.patch_size if tv else 8), width=v.width, depth=v.depth,
                          heads=v.heads, mlp_dim=v.mlp_dim, timm_name=v.timm_name,
                          act=tv.act if tv else "gelu")
    text = TextConfig(vocab_size=tok.tokenizer.vocab_size, context_length=tok.tokenizer.context_length,
                      width=t.width, depth=t.depth, heads=t.heads, mlp_dim=t.mlp_dim, pooling=t.pooling,
                      act=teacher_cfg.text.act if teacher_cfg is not None else "gelu")
    return ModelConfig(embed_dim=spec.embed_dim or teacher_embed_dim, vision=vision, text=text)


def _check_inherit(tower: str, s, t, errors: list[str]) -> None:
    if tower == "vision":
        if t.type != "vit" or s.type != "vit":
            errors.append("vision: only ViT towers inherit (student or teacher is not a ViT)")
            return
        for k in ("patch_size", "image_size"):
            if getattr(s, k) != getattr(t, k):
                errors.append(f"vision.{k} {getattr(s, k)} != teacher {getattr(t, k)}")
    for k in ("width", "depth"):
        if getattr(s, k) > getattr(t, k):
            errors.append(f"{tower}.{k} {getattr(s, k)} > teacher {getattr(t, k)}")
    if max(s.heads_at(i) for i in range(s.depth)) > min(t.heads_at(i) for i in range(t.depth)):
        errors.append(f"{tower}.heads {s.heads} > teacher {t.heads}")
    if s.dim_per_head != t.dim_per_head:
        errors.append(f"{tower} head dim {s.dim_per_head} (width/heads) != teacher {t.dim_per_head}")
    if max(s.mlp_at(i) for i in range(s.depth)) > min(t.mlp_at(i) for i in range(t.depth)):
        errors.append(f"{tower}.mlp_dim {s.mlp_dim} > teacher {t.mlp_dim}")


def build_student(spec: StudentSpec, tok: StudentTokenizer, teacher, languages, seed: int = 0
                  ) -> tuple[CompactCLIP, dict]:
    from compact.models.convert import to_compact

    towers = _towers(spec)
    tc = None
    if towers or spec.vision.patch_size is None:
        try:
            tc = to_compact(teacher)
        except CompactError:
            if towers:
                raise
    cfg = student_config(spec, tok, tc.cfg if tc is not None else None, teacher.embed_dim,
                         teacher.preprocess_cfg.image_size)
    pre = replace(teacher.preprocess_cfg, image_size=cfg.vision.image_size)
    torch.manual_seed(seed)
    student = CompactCLIP(cfg, tok.tokenizer, pre, tuple(languages))
    report = {"inherited": towers, "layers": {}}
    if towers:
        errors: list[str] = []
        for tower in towers:
            _check_inherit(tower, getattr(cfg, tower), getattr(tc.cfg, tower), errors)
        if cfg.embed_dim > tc.cfg.embed_dim:
            errors.append(f"embed_dim {cfg.embed_dim} > teacher {tc.cfg.embed_dim}")
        if errors:
            raise CompactError("the student cannot inherit from the teacher: " + "; ".join(errors) +
                               ". Change those dims or set student.inherit to false or to the other tower")
        plan = SlicePlan(context_length=cfg.text.context_length)
        if cfg.embed_dim < tc.cfg.embed_dim:
            rows = tc.visual.proj.weight.detach().pow(2).sum(1) + tc.text.proj.weight.detach().pow(2).sum(1)
            plan.embed = top(rows, cfg.embed_dim)
        for tower in ("vision", "text"):
            s, t = getattr(cfg, tower), getattr(tc.cfg, tower)
            if tower not in towers:
                continue
            layers = _pick_layers(t.depth, s.depth, spec.inherit_layers)
            tp = TowerPlan(layers=layers, width=top(width_scores(tc, tower), s.width) if s.width < t.width else None)
            for j, i in enumerate(layers):
                if s.heads_at(j) < t.heads_at(i):
                    tp.heads[i] = top(head_scores(tc, tower, i), s.heads_at(j))
                if s.mlp_at(j) < t.mlp_at(i):
                    tp.mlp[i] = top(mlp_scores(tc, tower, i), s.mlp_at(j))
            setattr(plan, tower, tp)
            report["layers"][tower] = layers
        plan.vocab = tok.teacher_rows if tok.teacher_rows is not None else [0] * cfg.text.vocab_size
        sliced = slice_model(tc, plan, tokenizer=tok.tokenizer)
        state = student.state_dict()
        src = sliced.state_dict()
        prefixes = tuple({"vision": "visual.", "text": "text."}[t] for t in towers)
        copied = 0
        for k in state:
            if not k.startswith(prefixes) and k != "log_logit_scale":
                continue
            if k == "text.tok.weight" and tok.teacher_rows is None:
                continue  # a new vocabulary: its rows have no teacher counterpart
            if k in src and src[k].shape == state[k].shape:
                state[k] = src[k]
                copied += src[k].numel()
        student.load_state_dict(state)
        report["inherited_parameters"] = copied
    report["parameters"] = {"image": count_parameters(student.visual), "text": count_parameters(student.text),
                            "total": count_parameters(student)}
    log.info("student: %s parameters (image %s, text %s); inherited towers: %s", report["parameters"]["total"],
             report["parameters"]["image"], report["parameters"]["text"], towers or "none")
    return student, report


def architecture_only(teacher_spec: str) -> str:
    """The teacher spec with its pretrained weights dropped, for building offline at random init:
    open_clip:NAME@TAG -> open_clip:NAME. Hugging Face ids need the hub for their config and tokenizer."""
    if teacher_spec.startswith("open_clip:"):
        return teacher_spec.split("@", 1)[0]
    if teacher_spec.startswith("reference"):
        return teacher_spec  # built here from its own recipe
    raise CompactError(f"cannot build teacher {teacher_spec!r} offline at random init; pass an open_clip "
                       "architecture of the same shape instead (e.g. --teacher open_clip:ViT-B-32 for "
                       "hf:openai/clip-vit-base-patch32)")


def random_init_student(recipe, teacher=None, corpus_scenes: int = 400) -> tuple[CompactCLIP, dict]:
    """The student a distill recipe builds, at random init and offline: for latency and size (neither depends on
    the weights). The teacher is the recipe's architecture without its pretrained weights (or `teacher`, a spec or a
    DualEncoder); the tokenizer is the recipe's kind fitted on the reference benchmark's captions in the recipe's
    languages (a trimmed vocabulary is then smaller than on real data; its context length is what those captions
    need)."""
    import random

    from compact.data.reference.captions import LANGS, caption
    from compact.data.reference.scene import sample_scene
    from compact.distill.tokenizers import TokenizerConfig, build_student_tokenizer
    from compact.models.teachers import load_teacher

    if teacher is None or isinstance(teacher, str):
        teacher = load_teacher(architecture_only(teacher or recipe.teacher))
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(corpus_scenes)]
    langs = [lang for lang in recipe.langs if lang in LANGS] or ["en"]
    corpus = list(dict.fromkeys(caption(s, lang) for s in scenes for lang in langs))
    spec = recipe.student.tokenizer
    tok = build_student_tokenizer(TokenizerConfig(spec.kind, spec.context_length, spec.vocab_size), corpus, teacher)
    student, report = build_student(recipe.student, tok, teacher, recipe.langs, recipe.seed)
    report["tokenizer"] = tok.report
    return student.eval(), report
