"""The compact model folder: the one format every stage reads and writes.

    config.json          ModelConfig (both towers, embed dim, format version)
    model.safetensors    weights
    tokenizer_config.json (+ tokenizer.json for "hf" tokenizers)
    preprocess.json      PreprocessConfig
    languages.json       optional: the languages the model was trained for

Loading needs no network and no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from compact.errors import ModelFormatError
from compact.models.compact_clip import CompactCLIP
from compact.models.config import ModelConfig
from compact.models.preprocess import PreprocessConfig
from compact.models.tokenizer import load_tokenizer
from compact.utils.io import atomic_dir, read_json

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
PREPROCESS = "preprocess.json"
LANGUAGES = "languages.json"


def is_model_folder(path: Path) -> bool:
    path = Path(path)
    if not (path / CONFIG).is_file():
        return False
    try:
        return json.loads((path / CONFIG).read_text()).get("format") == "compact-clip"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def save_model(model: CompactCLIP, path: Path, overwrite: bool = False, extra_files: Optional[dict] = None) -> Path:
    """Write `model` to `path` atomically. `extra_files` maps file names to JSON-able objects (e.g. report.json)."""
    with atomic_dir(Path(path), overwrite=overwrite) as tmp:
        (tmp / CONFIG).write_text(json.dumps(model.cfg.to_dict(), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "compact-clip"})
        model.tokenizer.save(tmp)
        (tmp / PREPROCESS).write_text(json.dumps(model.preprocess_cfg.to_dict(), indent=2))
        if model.languages:
            (tmp / LANGUAGES).write_text(json.dumps(list(model.languages)))
        for name, obj in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False))
    return Path(path)


def _check_shapes(weights: Path, expected: dict, got: dict) -> None:
    wrong = [k for k in expected if k in got and got[k] != expected[k]]
    if wrong:
        k = wrong[0]
        raise ModelFormatError(
            f"{weights} does not match config.json: {len(wrong)} tensors have other shapes, e.g. {k} is "
            f"{got[k]} in the weights but {expected[k]} in the config")
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        raise ModelFormatError(
            f"{weights} does not match config.json (missing {len(missing)} tensors e.g. {missing[:2]}, "
            f"unexpected {len(unexpected)} e.g. {unexpected[:2]}); the files come from different models")


def load_model(path: Path) -> CompactCLIP:
    path = Path(path)
    if not path.is_dir():
        raise ModelFormatError(f"model folder {path} does not exist")
    cfg = ModelConfig.from_dict(read_json(path / CONFIG, "a compact model folder needs config.json"),
                                where=str(path / CONFIG))
    pre_raw = read_json(path / PREPROCESS, "a compact model folder needs preprocess.json")
    pre = PreprocessConfig.from_dict(pre_raw)
    languages = None
    if (path / LANGUAGES).is_file():
        languages = tuple(read_json(path / LANGUAGES, "languages.json lists the model's languages"))
    tokenizer = load_tokenizer(path)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise ModelFormatError(f"{weights} is missing; the model folder is incomplete, re-save or re-download it")
    # The config's shapes are checked against the weights' header on a skeleton that allocates nothing, so a
    # config asking for a huge model fails here instead of exhausting memory.
    with torch.device("meta"):
        skeleton = CompactCLIP(cfg, tokenizer, pre, languages)
    try:
        with safe_open(str(weights), "pt") as f:
            header = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFormatError(f"{weights} is corrupt ({str(e).splitlines()[0]}); re-save or re-download it") from None
    _check_shapes(weights, {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, header)
    del skeleton
    model = CompactCLIP(cfg, tokenizer, pre, languages)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFormatError(f"{weights} is corrupt ({str(e).splitlines()[0]}); re-save or re-download it") from None
    model.load_state_dict(state)
    if (path / "quantization.json").is_file():  # written by `compact quantize --runtime torch`
        from compact.quantize.torch_load import apply_quantization

        apply_quantization(model, path)
    return model.eval()
