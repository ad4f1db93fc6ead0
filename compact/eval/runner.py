"""Evaluate any DualEncoder on any EvalData, per language."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from compact.data.types import EvalData
from compact.errors import CompactError
from compact.eval import metrics
from compact.models.dual_encoder import DualEncoder, check_texts
from compact.utils.memory import batch_must_fit

log = logging.getLogger(__name__)

# progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvalConfig:
    langs: Optional[tuple[str, ...]] = None  # None: every language the data has
    batch_size: int = 256
    ks: tuple[int, ...] = metrics.KS
    device: str = "cpu"


def resolve_langs(model: DualEncoder, data: EvalData, langs: Optional[Sequence[str]]) -> list[str]:
    have = data.languages()
    if not langs:
        return have
    missing = [lang for lang in langs if lang not in have]
    if missing:
        raise CompactError(f"language(s) {missing} are not in the data {data.name!r}, which has {have}; "
                           "drop them from --langs")
    if model.languages is not None:
        unknown = [lang for lang in langs if lang not in model.languages]
        if unknown:
            raise CompactError(f"the model was not trained for {unknown}; it declares {list(model.languages)}")
    return list(langs)


@torch.no_grad()
def embed_images(model: DualEncoder, data: EvalData, batch_size: int, device: str,
                 progress: Optional[Progress] = None) -> torch.Tensor:
    n = len(data.images)
    out = []
    for start in range(0, n, batch_size):
        imgs = [data.images.load(i) for i in range(start, min(n, start + batch_size))]
        with batch_must_fit(batch_size, "embedding images", "pass --batch-size {smaller}"):
            out.append(model.encode_image(model.preprocess(imgs).to(device)).float().cpu())
        if progress:
            progress("images", min(n, start + batch_size), n)
    return torch.cat(out) if out else torch.empty(0, model.embed_dim)


@torch.no_grad()
def embed_texts(model: DualEncoder, texts: Sequence[str], batch_size: int, device: str,
                progress: Optional[Progress] = None, stage: str = "texts") -> torch.Tensor:
    texts = check_texts(texts)
    out = []
    for start in range(0, len(texts), batch_size):
        tb = model.tokenize(texts[start:start + batch_size])
        if model.variable_length_text:
            tb = tb.trimmed()
        with batch_must_fit(batch_size, "embedding captions", "pass --batch-size {smaller}"):
            out.append(model.encode_text(tb.ids.to(device), tb.mask.to(device)).float().cpu())
        if progress:
            progress(stage, min(len(texts), start + batch_size), len(texts))
    return torch.cat(out) if out else torch.empty(0, model.embed_dim)


def evaluate(model: DualEncoder, data: EvalData, cfg: EvalConfig = EvalConfig(),
             teacher: Optional[DualEncoder] = None, progress: Optional[Progress] = None) -> dict:
    """Per-language zero-shot and retrieval, plus agreement with `teacher` when given. Returns report.json's dict."""
    t0 = time.perf_counter()
    langs = resolve_langs(model, data, cfg.langs)
    if teacher is not None and teacher.embed_dim != model.embed_dim:
        raise CompactError(f"agreement needs equal embedding dims, but the model has {model.embed_dim} and the "
                           f"teacher {teacher.embed_dim}; evaluate without --teacher")
    model.eval()
    img = embed_images(model, data, cfg.batch_size, cfg.device, progress)
    report: dict = {"data": data.name, "langs": langs, "n_samples": len(data.images), "n_texts": {},
                    "zero_shot": {}, "retrieval": {}}
    text_embs: dict[str, torch.Tensor] = {}
    for lang in langs:
        pairs = data.pairs.get(lang, [])
        if pairs:
            txt = embed_texts(model, [c for _, c in pairs], cfg.batch_size, cfg.device, progress, f"texts[{lang}]")
            text_embs[lang] = txt
            report["n_texts"][lang] = len(pairs)
            report["retrieval"][lang] = metrics.retrieval_metrics(img, txt, [i for i, _ in pairs], cfg.ks)
        view = data.classification
        if view is not None and lang in view.class_names:
            # Every class's prompts in one batched pass, then split back per class.
            flat = [t for p in view.prompts[lang] for t in p]
            embs = embed_texts(model, flat, cfg.batch_size, cfg.device)
            prompt_embs = list(torch.split(embs, [len(p) for p in view.prompts[lang]]))
            report["zero_shot"][lang] = metrics.zero_shot_accuracy(img, metrics.class_embeddings(prompt_embs),
                                                                   view.labels)
            if progress:
                progress(f"zero-shot[{lang}]", 1, 1)
    if teacher is not None:
        teacher.eval()
        t_img = embed_images(teacher, data, cfg.batch_size, cfg.device, progress)
        agreement = {"image_cos": metrics.mean_cosine(img, t_img), "text_cos": {}}
        pivot_cache: dict[str, torch.Tensor] = {}
        for lang, txt in text_embs.items():
            src = data.parallel if data.parallel and len(data.pairs.get(data.parallel, [])) == len(txt) else lang
            if src not in pivot_cache:
                pivot_cache[src] = embed_texts(teacher, [c for _, c in data.pairs[src]], cfg.batch_size, cfg.device)
            agreement["text_cos"][lang] = metrics.mean_cosine(txt, pivot_cache[src])
        if data.parallel:
            agreement["text_pivot"] = data.parallel
        report["agreement"] = agreement
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report
