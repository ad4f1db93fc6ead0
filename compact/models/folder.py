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

from safetensors import SafetensorError
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
    model = CompactCLIP(cfg, load_tokenizer(path), pre, languages)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise ModelFormatError(f"{weights} is missing; the model folder is incomplete, re-save or re-download it")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFormatError(f"{weights} is corrupt ({str(e).splitlines()[0]}); re-save or re-download it") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise ModelFormatError(
            f"{weights} does not match config.json: {len(wrong)} tensors have other shapes, e.g. {k} is "
            f"{tuple(state[k].shape)} in the weights but {tuple(expected[k].shape)} in the config")
    if missing or unexpected:
        raise ModelFormatError(
            f"{weights} does not match config.json (missing {len(missing)} tensors e.g. {missing[:2]}, "
            f"unexpected {len(unexpected)} e.g. {unexpected[:2]}); the files come from different models")
    model.load_state_dict(state)
    if (path / "quantization.json").is_file():  # written by `compact quantize --runtime torch`
        from compact.quantize.torch_load import apply_quantization

        apply_quantization(model, path)
    return model.eval()
