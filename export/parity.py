"""Parity of an exported tower against the torch model, on real samples, per language for text.

Samples come from a data source the evaluation reads (`--data`), or by default from the reference benchmark's
generator (scenes rendered in memory and their captions in all 8 languages), so no build is needed.
Checked at batch sizes 1 and 7 and at three text lengths: the natural (longest-in-batch) length, texts cut
to 5 tokens, and padding to the full context.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from compact.models.dual_encoder import DualEncoder

BATCH_SIZES = (1, 7)
SHORT_LEN = 5


@dataclass
class Samples:
    images: list[Image.Image]
    texts: dict[str, list[str]]  # lang -> captions


def reference_samples(n_images: int = 8, n_texts: int = 7, seed: int = 0) -> Samples:
    from compact.data.reference.captions import LANGS, caption
    from compact.data.reference.render import render
    from compact.data.reference.scene import sample_scene

    rng = random.Random(seed)
    scenes = [sample_scene(rng) for _ in range(max(n_images, n_texts))]
    images = [Image.fromarray(render(s, 64)) for s in scenes[:n_images]]
    return Samples(images, {lang: [caption(s, lang) for s in scenes[:n_texts]] for lang in LANGS})


def data_samples(spec: str, n_images: int = 8, n_texts: int = 7) -> Samples:
    from compact.data.sources import open_eval_data

    data = open_eval_data(spec)
    idx = range(min(n_images, len(data.images)))
    texts = {lang: [c for _, c in pairs[:n_texts]] for lang, pairs in data.pairs.items() if pairs}
    return Samples([data.images.load(i) for i in idx], texts)


@dataclass
class TextInputs:
    """Token batches for one language: what the exported graph gets, and what the torch model gets."""

    lang: str
    length: str  # "natural" | "short" | "context"
    exported: dict[str, np.ndarray]
    reference: tuple[torch.Tensor, torch.Tensor]


def text_inputs(original: DualEncoder, texts: dict[str, list[str]], context: int, variable: bool,
                fixed: Optional[int] = None) -> list[TextInputs]:
    """Token batches per language at the lengths the graph must handle: with `fixed`, exactly that many tokens
    (cut with the EOS kept, or padded); else the full context, plus (for variable-length towers) the natural
    longest-in-batch length and a cut to SHORT_LEN tokens."""
    out = []
    for lang, caps in texts.items():
        full = original.tokenize(caps)  # the model's own tokenizer, padded to its context
        pad = _pad_id(full)
        longest = int(full.mask.sum(1).max())
        if fixed:
            cuts = {"fixed": fixed}
        else:
            cuts = {"context": full.ids.shape[1]}
            if variable:
                cuts["natural"] = longest
                cuts["short"] = SHORT_LEN
        for length, L in cuts.items():
            ids, mask = full.ids.clone(), full.mask.clone()
            if L < longest:  # cut to L tokens, keeping the EOS last as the tokenizer's truncation does
                for i in range(ids.shape[0]):
                    k = int(mask[i].sum())
                    if k > L:
                        ids[i, L - 1] = ids[i, k - 1].clone()
                        ids[i, L:] = pad
                        mask[i, L:] = 0
            e_ids, e_mask = ids[:, :L], mask[:, :L]
            if e_ids.shape[1] < L:  # a fixed length beyond the context cannot happen; pad defensively
                extra = L - e_ids.shape[1]
                e_ids = torch.cat([e_ids, torch.full((len(ids), extra), pad, dtype=ids.dtype)], 1)
                e_mask = torch.cat([e_mask, torch.zeros((len(ids), extra), dtype=mask.dtype)], 1)
            exp = {"input_ids": e_ids.numpy().astype(np.int64), "attention_mask": e_mask.numpy().astype(np.int64)}
            out.append(TextInputs(lang, length, exp, (ids, mask)))
    return out


def _pad_id(batch) -> int:
    padded = batch.ids[batch.mask == 0]
    return int(padded[0]) if padded.numel() else 0


@dataclass
class ParityResult:
    tower: str
    max_abs_err: float
    cosine_mean: float
    cosine_min: float
    retrieval_agreement: Optional[float]  # top-1 i2t agreement between torch and exported embeddings
    per_language: dict[str, dict] = field(default_factory=dict)
    checks: int = 0
    passed: bool = True
    min_cosine: float = 0.999

    def to_dict(self) -> dict:
        return {k: (round(v, 7) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def summary(self) -> str:
        return (f"{self.tower}: cosine mean {self.cosine_mean:.6f} min {self.cosine_min:.6f} (need >= {self.min_cosine}), "
                f"max abs err {self.max_abs_err:.2e}")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return (a * b).sum(-1)


@torch.no_grad()
def reference_embeddings(original: DualEncoder, samples: Samples, texts: list[TextInputs], normalize: bool):
    def norm(x):
        return F.normalize(x, dim=-1) if normalize else x

    pixels = original.preprocess(samples.images)
    img = norm(original.encode_image(pixels)).float().numpy()
    txt = [norm(original.encode_text(*t.reference)).float().numpy() for t in texts]
    return pixels.numpy(), img, txt


def check_image(run: Callable, pixels: np.ndarray, ref: np.ndarray, min_cosine: float,
                text_ref: Optional[np.ndarray] = None) -> ParityResult:
    cos: list[float] = []
    err, agree = 0.0, None
    for bs in BATCH_SIZES:
        got = np.concatenate([run({"pixel_values": pixels[s:s + bs]}) for s in range(0, len(pixels), bs)])
        cos.extend(_cos(got, ref).tolist())
        err = max(err, float(np.abs(got - ref).max()))
        if text_ref is not None and agree is None:
            agree = float(((got @ text_ref.T).argmax(1) == (ref @ text_ref.T).argmax(1)).mean())
    res = ParityResult("image", err, float(np.mean(cos)), float(np.min(cos)), agree, checks=len(cos),
                       min_cosine=min_cosine)
    res.passed = res.cosine_min >= min_cosine
    return res


def check_text(run: Callable, texts: list[TextInputs], refs: list[np.ndarray], min_cosine: float,
               image_ref: Optional[np.ndarray] = None) -> ParityResult:
    per: dict[str, dict] = {}
    all_cos, err = [], 0.0
    agree_hits, agree_n = 0, 0
    for t, ref in zip(texts, refs):
        n = len(ref)
        for bs in BATCH_SIZES:
            got = np.concatenate([run({k: v[s:s + bs] for k, v in t.exported.items()}) for s in range(0, n, bs)])
            c = _cos(got, ref)
            all_cos.extend(c.tolist())
            err = max(err, float(np.abs(got - ref).max()))
            d = per.setdefault(t.lang, {"cosine_min": 1.0, "max_abs_err": 0.0, "lengths": []})
            d["cosine_min"] = round(min(d["cosine_min"], float(c.min())), 7)
            d["max_abs_err"] = max(d["max_abs_err"], float(np.abs(got - ref).max()))
            if t.length not in d["lengths"]:
                d["lengths"].append(t.length)
            if image_ref is not None and t.length != "short":
                agree_hits += int(((image_ref @ got.T).argmax(1) == (image_ref @ ref.T).argmax(1)).sum())
                agree_n += len(image_ref)
    res = ParityResult("text", err, float(np.mean(all_cos)), float(np.min(all_cos)),
                       agree_hits / agree_n if agree_n else None, per, len(all_cos), min_cosine=min_cosine)
    res.passed = res.cosine_min >= min_cosine
    return res
