"""The calibration objective shared by data-driven metrics, and unit masking used by mope."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from compact.errors import DataError


def calibration_batches(model, calib, max_batches: int = 4):
    """(pixels, token batch, teacher image emb, teacher text emb) over the calibration data, pivot captions."""
    data = calib.data
    if data is None:
        raise DataError("this importance metric needs calibration data; pass --calib DATA")
    lang = data.parallel or next(iter(data.pairs))
    pairs = data.pairs[lang]
    n = min(len(pairs), calib.batch_size * max_batches)
    for s in range(0, n, calib.batch_size):
        chunk = pairs[s:s + calib.batch_size]
        imgs = [data.images.load(i) for i, _ in chunk]
        texts = [c for _, c in chunk]
        pixels = model.preprocess(imgs)
        t_img = t_txt = None
        if calib.teacher is not None and calib.teacher is not model:
            with torch.no_grad():
                t_img, t_txt = calib.teacher.embed_images(imgs), calib.teacher.embed_texts(texts)
        yield pixels, model.tokenize(texts), t_img, t_txt


def objective(model, pixels, tb, t_img, t_txt) -> torch.Tensor:
    """CLIP's InfoNCE on the calibration pairs, plus cosine distillation to the teacher when there is one."""
    img = F.normalize(model.encode_image(pixels), dim=-1)
    txt = F.normalize(model.encode_text(tb.ids, tb.mask), dim=-1)
    logits = model.log_logit_scale.exp() * img @ txt.T
    lab = torch.arange(len(img))
    loss = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab))
    if t_img is not None:
        loss = loss + (1 - (img * F.normalize(t_img, dim=-1)).sum(-1)).mean()
        loss = loss + (1 - (txt * F.normalize(t_txt, dim=-1)).sum(-1)).mean()
    return loss


def _tower(model, tower: str):
    return model.visual if tower == "vision" else model.text


@contextlib.contextmanager
def masked(model, tower: str, layer: int, kind: str, index=None):
    """Temporarily remove a unit by zeroing what it writes: a head's out-projection columns, FFN neurons' fc1
    rows (gelu(0) = 0), or a whole block's attention and FFN outputs (the block becomes the identity)."""
    blk = _tower(model, tower).blocks[layer]
    cfg = getattr(model.cfg, tower)
    saved = []

    def zero(name, t, sl):
        saved.append((t, sl, t.data[sl].clone()))
        t.data[sl] = 0

    if kind == "head":
        hd = cfg.dim_per_head
        zero("out", blk.attn.out.weight, (slice(None), slice(index * hd, (index + 1) * hd)))
    elif kind == "mlp":
        idx = torch.as_tensor(index)
        zero("fc1w", blk.fc1.weight, idx)
        zero("fc1b", blk.fc1.bias, idx)
    elif kind == "layer":
        for name, t in (("ow", blk.attn.out.weight), ("ob", blk.attn.out.bias), ("fw", blk.fc2.weight),
                        ("fb", blk.fc2.bias)):
            zero(name, t, slice(None))
    try:
        yield
    finally:
        for t, sl, val in reversed(saved):
            t.data[sl] = val
