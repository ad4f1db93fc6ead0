"""Use a compact ONNX export bundle with nothing but onnxruntime and numpy (Pillow only to read image files).

Copied into every ONNX bundle beside `compact_tokenizer.py`, so an app needs no torch, no compact and no
`tokenizers`:

    from compact_bundle import Bundle
    b = Bundle("bundles/student-onnx")
    q = b.embed_texts(["a red star", "ein roter Stern"])     # (2, D) float32, L2-normalised
    v = b.embed_images(["photo.jpg"])                        # needs Pillow to read the file
    v = b.embed_pixels(uint8_hwc_array)                      # or decoded RGB pixels, any size

Preprocessing repeats compact's (resize the short side, center-crop, normalise). The resize uses Pillow when it
is installed, exactly like the torch side, and a numpy bilinear fallback otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compact_tokenizer import BundleTokenizer  # noqa: E402


class Bundle:
    def __init__(self, folder: str, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0,
                 optimized: bool = False, spin: bool = False):
        """`spin=False` (default): worker threads sleep between calls instead of spinning. An app runs the image
        and text sessions back to back; a spinning pool left by one steals the cores the other needs (ViT-B/32,
        one photo then one query: see `python -m bench.photo_then_query` in compact's repo for the figures)."""
        import onnxruntime as ort

        self.folder = folder
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            self.manifest = json.load(f)
        if self.manifest.get("target") not in ("onnx", "tensorrt"):
            raise ValueError(f"{folder} is a {self.manifest.get('target')!r} bundle; compact_bundle.py runs ONNX bundles")
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.sessions = {}
        for entry in self.manifest["files"]:
            if entry["path"].endswith(".onnx") and bool(entry.get("optimized")) == optimized:
                path = os.path.join(folder, entry["path"])
                self.sessions.setdefault(entry["tower"], ort.InferenceSession(path, so, providers=list(providers)))
        self.pre = self.manifest["preprocess"]
        tok = self.manifest.get("tokenizer")
        self.tokenizer = BundleTokenizer.from_folder(folder) if tok else None
        self.pad_to = (tok or {}).get("pad_to", "longest")

    # text
    def tokenize(self, texts: Sequence[str]) -> dict:
        if self.tokenizer is None:
            raise ValueError("this bundle has no tokenizer; tokenize yourself and call run_text")
        ids, mask = self.tokenizer(list(texts), pad_to=self.pad_to)
        return {"input_ids": np.asarray(ids, dtype=np.int64), "attention_mask": np.asarray(mask, dtype=np.int64)}

    def run_text(self, feeds: dict) -> np.ndarray:
        return self.sessions["text"].run(None, feeds)[0]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.run_text(self.tokenize(texts))

    # images
    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        size = int(self.pre["image_size"])
        mean = np.asarray(self.pre["mean"], dtype=np.float32)[:, None, None]
        std = np.asarray(self.pre["std"], dtype=np.float32)[:, None, None]
        out = np.empty((len(images), 3, size, size), dtype=np.float32)
        for i, im in enumerate(images):
            arr = _resize_crop(np.asarray(im), size, self.pre["resize_mode"], self.pre["interpolation"])
            out[i] = (arr.astype(np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
        return out

    def run_image(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.sessions["image"].run(None, {"pixel_values": pixel_values})[0]

    def embed_pixels(self, *images: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB arrays of any size."""
        return self.run_image(self.preprocess(images))

    def embed_images(self, paths: Sequence[str]) -> np.ndarray:
        from PIL import Image

        return self.embed_pixels(*[np.asarray(Image.open(p).convert("RGB")) for p in paths])


def _resize_crop(arr: np.ndarray, size: int, mode: str, interpolation: str) -> np.ndarray:
    h, w = arr.shape[:2]
    if mode == "squash":
        new_w, new_h = size, size
    elif w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        arr = _resize(arr, new_w, new_h, interpolation)
    if mode == "squash":
        return arr
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return arr[top:top + size, left:left + size]


def _resize(arr: np.ndarray, w: int, h: int, interpolation: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        return _bilinear(arr, w, h)
    modes = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX}
    return np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((w, h), modes[interpolation]))


def _bilinear(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    """Plain bilinear resize for machines without Pillow (close to, not identical with, Pillow's filters)."""
    src_h, src_w = arr.shape[:2]
    ys = np.clip((np.arange(h) + 0.5) * src_h / h - 0.5, 0, src_h - 1)
    xs = np.clip((np.arange(w) + 0.5) * src_w / w - 0.5, 0, src_w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, src_h - 1), np.minimum(x0 + 1, src_w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    a = arr.astype(np.float32)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bot = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return np.clip(np.round(top * (1 - wy) + bot * wy), 0, 255).astype(np.uint8)
