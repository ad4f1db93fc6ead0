"""Bring your own dual encoder: `py:my_pkg.my_module:build` or `py:/path/to/file.py:build`.

The function is called with no arguments and returns either a `DualEncoder` or a dict with
    image_encoder: callable (B, 3, S, S) float -> (B, D)
    text_encoder:  callable (ids (B, L), mask (B, L)) -> (B, D)
    tokenize:      callable list[str] -> (ids, mask)
    embed_dim:     int
    preprocess:    dict of PreprocessConfig fields (optional; CLIP defaults at 224 otherwise)
    logit_scale:   float (optional, 100.0 by default)
This imports and runs your code, which is why it takes an explicit `py:` prefix.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from compact.errors import TeacherError
from compact.models.dual_encoder import DualEncoder, TokenBatch
from compact.models.preprocess import PreprocessConfig
from compact.models.teachers import TeacherAdapter, TeacherOptions, register_teacher

REQUIRED = ("image_encoder", "text_encoder", "tokenize", "embed_dim")


class CallableDualEncoder(DualEncoder):
    def __init__(self, parts: dict[str, Any]):
        super().__init__()
        self.image_encoder = parts["image_encoder"]
        self.text_encoder = parts["text_encoder"]
        # Register modules so .to()/.eval() reach them.
        self._mods = nn.ModuleList(m for m in (self.image_encoder, self.text_encoder) if isinstance(m, nn.Module))
        self._tokenize: Callable = parts["tokenize"]
        self.embed_dim = int(parts["embed_dim"])
        self.preprocess_cfg = PreprocessConfig(**parts.get("preprocess", {}))
        self._scale = float(parts.get("logit_scale", 100.0))

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        ids, mask = self._tokenize(list(texts))
        return TokenBatch(torch.as_tensor(ids).long(), torch.as_tensor(mask).long())

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(pixels)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(ids, mask)

    @property
    def logit_scale(self) -> float:
        return self._scale


def _resolve(target: str) -> Callable:
    mod_part, sep, fn_name = target.rpartition(":")
    if not sep or not mod_part or not fn_name:
        raise TeacherError(f"entry point {target!r} must look like py:package.module:function or py:file.py:function")
    try:
        if mod_part.endswith(".py"):
            path = Path(mod_part)
            if not path.is_file():
                raise TeacherError(f"entry point file {path} does not exist")
            spec = importlib.util.spec_from_file_location(f"compact_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(mod_part)
    except ImportError as e:
        raise TeacherError(f"cannot import {mod_part!r} for entry point ({e}); is it on PYTHONPATH?") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise TeacherError(f"{mod_part} has no callable {fn_name!r}")
    return fn


@register_teacher
class EntryPointTeacher(TeacherAdapter):
    name = "entrypoint"
    prefix = "py:"

    @classmethod
    def load(cls, spec: str, options: TeacherOptions) -> DualEncoder:
        result = _resolve(spec[len(cls.prefix):])()
        if isinstance(result, DualEncoder):
            return result
        if not isinstance(result, dict) or any(k not in result for k in REQUIRED):
            missing = [k for k in REQUIRED if not isinstance(result, dict) or k not in result]
            raise TeacherError(f"entry point {spec!r} must return a DualEncoder or a dict with {REQUIRED}; "
                               f"missing {missing}")
        return CallableDualEncoder(result)
