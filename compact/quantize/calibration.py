"""Calibration inputs with a per-language mix: every language's captions enter the activation ranges, so no
script is quantized with ranges measured on another one (the multilingual failure mode of int8 text towers)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from compact.models.dual_encoder import DualEncoder


@dataclass
class CalibrationSet:
    pixels: np.ndarray  # (N, 3, S, S) float32, preprocessed
    texts: dict[str, list[str]]  # lang -> captions
    text_feeds: list[dict[str, np.ndarray]]  # token batches, one per (language, chunk), padded per batch
    langs: list[str]
    feed_langs: list[str]  # the language of each text feed

    def image_feeds(self, batch: int = 8) -> list[dict[str, np.ndarray]]:
        return [{"pixel_values": self.pixels[s:s + batch]} for s in range(0, len(self.pixels), batch)]

    def feeds(self, tower: str, batch: int = 8) -> list[dict[str, np.ndarray]]:
        return self.image_feeds(batch) if tower == "image" else self.text_feeds


def calibration_set(model: DualEncoder, spec: str | None, n_images: int = 64, texts_per_lang: int = 32,
                    batch: int = 8, seed: int = 0) -> CalibrationSet:
    """From a data source (`spec`) or, when None, from the reference generator (no build needed)."""
    if spec:
        from compact.data.sources import open_eval_data

        data = open_eval_data(spec)
        rng = random.Random(seed)
        idx = sorted(rng.sample(range(len(data.images)), min(n_images, len(data.images))))
        images = [data.images.load(i) for i in idx]
        texts = {}
        for lang, pairs in data.pairs.items():
            caps = [c for _, c in pairs]
            texts[lang] = rng.sample(caps, min(texts_per_lang, len(caps)))
    else:
        from export.parity import reference_samples

        s = reference_samples(n_images, texts_per_lang, seed)
        images, texts = s.images, s.texts
    langs = sorted(texts)
    pixels = model.preprocess(images).numpy()
    feeds, feed_langs = [], []
    for lang in langs:
        caps = texts[lang]
        for s in range(0, len(caps), batch):
            tb = model.tokenize(caps[s:s + batch])
            if model.variable_length_text:
                tb = tb.trimmed()
            feed_langs.append(lang)
            feeds.append({"input_ids": tb.ids.numpy().astype(np.int64), "attention_mask": tb.mask.numpy().astype(np.int64)})
    return CalibrationSet(pixels, texts, feeds, langs, feed_langs)
