"""Local multilingual photo search on a compact ONNX export bundle (`python -m apps.photo_search --help`).

The image graph embeds a photo folder into an on-disk index (`index.py`); the text graph embeds queries in any
language the model was distilled for; `server.py` serves a small web UI. Only the bundle's files are used
(`bundle.py` imports its `compact_bundle.py` by path), never compact's training code.
"""

from apps.photo_search.bundle import AppError, load_bundle, read_manifest
from apps.photo_search.index import Hit, IndexStats, PhotoIndex, build_index

__all__ = ["AppError", "Hit", "IndexStats", "PhotoIndex", "build_index", "load_bundle", "read_manifest"]
