"""Teacher-embedding cache (MobileCLIP-style): run the teacher once, reuse its outputs every epoch.

Layout of a cache folder:
    manifest.json            format, version, teacher hash, data hash, sizes, the shards written so far
    texts.json               the pivot-language texts whose embeddings are cached, in row order
    img_00000.safetensors    rows [0, shard_size) of the image embeddings (float32)
    txt_00000.safetensors    rows of the text embeddings

Shards are written atomically and the manifest is updated after each one, so a killed build resumes where it
stopped. Training checks both hashes and refuses a cache built from another teacher or other data.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from safetensors.torch import load_file, save_file

from compact.data.types import EvalData
from compact.distill.data import content_hash
from compact.errors import DataError
from compact.utils.io import read_json, write_json

log = logging.getLogger(__name__)

FORMAT = "compact-teacher-cache"
VERSION = 1
MANIFEST = "manifest.json"


def teacher_fingerprint(teacher) -> str:
    """A hash of the teacher's weights, architecture class and preprocessing."""
    h = hashlib.sha256(type(teacher).__name__.encode())
    h.update(repr(sorted(teacher.preprocess_cfg.to_dict().items())).encode())
    for name, t in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(data: EvalData, texts: Sequence[str]) -> str:
    keys = [data.images.key(i) for i in range(len(data.images))]
    return content_hash([data.name, *keys, "\x01", *texts])


@dataclass(frozen=True)
class CacheConfig:
    shard_size: int = 4096
    batch_size: int = 256


# progress(what, done, total)
CacheProgress = Callable[[str, int, int], None]


def build_cache(teacher, data: EvalData, texts: Sequence[str], out: Path, cfg: CacheConfig = CacheConfig(),
                overwrite: bool = False, progress: Optional[CacheProgress] = None) -> dict:
    """Embed every image of `data` and every text of `texts` with `teacher` into `out` (resumable)."""
    out = Path(out)
    texts = list(dict.fromkeys(texts))
    t_hash, d_hash = teacher_fingerprint(teacher), data_fingerprint(data, texts)
    n_img, n_txt = len(data.images), len(texts)
    manifest = {"format": FORMAT, "version": VERSION, "teacher_hash": t_hash, "data_hash": d_hash,
                "data": data.name, "n_images": n_img, "n_texts": n_txt, "dim": int(teacher.embed_dim),
                "teacher_logit_scale": float(teacher.logit_scale), "shard_size": cfg.shard_size,
                "done": {"img": [], "txt": []}}
    if (out / MANIFEST).is_file():
        old = read_json(out / MANIFEST, "delete the cache folder or pass --overwrite")
        same = all(old.get(k) == manifest[k] for k in ("format", "teacher_hash", "data_hash", "shard_size"))
        if same:
            manifest["done"] = old.get("done", manifest["done"])
            log.info("resuming teacher cache in %s", out)
        elif not overwrite:
            raise DataError(f"{out} holds a cache of another teacher or other data; pass --overwrite to rebuild it "
                            "or choose another --out")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} exists and is not empty; pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "texts.json", texts)
    write_json(out / MANIFEST, manifest)

    def shards(n: int) -> range:
        return range((n + cfg.shard_size - 1) // cfg.shard_size)

    total = len(shards(n_img)) + len(shards(n_txt))
    done_count = len(manifest["done"]["img"]) + len(manifest["done"]["txt"])
    for kind, n in (("img", n_img), ("txt", n_txt)):
        for s in shards(n):
            if s in manifest["done"][kind]:
                continue
            lo, hi = s * cfg.shard_size, min(n, (s + 1) * cfg.shard_size)
            rows = []
            for b in range(lo, hi, cfg.batch_size):
                e = min(hi, b + cfg.batch_size)
                if kind == "img":
                    rows.append(teacher.embed_images([data.images.load(i) for i in range(b, e)]).float())
                else:
                    rows.append(teacher.embed_texts(texts[b:e]).float())
            tmp = out / f".{kind}_{s:05d}.safetensors.tmp"
            save_file({"emb": torch.cat(rows).contiguous()}, str(tmp))
            tmp.replace(out / f"{kind}_{s:05d}.safetensors")
            manifest["done"][kind].append(s)
            write_json(out / MANIFEST, manifest)
            done_count += 1
            if progress:
                progress("teacher cache", done_count, total)
    return manifest


class TeacherCache:
    """Cached teacher embeddings, looked up by image index or by text."""

    def __init__(self, path: Path):
        path = Path(path)
        self.path = path
        self.manifest = read_json(path / MANIFEST, "build it with `compact distill cache`")
        if self.manifest.get("format") != FORMAT:
            raise DataError(f"{path} is not a compact teacher cache; build one with `compact distill cache`")
        if self.manifest.get("version", 0) > VERSION:
            raise DataError(f"{path} was written by a newer compact; upgrade compact or rebuild the cache")
        m = self.manifest
        for kind, n in (("img", m["n_images"]), ("txt", m["n_texts"])):
            need = (n + m["shard_size"] - 1) // m["shard_size"]
            if len(set(m["done"][kind])) < need:
                raise DataError(f"{path} is incomplete ({len(m['done'][kind])}/{need} {kind} shards); re-run "
                                "`compact distill cache` with the same arguments to finish it")
        self.texts = read_json(path / "texts.json", "rebuild the cache")
        self.text_row = {t: i for i, t in enumerate(self.texts)}
        self.images = self._load("img", m["n_images"])
        self.text_emb = self._load("txt", m["n_texts"])
        self.teacher_scale = float(m.get("teacher_logit_scale", 100.0))

    def _load(self, kind: str, n: int) -> torch.Tensor:
        shards = sorted(self.path.glob(f"{kind}_*.safetensors"))
        if not shards:
            return torch.zeros(0, self.manifest["dim"])
        try:
            t = torch.cat([load_file(str(s))["emb"] for s in shards])
        except Exception as e:  # safetensors raises several types on a corrupt file
            raise DataError(f"{self.path}: a {kind} shard is corrupt ({e}); rebuild with --overwrite") from None
        if len(t) != n:
            raise DataError(f"{self.path}: {len(t)} {kind} rows cached but the manifest says {n}; rebuild it")
        return t

    def check(self, teacher_hash: Optional[str], data_hash: str) -> None:
        m = self.manifest
        if teacher_hash is not None and m["teacher_hash"] != teacher_hash:
            raise DataError(f"the cache in {self.path} was built from a different teacher (hash {m['teacher_hash']}, "
                            f"this teacher is {teacher_hash}); rebuild it with `compact distill cache --overwrite`")
        if m["data_hash"] != data_hash:
            raise DataError(f"the cache in {self.path} was built from other data (hash {m['data_hash']}, this data is "
                            f"{data_hash}); rebuild it with `compact distill cache --overwrite`")

    def image(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx]

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        try:
            rows = [self.text_row[t] for t in texts]
        except KeyError as e:
            raise DataError(f"text {e.args[0]!r} is not in the teacher cache {self.path}; rebuild it with the same "
                            "data and --parallel files as training") from None
        return self.text_emb[rows]


class OnlineTeacher:
    """The same interface as TeacherCache, running the teacher on every batch (no cache)."""

    def __init__(self, teacher, data: EvalData):
        self.teacher, self.data = teacher, data
        self.teacher_scale = float(teacher.logit_scale)

    def image(self, idx: torch.Tensor) -> torch.Tensor:
        return self.teacher.embed_images([self.data.images.load(int(i)) for i in idx]).float()

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.teacher.embed_texts(list(texts)).float()
