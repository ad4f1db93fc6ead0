"""Typed architecture config of a compact model; `config.json` in a model folder is exactly this."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from compact.errors import ModelFormatError

FORMAT_NAME = "compact-clip"
FORMAT_VERSION = 1


def _from_dict(cls, d: dict[str, Any], where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ModelFormatError(f"{where} has unknown keys {unknown}; known keys are {sorted(known)}")
    return cls(**d)


@dataclass
class VisionConfig:
    type: str = "vit"  # "vit": compact's own ViT; "timm": any timm backbone plus a linear projection
    image_size: int = 64
    patch_size: int = 8
    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 512  # FFN hidden size; kept explicit (not a ratio) so pruning can change it per model
    timm_name: Optional[str] = None  # used when type == "timm"

    def __post_init__(self) -> None:
        if self.type not in ("vit", "timm"):
            raise ModelFormatError(f"vision.type {self.type!r} must be 'vit' or 'timm'")
        if self.type == "timm" and not self.timm_name:
            raise ModelFormatError("vision.type 'timm' needs vision.timm_name, e.g. 'mobilenetv4_conv_small'")
        if self.type == "vit":
            if self.width % self.heads:
                raise ModelFormatError(f"vision.width {self.width} is not divisible by vision.heads {self.heads}")
            if self.image_size % self.patch_size:
                raise ModelFormatError(
                    f"vision.image_size {self.image_size} is not divisible by vision.patch_size {self.patch_size}")


@dataclass
class TextConfig:
    vocab_size: int = 259
    context_length: int = 64
    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 512
    pooling: str = "eos"  # "eos": the last real token; "mean": mean over real tokens; "first": the first token

    def __post_init__(self) -> None:
        if self.pooling not in ("eos", "mean", "first"):
            raise ModelFormatError(f"text.pooling {self.pooling!r} must be 'eos', 'mean' or 'first'")
        if self.width % self.heads:
            raise ModelFormatError(f"text.width {self.width} is not divisible by text.heads {self.heads}")


@dataclass
class ModelConfig:
    embed_dim: int = 128
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    init_logit_scale: float = math.log(1 / 0.07)
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config.json") -> "ModelConfig":
        d = dict(d)
        if d.get("format") != FORMAT_NAME:
            raise ModelFormatError(f"{where} is not a compact model config (format={d.get('format')!r})")
        version = d.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{where} has format version {version!r}, newer than this compact reads ({FORMAT_VERSION}); "
                "upgrade compact: pip install -U compact-clip")
        vision = _from_dict(VisionConfig, d.pop("vision", {}), f"{where} 'vision'")
        text = _from_dict(TextConfig, d.pop("text", {}), f"{where} 'text'")
        return _from_dict(cls, {**d, "vision": vision, "text": text}, where)
