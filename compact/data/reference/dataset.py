"""Generate, store and read the reference benchmark.

On disk (one folder per size and seed):
    meta.json              what was generated, with a content hash
    {split}_images.npy     uint8 (N, S, S, 3)
    {split}.jsonl          per image: id, label, captions per language, the scene
    classes.json           class names and zero-shot prompts per language
Everything derives from the seed: the same config always writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from compact.data.reference import captions
from compact.data.reference.render import render
from compact.data.reference.scene import CLASSES, Scene, sample_scene
from compact.data.types import ClassificationView, EvalData
from compact.errors import DataError
from compact.utils.io import atomic_dir, read_json

KIND = "compact-reference"
GENERATOR_VERSION = 1  # bump whenever scenes, rendering or captions change
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ReferenceDataConfig:
    seed: int = 0
    image_size: int = 64
    n_train: int = 20000
    n_val: int = 1000
    n_test: int = 2000

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}

    def fingerprint(self) -> str:
        blob = json.dumps({**asdict(self), "generator": GENERATOR_VERSION, "langs": captions.LANGS}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


DATA_SIZES = {
    "full": ReferenceDataConfig(),
    "quick": ReferenceDataConfig(n_train=3000, n_val=300, n_test=600),
    # `compact run`'s default: a teacher worth compressing, built in about two minutes on 2 cores.
    "small": ReferenceDataConfig(n_train=8000, n_val=500, n_test=1000),
}


def scenes_for_split(cfg: ReferenceDataConfig, split: str) -> list[Scene]:
    # One stream per split: the quick test split is a prefix of the full one.
    rng = random.Random(f"compact-reference/{cfg.seed}/{split}")
    return [sample_scene(rng) for _ in range(cfg.split_sizes()[split])]


def _scene_json(scene: Scene) -> dict:
    return asdict(scene)


def build_reference_data(cfg: ReferenceDataConfig, out: Path, overwrite: bool = False,
                         progress: Optional[Callable[[str, int, int], None]] = None) -> Path:
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for split in SPLITS:
            scenes = scenes_for_split(cfg, split)
            images = np.empty((len(scenes), cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for i, scene in enumerate(scenes):
                    images[i] = render(scene, cfg.image_size)
                    caps = {lang: captions.caption(scene, lang) for lang in captions.LANGS}
                    f.write(json.dumps({"id": i, "label": scene.label, "captions": caps,
                                        "scene": _scene_json(scene)}, ensure_ascii=False) + "\n")
                    if progress and ((i + 1) % 500 == 0 or i + 1 == len(scenes)):
                        progress(f"render {split}", i + 1, len(scenes))
            np.save(tmp / f"{split}_images.npy", images, allow_pickle=False)
        classes = {
            "classes": [list(c) for c in CLASSES],
            "names": {lang: [captions.class_name(c, s, lang) for c, s in CLASSES] for lang in captions.LANGS},
            "prompts": {lang: [captions.class_prompts(c, s, lang) for c, s in CLASSES] for lang in captions.LANGS},
        }
        (tmp / "classes.json").write_text(json.dumps(classes, ensure_ascii=False, indent=1))
        digest = hashlib.sha256()
        for p in sorted(tmp.iterdir()):
            digest.update(p.name.encode())
            digest.update(p.read_bytes())
        meta = {"kind": KIND, "generator": GENERATOR_VERSION, "config": asdict(cfg), "langs": list(captions.LANGS),
                "splits": cfg.split_sizes(), "num_classes": len(CLASSES), "content_hash": digest.hexdigest()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def is_reference_data(path: Path) -> bool:
    try:
        return json.loads((Path(path) / "meta.json").read_text()).get("kind") == KIND
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def read_meta(path: Path) -> dict:
    meta = read_json(Path(path) / "meta.json", "rebuild it with `compact reference build`")
    if meta.get("kind") != KIND:
        raise DataError(f"{path} is not a reference benchmark folder; rebuild it with `compact reference build`")
    return meta


def load_split(path: Path, split: str) -> tuple[np.ndarray, list[dict]]:
    path = Path(path)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; the reference benchmark has {SPLITS}")
    try:
        images = np.load(path / f"{split}_images.npy", allow_pickle=False)
        with open(path / f"{split}.jsonl", encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
    except (OSError, ValueError) as e:
        raise DataError(f"reference data in {path} is unreadable ({e}); rebuild it with "
                        "`compact reference build --overwrite`") from None
    if len(images) != len(records):
        raise DataError(f"reference data in {path} is inconsistent ({len(images)} images, {len(records)} captions); "
                        "rebuild it with `compact reference build --overwrite`")
    return images, records


class ArrayImageSource:
    """Images held in a uint8 array (N, H, W, 3)."""

    def __init__(self, images: np.ndarray, prefix: str):
        self.images = images
        self.prefix = prefix

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index], "RGB")

    def key(self, index: int) -> str:
        return f"{self.prefix}/{index:06d}"


def reference_eval_data(path: Path, split: str = "test", limit: Optional[int] = None) -> EvalData:
    read_meta(path)
    images, records = load_split(path, split)
    if limit is not None:
        images, records = images[:limit], records[:limit]
    classes = read_json(Path(path) / "classes.json", "rebuild it with `compact reference build`")
    langs = list(records[0]["captions"]) if records else []
    pairs = {lang: [(r["id"], r["captions"][lang]) for r in records] for lang in langs}
    view = ClassificationView(labels=[int(r["label"]) for r in records], class_names=classes["names"],
                              prompts=classes["prompts"])
    return EvalData(name=f"reference:{split}", images=ArrayImageSource(images, split), pairs=pairs,
                    classification=view, parallel="en")
