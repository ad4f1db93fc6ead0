"""The on-disk photo index: image embeddings from a bundle's image graph, searched with its text graph.

    INDEX/
      vectors.npy   (N, dim) float32 or float16, L2-normalised rows (truncated to `dim` first: Matryoshka)
      index.json    format, version, bundle (absolute path), root (the image folder), dim, embed_dim,
                    dtype, matryoshka_trained, paths (relative to root, '/'-separated, row order)

No pickle anywhere: `np.load(..., allow_pickle=False)` and JSON.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apps.photo_search.bundle import AppError, load_bundle, read_manifest

FORMAT = "compact-photo-index"
VERSION = 1
VECTORS = "vectors.npy"
META = "index.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DTYPES = ("float32", "float16")

Progress = Callable[[int, int], None]


class MatryoshkaWarning(UserWarning):
    """The index truncates embeddings to a dim the model was not trained for (quality may drop a lot)."""


def find_images(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursive, sorted, hidden files and folders skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AppError(f"image folder {folder} does not exist")
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames)
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    if not out:
        raise AppError(f"{folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return out


def check_dim(manifest: dict[str, Any], dim: int | None) -> tuple[int, bool]:
    """(the index dim, whether the model was trained for it). Trained dims come from the manifest's
    `matryoshka_dims` (the full embed_dim always counts as trained)."""
    full = int(manifest["embed_dim"])
    if dim is None or dim == full:
        return full, True
    trained = manifest.get("matryoshka_dims")
    if dim < 1 or dim > full:
        raise AppError(f"--dim {dim} is out of range: the bundle's embeddings have {full} dims "
                       f"(trained Matryoshka dims: {trained or 'none'})")
    if trained:
        trained = sorted({int(d) for d in trained} | {full})
        if dim not in trained:
            raise AppError(f"--dim {dim} is not one of the dims this model was trained for: "
                           f"{', '.join(map(str, trained))}")
        return dim, True
    warnings.warn(f"the bundle's manifest lists no matryoshka_dims, so the model was not trained for --dim {dim}; "
                  f"truncated embeddings may search much worse than the full {full}", MatryoshkaWarning, stacklevel=2)
    return dim, False


def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The first `dim` components of each row, L2-normalised again."""
    v = np.asarray(vectors, dtype=np.float32)[:, :dim]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


@dataclass
class IndexStats:
    images: int
    skipped: list[str] = field(default_factory=list)  # unreadable files, with the reason
    dim: int = 0
    dtype: str = "float32"
    vector_bytes: int = 0
    total_bytes: int = 0
    seconds: float = 0.0

    @property
    def bytes_per_image(self) -> float:
        return self.total_bytes / max(self.images, 1)

    @property
    def vector_bytes_per_image(self) -> float:
        return self.vector_bytes / max(self.images, 1)


def build_index(images: str | Path, bundle: str | Path, out: str | Path, dim: int | None = None,
                dtype: str = "float32", batch: int = 32, overwrite: bool = False,
                progress: Progress | None = None) -> IndexStats:
    """Embed every image under `images` with the bundle's image graph and write the index to `out`."""
    if dtype not in DTYPES:
        raise AppError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if batch < 1:
        raise AppError("batch must be at least 1")
    out = Path(out)
    if out.is_file():
        raise AppError(f"{out} is a file; the index is a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / META).is_file():
            raise AppError(f"{out} is a non-empty folder that holds no photo index; pick a new folder")
        if not overwrite:
            raise AppError(f"{out} already holds an index; pass --overwrite to replace it")
    manifest = read_manifest(bundle)
    index_dim, trained = check_dim(manifest, dim)
    files = find_images(images)
    model = load_bundle(bundle)
    from PIL import Image, UnidentifiedImageError

    t0 = time.perf_counter()
    root = Path(images).resolve()
    rows: list[np.ndarray] = []
    paths: list[str] = []
    skipped: list[str] = []
    for start in range(0, len(files), batch):
        chunk, pixels = [], []
        for f in files[start:start + batch]:
            try:
                with Image.open(f) as im:
                    pixels.append(np.asarray(im.convert("RGB")))
                chunk.append(f)
            except (OSError, UnidentifiedImageError) as e:
                skipped.append(f"{f}: {e}")
        if pixels:
            rows.append(truncate(model.embed_pixels(*pixels), index_dim))
            paths += [f.resolve().relative_to(root).as_posix() for f in chunk]
        if progress:
            progress(min(start + batch, len(files)), len(files))
    if not paths:
        raise AppError(f"none of the {len(files)} images under {images} could be read")
    vectors = np.concatenate(rows).astype(dtype)
    meta = {"format": FORMAT, "version": VERSION, "bundle": str(Path(bundle).resolve()),
            "model_sha256": (manifest.get("source") or {}).get("sha256"), "root": str(root),
            "dim": index_dim, "embed_dim": int(manifest["embed_dim"]), "dtype": dtype,
            "matryoshka_trained": trained, "paths": paths}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / (VECTORS + ".tmp"), "wb") as f:  # both files replaced only once both are written
        np.save(f, vectors, allow_pickle=False)
    (out / (META + ".tmp")).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(out / (VECTORS + ".tmp"), out / VECTORS)
    os.replace(out / (META + ".tmp"), out / META)
    total = (out / VECTORS).stat().st_size + (out / META).stat().st_size
    return IndexStats(images=len(paths), skipped=skipped, dim=index_dim, dtype=dtype, vector_bytes=vectors.nbytes,
                      total_bytes=total, seconds=time.perf_counter() - t0)


