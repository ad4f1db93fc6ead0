"""Typed architecture config of a compact model; `config.json` in a model folder is exactly this."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional, Union

from compact.errors import ModelFormatError

FORMAT_NAME = "compact-clip"
FORMAT_VERSION = 1


MAX_INT = 1 << 22  # no architecture field is larger (vocabularies are ~250k); beyond it a config is hostile


def _matches(v: Any, tp: Any) -> bool:
    """`v` (from JSON) has the annotated type `tp`; ints are also bounded, so a config cannot ask for 10^30 rows."""
    origin = typing.get_origin(tp)
    if tp is Any or isinstance(tp, type) and tp.__name__ in ("VisionConfig", "TextConfig"):
        return True  # nested configs are checked by their own _from_dict
    if tp is type(None):
        return v is None
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:  # every int of an architecture is a positive size or count
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INT
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= MAX_INT
    if tp is str:
        return isinstance(v, str)
    if origin is Union:
        return any(_matches(v, a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(v, list) and len(v) <= 4096 and all(_matches(x, item) for x in v)
    return True


def _from_dict(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ModelFormatError(f"{where} must be a JSON object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)  # the annotations are strings (`from __future__ import annotations`)
    known = {f.name: hints[f.name] for f in fields(cls)}
    unknown = sorted(set(d) - set(known), key=str)
    if unknown:
        raise ModelFormatError(f"{where} has unknown keys {unknown}; known keys are {sorted(known)}")
    for k, v in d.items():
        if not _matches(v, known[k]):
            want = getattr(known[k], "__name__", str(known[k]).replace("typing.", ""))
            raise ModelFormatError(f"{where}: {k} = {v!r:.60} is not a valid {want}"
                                   f"{' in 1..' + str(MAX_INT) if 'int' in want else ''}")
    return cls(**d)


ACTIVATIONS = ("gelu", "quick_gelu")


def _check_act(act: str, tower: str) -> None:
    if act not in ACTIVATIONS:
        raise ModelFormatError(f"{tower}.act {act!r} must be one of {ACTIVATIONS}")


class _Layers:
    """Per-layer views of `heads` / `mlp_dim`, which are an int (uniform) or a list (one per layer)."""

    width: int
    depth: int
    heads: Union[int, list[int]]
    mlp_dim: Union[int, list[int]]
    head_dim: Optional[int]

    def heads_at(self, i: int) -> int:
        return self.heads[i] if isinstance(self.heads, list) else self.heads

    def mlp_at(self, i: int) -> int:
        return self.mlp_dim[i] if isinstance(self.mlp_dim, list) else self.mlp_dim

    @property
    def dim_per_head(self) -> int:
        if self.head_dim:
            return self.head_dim
        return self.width // (self.heads if isinstance(self.heads, int) else max(self.heads))


def _check_layers(c: _Layers, tower: str) -> None:
    if c.depth < 1:
        raise ModelFormatError(f"{tower}.depth must be >= 1 (got {c.depth}); a tower needs at least one block")
    for name in ("heads", "mlp_dim"):
        v = getattr(c, name)
        if isinstance(v, list) and len(v) != c.depth:
            raise ModelFormatError(f"{tower}.{name} lists {len(v)} layers but {tower}.depth is {c.depth}")
        if any(x < 1 for x in (v if isinstance(v, list) else [v])):
            raise ModelFormatError(f"{tower}.{name} must be >= 1 in every layer (a pruned-away layer is removed "
                                   "from depth instead)")
    if c.head_dim is None and isinstance(c.heads, int) and c.width % c.heads:
        raise ModelFormatError(f"{tower}.width {c.width} is not divisible by {tower}.heads {c.heads}; "
                               f"set {tower}.head_dim")


@dataclass
class VisionConfig(_Layers):
    type: str = "vit"  # "vit": compact's own ViT; "timm": any timm backbone plus a linear projection
    image_size: int = 64
    patch_size: int = 8
    width: int = 128
    depth: int = 4
    heads: Union[int, list[int]] = 4  # one count for every layer, or one per layer (after head pruning)
    mlp_dim: Union[int, list[int]] = 512  # FFN hidden size, or one per layer (after FFN pruning)
    head_dim: Optional[int] = None  # None: width // heads
    timm_name: Optional[str] = None  # used when type == "timm"
    act: str = "gelu"  # "gelu" or "quick_gelu" (OpenAI CLIP's x * sigmoid(1.702 x))

    def __post_init__(self) -> None:
        _check_act(self.act, "vision")
        if self.type not in ("vit", "timm"):
            raise ModelFormatError(f"vision.type {self.type!r} must be 'vit' or 'timm'")
        if self.type == "timm" and not self.timm_name:
            raise ModelFormatError("vision.type 'timm' needs vision.timm_name, e.g. 'mobilenetv4_conv_small'")
        if self.type == "vit":
            _check_layers(self, "vision")
            if self.image_size % self.patch_size:
                raise ModelFormatError(
                    f"vision.image_size {self.image_size} is not divisible by vision.patch_size {self.patch_size}")


@dataclass
class TextConfig(_Layers):
    vocab_size: int = 259
    context_length: int = 64
    width: int = 128
    depth: int = 4
    heads: Union[int, list[int]] = 4
    mlp_dim: Union[int, list[int]] = 512
    head_dim: Optional[int] = None
    pooling: str = "eos"  # "eos": the last real token; "mean": mean over real tokens; "first": the first token
    act: str = "gelu"  # "gelu" or "quick_gelu"

    def __post_init__(self) -> None:
        _check_act(self.act, "text")
        if self.pooling not in ("eos", "mean", "first"):
            raise ModelFormatError(f"text.pooling {self.pooling!r} must be 'eos', 'mean' or 'first'")
        _check_layers(self, "text")


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
        if not isinstance(d, dict):
            raise ModelFormatError(f"{where} must be a JSON object, got {type(d).__name__}")
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
