"""Hugging Face `CLIPModel` (and CLIP-like models with get_image_features/get_text_features)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Sequence

import torch

from compact.errors import TeacherError
from compact.models.dual_encoder import DualEncoder, TokenBatch
from compact.models.preprocess import OPENAI_MEAN, OPENAI_STD, PreprocessConfig
from compact.models.teachers import (TeacherAdapter, TeacherOptions, check_no_pickle_only, register_teacher,
                                     unsafe_pickle_message)
from compact.models.teachers._hub import offline, offline_help

_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic", 0: "nearest"}


def _features(out) -> torch.Tensor:
    # transformers 5 returns an output object whose projected features are `.pooler_output`; 4.x a tensor.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class HFCLIPEncoder(DualEncoder):
    def __init__(self, model, tokenizer, preprocess_cfg: PreprocessConfig, context_length: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess_cfg = preprocess_cfg
        self.context_length = context_length
        self.embed_dim = int(model.config.projection_dim)

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                             return_tensors="pt")
        return TokenBatch(enc["input_ids"].long(), enc["attention_mask"].long())

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_text_features(input_ids=ids, attention_mask=mask))

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


def _preprocess_from_folder(path: Path | None, image_size: int) -> PreprocessConfig:
    """Read preprocessor_config.json when the folder has one; else CLIP's defaults at the model's size."""
    cfg = {}
    if path is not None and (path / "preprocessor_config.json").is_file():
        cfg = json.loads((path / "preprocessor_config.json").read_text())
    crop = cfg.get("crop_size", image_size)
    crop = crop.get("height", image_size) if isinstance(crop, dict) else crop
    return PreprocessConfig(image_size=int(crop), resize_mode="shortest",
                            interpolation=_PIL_RESAMPLE.get(cfg.get("resample", 3), "bicubic"),
                            mean=tuple(cfg.get("image_mean", OPENAI_MEAN)), std=tuple(cfg.get("image_std", OPENAI_STD)))


def load_hf_clip(model_id: str, options: TeacherOptions) -> HFCLIPEncoder:
    from transformers import AutoModel, AutoTokenizer

    local = Path(model_id).is_dir()
    local_only = local or offline()
    kw = dict(local_files_only=local_only, trust_remote_code=options.trust_remote_code, cache_dir=options.cache_dir)
    if not options.allow_pickle:
        if local:
            check_no_pickle_only(Path(model_id))
        kw["use_safetensors"] = True  # never unpickle pytorch_model.bin unless --allow-pickle
    try:
        model = AutoModel.from_pretrained(model_id, **kw)
        tokenizer = AutoTokenizer.from_pretrained(model_id, **kw)
    except pickle.UnpicklingError:
        raise TeacherError(unsafe_pickle_message(model_id)) from None
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "trust_remote_code" in str(e):
            raise TeacherError(f"{model_id} ships custom code; re-run with --trust-remote-code if you trust it") from None
        if not options.allow_pickle and "safetensors" in str(e).lower():
            raise TeacherError(f"{model_id} has no safetensors weights, only pickle-based ones; convert them to "
                               "safetensors, or pass --allow-pickle if you trust the file") from None
        if local:
            raise TeacherError(f"cannot load Hugging Face model from {model_id} ({first}); the folder needs "
                               "config.json, weights and tokenizer files (save_pretrained writes them)") from None
        raise TeacherError(f"Hugging Face model {model_id!r} is not available offline ({first}); "
                           f"{offline_help(model_id)}") from None
    if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
        raise TeacherError(f"{model_id} is a {type(model).__name__}, not a CLIP-style dual encoder "
                           "(it has no get_image_features/get_text_features)")
    vision = getattr(model.config, "vision_config", None)
    text = getattr(model.config, "text_config", None)
    image_size = int(getattr(vision, "image_size", 224))
    context = int(getattr(text, "max_position_embeddings", 77))
    pre = _preprocess_from_folder(Path(model_id) if local else None, image_size)
    return HFCLIPEncoder(model.eval(), tokenizer, pre, context)


@register_teacher
class HFTeacher(TeacherAdapter):
    name = "hf"
    prefix = "hf:"

    @classmethod
    def load(cls, spec: str, options: TeacherOptions) -> HFCLIPEncoder:
        return load_hf_clip(spec[len(cls.prefix):], options)


@register_teacher
class HFFolderTeacher(TeacherAdapter):
    """A folder written by `save_pretrained` whose config.json names a Hugging Face model type."""

    name = "hf_folder"

    @classmethod
    def matches(cls, spec: str) -> bool:
        cfg = Path(spec) / "config.json"
        if not cfg.is_file():
            return False
        try:
            return "model_type" in json.loads(cfg.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False

    @classmethod
    def load(cls, spec: str, options: TeacherOptions) -> HFCLIPEncoder:
        return load_hf_clip(spec, options)
