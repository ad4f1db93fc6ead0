"""open_clip models: built-in names with a pretrained tag or file, 'local-dir:' folders and 'hf-hub:' repos.

Covers the multilingual towers (xlm-roberta-base-ViT-B-32, nllb-clip-*) and MobileCLIP, since they are all
`open_clip.create_model` names; only their tokenizers differ, and `open_clip.get_tokenizer` picks those.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Sequence

import torch

from compact.errors import TeacherError
from compact.models.dual_encoder import DualEncoder, TokenBatch
from compact.models.preprocess import PreprocessConfig
from compact.models.teachers import (TeacherAdapter, TeacherOptions, check_no_pickle_only, register_teacher,
                                     unsafe_pickle_message)
from compact.models.teachers._hub import offline, offline_help

log = logging.getLogger(__name__)


def preprocess_from_open_clip(cfg: dict) -> PreprocessConfig:
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise TeacherError(f"open_clip resize_mode {mode!r} is not supported; use a model with 'shortest' or 'squash'")
    return PreprocessConfig(image_size=int(size), resize_mode=mode, interpolation=cfg.get("interpolation", "bicubic"),
                            mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


class OpenCLIPEncoder(DualEncoder):
    """Wraps an open_clip model and its tokenizer; embeddings are exactly open_clip's encode_image/encode_text."""

    def __init__(self, model, tokenizer, preprocess_cfg: PreprocessConfig, name: str):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess_cfg = preprocess_cfg
        self.name = name
        self.embed_dim = int(model.text_projection.shape[1]) if _has_tensor(model, "text_projection") \
            else int(model.encode_image(torch.zeros(1, 3, preprocess_cfg.image_size, preprocess_cfg.image_size)).shape[1])
        self.pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0)
        if hasattr(tokenizer, "tokenizer") and getattr(tokenizer.tokenizer, "pad_token_id", None) is not None:
            self.pad_id = int(tokenizer.tokenizer.pad_token_id)  # HF tokenizers inside open_clip (XLM-R pads with 1)

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        ids = self.tokenizer(list(texts)).long()
        mask = (ids != self.pad_id).long()
        return TokenBatch(ids, mask)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # open_clip derives the attention mask from the ids (pad/EOT positions) itself.
        return self.model.encode_text(ids)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


def _has_tensor(model, name: str) -> bool:
    return isinstance(getattr(model, name, None), torch.Tensor)


def load_open_clip(name: str, pretrained: str | None, options: TeacherOptions) -> OpenCLIPEncoder:
    import open_clip

    needs_hub = name.startswith("hf-hub:") or (pretrained is not None and not Path(pretrained).exists())
    if pretrained is not None and Path(pretrained).exists() and not pretrained.endswith(".safetensors") \
            and not options.allow_pickle:
        raise TeacherError(f"{pretrained} is a pickle-based checkpoint, which can run code when loaded; convert it "
                           "to safetensors, or pass --allow-pickle if you trust the file (open_clip then reads it "
                           "with torch.load(weights_only=True))")
    if name.startswith("local-dir:") and not options.allow_pickle and Path(name[len("local-dir:"):]).is_dir():
        check_no_pickle_only(Path(name[len("local-dir:"):]))
    if needs_hub and offline():
        _check_cached(name, pretrained)
    try:
        model = open_clip.create_model(name, pretrained=pretrained, device=options.device,
                                       cache_dir=options.cache_dir)
        tokenizer = open_clip.get_tokenizer(name, cache_dir=options.cache_dir)
    except pickle.UnpicklingError:
        raise TeacherError(unsafe_pickle_message(pretrained or name)) from None
    except (RuntimeError, OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = offline_help(name) if needs_hub or "hub" in msg.lower() or "offline" in msg.lower() \
            else "check the name with open_clip.list_models()"
        raise TeacherError(f"open_clip could not load {name!r} ({msg}); {hint}") from None
    pre = preprocess_from_open_clip(getattr(model.visual, "preprocess_cfg", {}) or
                                    {"size": 224, "mean": (0.48145466, 0.4578275, 0.40821073),
                                     "std": (0.26862954, 0.26130258, 0.27577711)})
    return OpenCLIPEncoder(model.eval(), tokenizer, pre, name)


def _check_cached(name: str, pretrained: str | None) -> None:
    """Offline: fail fast with a clear message instead of letting open_clip retry the hub."""
    import open_clip

    if name.startswith("hf-hub:"):
        raise TeacherError(f"open_clip model {name!r} needs the hub, and the network is off; {offline_help(name[7:])}")
    try:
        cfg = open_clip.get_pretrained_cfg(name, pretrained)
    except Exception:
        cfg = {}
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise TeacherError(f"open_clip has no pretrained tag {pretrained!r} for {name!r}; known tags: {tags}")
    hub_id = cfg.get("hf_hub", "").rstrip("/")
    try:
        from huggingface_hub import try_to_load_from_cache

        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(hub_id, fname)
            if isinstance(hit, str):
                return
    except Exception:  # pragma: no cover - no huggingface_hub or odd id
        pass
    raise TeacherError(
        f"open_clip weights {name}@{pretrained} are not in the local cache and the network is off; "
        f"{offline_help(hub_id or name)}, or pass open_clip:{name}@/path/to/open_clip_model.safetensors")


@register_teacher
class OpenCLIPTeacher(TeacherAdapter):
    name = "open_clip"
    prefix = "open_clip:"

    @classmethod
    def load(cls, spec: str, options: TeacherOptions) -> OpenCLIPEncoder:
        rest = spec[len(cls.prefix):]
        name, _, pretrained = rest.partition("@")
        return load_open_clip(name, pretrained or None, options)


@register_teacher
class OpenCLIPDirTeacher(TeacherAdapter):
    """A plain folder holding open_clip_config.json (open_clip's own local-dir layout)."""

    name = "open_clip_dir"

    @classmethod
    def matches(cls, spec: str) -> bool:
        return (Path(spec) / "open_clip_config.json").is_file()

    @classmethod
    def load(cls, spec: str, options: TeacherOptions) -> OpenCLIPEncoder:
        return load_open_clip(f"local-dir:{spec}", None, options)
