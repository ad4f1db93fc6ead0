"""Inputs for a tower at a batch size: real samples (the reference generator's scenes and their captions in
every language, preprocessed and tokenized as an app would) or synthetic tensors with the manifest's shapes.

The tokenizer is the bundle's own: its `compact_tokenizer.py` reader when present (what apps use), else
compact's tokenizer loaded from the bundle's `tokenizer_config.json`.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from compact.errors import CompactError

log = logging.getLogger(__name__)

INPUT_SOURCES = ("real", "synthetic")


@dataclass
class InputConfig:
    source: str = "real"  # "real": reference scenes and captions; "synthetic": random tensors of the right shape
    seq: Optional[int] = None  # synthetic text length (default: 16, within the bundle's range)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in INPUT_SOURCES:
            raise CompactError(f"input source {self.source!r} is not one of {', '.join(INPUT_SOURCES)}")
        if self.seq is not None and self.seq < 2:
            raise CompactError(f"text length must be at least 2 (BOS/EOS), got {self.seq}")


@dataclass
class BundleTokenizer:
    """texts -> (ids, mask) int64 arrays, padded as the manifest says."""

    kind: str  # "compact_tokenizer.py" | "compact"
    fn: Callable[[list[str]], tuple[np.ndarray, np.ndarray]]

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.fn(texts)


def load_tokenizer(bundle: Path, manifest: dict) -> Optional[BundleTokenizer]:
    tok = manifest.get("tokenizer")
    if not tok:
        return None
    pad_to = tok.get("pad_to", "longest")
    reader = Path(bundle) / tok.get("reader", "compact_tokenizer.py")
    std = _standalone(reader)
    if std is not None:
        bt = std.from_folder(str(bundle))

        def run_std(texts):
            ids, mask = bt(list(texts), pad_to=pad_to)
            return np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.int64)

        return BundleTokenizer("compact_tokenizer.py", run_std)
    from compact.models.tokenizer import load_tokenizer as compact_tokenizer

    ct = compact_tokenizer(Path(bundle))
    fixed = tok.get("fixed_length")

    def run_compact(texts):
        batch = ct(list(texts))
        ids, mask = batch.ids.numpy(), batch.mask.numpy()
        n = fixed or (int(mask.sum(1).max()) if pad_to == "longest" else ids.shape[1])
        return ids[:, :n].astype(np.int64), mask[:, :n].astype(np.int64)

    return BundleTokenizer("compact", run_compact)


def _standalone(reader: Path):
    """The bundle's standard-library tokenizer class, when the file is there and defines it."""
    if not reader.is_file():
        return None
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_tok_{abs(hash(str(reader)))}", reader)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except Exception as e:  # a broken or partial reader: fall back to compact's own tokenizer
        log.info("cannot use %s (%s); tokenizing with compact", reader, e)
        return None
    return getattr(mod, "BundleTokenizer", None)


@lru_cache(maxsize=4)
def _samples(n: int):
    from export.parity import reference_samples

    return reference_samples(n_images=n, n_texts=n)


def sample_images(n: int = 8) -> list:
    return list(_samples(8).images)[:n] if n <= 8 else [(_samples(8).images)[i % 8] for i in range(n)]


def sample_texts() -> list[str]:
    return [t for caps in _samples(8).texts.values() for t in caps]


def preprocess(manifest: dict, images: list) -> np.ndarray:
    from compact.models.preprocess import PreprocessConfig, preprocess_array

    return preprocess_array(images, PreprocessConfig.from_dict(manifest["preprocess"]))


def _cycle(items: list, n: int) -> list:
    return [items[i % len(items)] for i in range(n)]


def tower_feeds(bundle: Path, manifest: dict, tower: str, batch: int, cfg: InputConfig = InputConfig(),
                tokenizer: Optional[BundleTokenizer] = None) -> dict[str, np.ndarray]:
    """Feeds for one call of `tower` on `batch` samples."""
    if tower == "image":
        if cfg.source == "real":
            return {"pixel_values": preprocess(manifest, _cycle(sample_images(8), batch))}
        size = int(manifest["preprocess"]["image_size"])
        rng = np.random.default_rng(cfg.seed)
        return {"pixel_values": rng.standard_normal((batch, 3, size, size), dtype=np.float32)}
    if cfg.source == "real":
        tokenizer = tokenizer or load_tokenizer(bundle, manifest)
        if tokenizer is None:
            raise CompactError("the bundle has no tokenizer, so real texts cannot be fed; use synthetic inputs")
        ids, mask = tokenizer(_cycle(sample_texts(), batch))
        return {"input_ids": ids, "attention_mask": mask}
    seq = text_length(manifest, cfg.seq)
    rng = np.random.default_rng(cfg.seed)
    ids = rng.integers(3, 256, size=(batch, seq), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), dtype=np.int64)}


def text_length(manifest: dict, want: Optional[int]) -> int:
    """The synthetic text length: fixed by the bundle, else `want` (default 16) clipped to its range."""
    entry = next((f for f in manifest["files"] if f["tower"] == "text"), None)
    if entry is None:
        return want or 16
    shape = entry["inputs"][0]["shape"]
    if isinstance(shape[1], int):
        return shape[1]
    axis = entry["inputs"][0].get("dynamic_axes", {}).get("1", {})
    lo, hi = int(axis.get("min", 2)), int(axis.get("max", 77))
    return max(lo, min(hi, want or 16))


def fixed_batch(manifest: dict, tower: str) -> Optional[int]:
    """The frozen batch size of `tower`'s graphs, or None when the batch axis is dynamic."""
    entry = next((f for f in manifest["files"] if f["tower"] == tower), None)
    if entry is None:
        return None
    b = entry["inputs"][0]["shape"][0]
    return b if isinstance(b, int) else None
