"""What every data source hands to evaluation (and later to distillation and calibration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from PIL import Image


class ImageSource(Protocol):
    """Random access to images. `load(i)` returns a validated RGB image or raises DataError."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> Image.Image: ...

    def key(self, index: int) -> str: ...


@dataclass
class ListImageSource:
    """Images given as keys plus a loader (a path on disk, a member of a shard, ...)."""

    keys: list[str]
    loader: Callable[[str], Image.Image]

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> Image.Image:
        return self.loader(self.keys[index])

    def key(self, index: int) -> str:
        return self.keys[index]


@dataclass
class ClassificationView:
    """Zero-shot classification: a label per image (-1 = unlabelled) and class names per language."""

    labels: list[int]
    class_names: dict[str, list[str]]  # lang -> one display name per class
    prompts: dict[str, list[list[str]]]  # lang -> per class, the prompts whose embeddings are averaged

    @property
    def num_classes(self) -> int:
        return len(next(iter(self.class_names.values())))


@dataclass
class EvalData:
    """Images plus captions per language (the retrieval view) and optionally a classification view."""

    name: str
    images: ImageSource
    pairs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # lang -> [(image index, caption)]
    classification: Optional[ClassificationView] = None
    # When set (e.g. "en"), pairs[lang][j] translates pairs[parallel][j]: the data doubles as parallel text, and
    # teacher agreement compares the model on each language with the teacher on this pivot language.
    parallel: Optional[str] = None

    def languages(self) -> list[str]:
        langs = set(self.pairs)
        if self.classification is not None:
            langs |= set(self.classification.class_names)
        return sorted(langs)