@dataclass
class Hit:
    rank: int
    row: int
    path: str  # relative to the index root
    score: float  # cosine similarity

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "row": self.row, "path": self.path, "name": Path(self.path).name,
                "score": round(self.score, 6)}


class PhotoIndex:
    """A written index, ready to search: `PhotoIndex.open(INDEX).search("ein roter Stern", k=5)`."""

    def __init__(self, folder: Path, meta: dict[str, Any], vectors: np.ndarray, bundle: Any):
        self.folder = folder
        self.meta = meta
        self.vectors = vectors.astype(np.float32)
        self.bundle = bundle
        self.paths: list[str] = list(meta["paths"])
        self.root = Path(meta["root"])
        self.dim = int(meta["dim"])

    @classmethod
    def open(cls, folder: str | Path, bundle: str | Path | None = None) -> PhotoIndex:
        """Read the index; the bundle is the one it was built with unless `bundle` names another (which must
        give the same embeddings: same model hash when both manifests have one)."""
        folder = Path(folder)
        meta_path, vec_path = folder / META, folder / VECTORS
        if not meta_path.is_file() or not vec_path.is_file():
            raise AppError(f"{folder} is not a photo index (no {META} / {VECTORS}); "
                           "build one with `python -m apps.photo_search index DIR --bundle BUNDLE -o INDEX`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise AppError(f"{meta_path} is not valid JSON ({e.msg}); rebuild the index") from None
        if meta.get("format") != FORMAT:
            raise AppError(f"{meta_path} is not a photo index (format {meta.get('format')!r})")
        vectors = np.load(vec_path, allow_pickle=False)
        if vectors.shape != (len(meta["paths"]), int(meta["dim"])):
            raise AppError(f"{vec_path} has shape {vectors.shape}, but {META} lists {len(meta['paths'])} images "
                           f"of dim {meta['dim']}; rebuild the index")
        bundle = Path(bundle) if bundle else Path(meta["bundle"])
        manifest = read_manifest(bundle)
        sha = (manifest.get("source") or {}).get("sha256")
        if sha and meta.get("model_sha256") and sha != meta["model_sha256"]:
            raise AppError(f"bundle {bundle} holds another model than the one that built {folder}; "
                           "search with the index's own bundle or rebuild the index")
        if int(manifest["embed_dim"]) < int(meta["dim"]):
            raise AppError(f"bundle {bundle} embeds {manifest['embed_dim']} dims, the index has {meta['dim']}")
        return cls(folder, meta, vectors, load_bundle(bundle))

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return truncate(self.bundle.embed_texts(list(queries)), self.dim)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The k images closest to `query` (any language the model knows), best first."""
        if not query.strip():
            raise AppError("the query is empty")
        if k < 1:
            raise AppError("k must be at least 1")
        scores = self.vectors @ self.embed_queries([query])[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [Hit(rank=i + 1, row=int(r), path=self.paths[r], score=float(scores[r])) for i, r in enumerate(order)]

    def image_path(self, row: int) -> Path:
        return self.root / self.paths[row]
