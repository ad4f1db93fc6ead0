"""Image preprocessing shared by every model, written with PIL and numpy only.

Written by hand rather than with torchvision transforms because the same steps must run in exported bundles,
where only numpy and a runtime are available; the arithmetic follows torchvision's Resize/CenterCrop on PIL
images so that torch-side and bundle-side pixels agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from compact.errors import ModelFormatError

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX}
RESIZE_MODES = ("shortest", "squash")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int = 224
    resize_mode: str = "shortest"  # "shortest": resize the short side then center-crop; "squash": resize both sides
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ModelFormatError(f"preprocess resize_mode {self.resize_mode!r} is not one of {RESIZE_MODES}")
        if self.interpolation not in _RESAMPLE:
            raise ModelFormatError(f"preprocess interpolation {self.interpolation!r} is not one of {tuple(_RESAMPLE)}")
        if self.image_size <= 0:
            raise ModelFormatError(f"preprocess image_size must be positive, got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelFormatError(f"preprocess.json has unknown keys {sorted(unknown)}; expected {sorted(known)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)


def resize_and_crop(image: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    size = cfg.image_size
    resample = _RESAMPLE[cfg.interpolation]
    if cfg.resize_mode == "squash":
        return image.resize((size, size), resample)
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def preprocess_array(images: Sequence[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    """RGB PIL images -> float32 array (N, 3, S, S), normalised."""
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    out = np.empty((len(images), 3, cfg.image_size, cfg.image_size), dtype=np.float32)
    for i, im in enumerate(images):
        arr = np.asarray(resize_and_crop(im.convert("RGB"), cfg), dtype=np.float32) / 255.0
        out[i] = (arr.transpose(2, 0, 1) - mean) / std
    return out


def preprocess_images(images: Sequence[Image.Image], cfg: PreprocessConfig) -> torch.Tensor:
    return torch.from_numpy(preprocess_array(images, cfg))


def normalize_uint8(batch: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """(N, H, W, 3) uint8 already at `cfg.image_size` -> normalised float (N, 3, H, W). Fast path for training."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
