"""What every language module provides, and the few helpers they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from compact.data.reference.scene import Scene

Structure = Callable[[Scene], str]


@dataclass(frozen=True)
class Writer:
    """One language: a caption for a scene, and the display name of a zero-shot class."""

    caption: Callable[[Scene], str]
    class_name: Callable[[str, str], str]  # (colour, shape) -> display name


def capitalise(text: str) -> str:
    """Upper-case the first character only (keeps German nouns and the rest as they are)."""
    return text[:1].upper() + text[1:]


def choose(scene: Scene, structures: Sequence[Structure]) -> str:
    """Write `scene` with the sentence structure that its `style` picks."""
    return structures[scene.style % len(structures)](scene)
