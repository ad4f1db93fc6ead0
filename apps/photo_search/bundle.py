"""Load an ONNX export bundle through the `compact_bundle.py` it ships, imported by path (never `compact`).

    bundle = load_bundle("bundles/student-onnx")     # compact_bundle.Bundle
    q = bundle.embed_texts(["ein roter Stern"])        # (1, D) float32
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


class AppError(Exception):
    """A bad input to an app (missing bundle, empty folder, unknown dim, ...): one line, no traceback needed."""


MANIFEST = "manifest.json"
RUNNER = "compact_bundle.py"
TOKENIZER = "compact_tokenizer.py"


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The bundle's manifest.json, checked to be an ONNX bundle with an image and a text graph."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AppError(f"bundle folder {folder} does not exist; make one with `compact export onnx MODEL -o DIR`")
    path = folder / MANIFEST
    if not path.is_file():
        raise AppError(f"{folder} has no {MANIFEST}, so it is not an export bundle; "
                       "make one with `compact export onnx MODEL -o DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AppError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); re-export the bundle") from None
    if manifest.get("target") not in ("onnx", "tensorrt"):
        raise AppError(f"{folder} is a {manifest.get('target')!r} bundle; the apps need an ONNX bundle "
                       "(`compact export onnx MODEL -o DIR`)")
    towers = {f.get("tower") for f in manifest.get("files", []) if str(f.get("path", "")).endswith(".onnx")}
    missing = {"image", "text"} - towers
    if missing:
        raise AppError(f"{folder} has no {' and no '.join(sorted(missing))} ONNX graph; the apps need both towers")
    return manifest


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bundle_module(folder: str | Path) -> ModuleType:
    """The bundle's own compact_bundle.py as a module (its compact_tokenizer.py bound to it, not a stale copy
    from another bundle loaded earlier in this process)."""
    folder = Path(folder).resolve()
    for name in (RUNNER, TOKENIZER):
        if not (folder / name).is_file():
            raise AppError(f"{folder} has no {name}; re-export the bundle with `compact export onnx MODEL -o DIR`")
    tag = f"{abs(hash(str(folder))):x}"
    tokenizer = _load_module(f"compact_tokenizer_{tag}", folder / TOKENIZER)
    previous = sys.modules.get("compact_tokenizer")
    sys.modules["compact_tokenizer"] = tokenizer  # what compact_bundle.py's `from compact_tokenizer import` finds
    try:
        return _load_module(f"compact_bundle_{tag}", folder / RUNNER)
    finally:
        if previous is None:
            sys.modules.pop("compact_tokenizer", None)
        else:
            sys.modules["compact_tokenizer"] = previous


def load_bundle(folder: str | Path, threads: int = 0) -> Any:
    """A `compact_bundle.Bundle` for `folder` (validated first, so errors are one clear line)."""
    read_manifest(folder)
    return bundle_module(folder).Bundle(str(Path(folder)), threads=threads)
