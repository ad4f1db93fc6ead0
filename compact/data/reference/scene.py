"""The vocabulary and the scene description of the reference benchmark.

A scene is pure data: the renderer (`render.py`) draws it and the caption writer (`captions.py`) describes it
in every language. Both read the same `Scene`, so a caption can never disagree with its image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "white")
SIZES: tuple[str, ...] = ("small", "large")
COUNTS: tuple[int, ...] = (1, 2, 3)
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
BACKGROUND_COLOURS: tuple[str, ...] = ("grey", "brown", "black")

# The zero-shot classes: one per (colour, shape) of the scene's main group, colour-major.
CLASSES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)


def class_index(colour: str, shape: str) -> int:
    return CLASSES.index((colour, shape))


@dataclass(frozen=True)
class ObjectGroup:
    shape: str
    colour: str
    count: int  # 1..3 identical objects
    size: str  # "small" | "large"


@dataclass(frozen=True)
class Scene:
    main: ObjectGroup
    position: str  # where the main group sits in the frame
    pattern: str  # background texture
    background: str  # background colour name
    distractor: Optional[ObjectGroup]  # one small object of another shape and colour, or None
    mention_background: bool  # whether captions describe the background
    mention_position: bool  # whether captions describe the position
    style: int  # picks a sentence structure per language; the facts stay the same
    seed: int  # jitter for rendering (exact placement, rotation, texture phase)

    @property
    def label(self) -> int:
        return class_index(self.main.colour, self.main.shape)


def sample_scene(rng: random.Random) -> Scene:
    """Draw one scene. Uses only `rng`, so a seed fixes the whole benchmark."""
    main = ObjectGroup(
        shape=rng.choice(SHAPES), colour=rng.choice(COLOURS), count=rng.choice(COUNTS), size=rng.choice(SIZES)
    )
    distractor = None
    if rng.random() < 0.35:
        distractor = ObjectGroup(
            shape=rng.choice([s for s in SHAPES if s != main.shape]),
            colour=rng.choice([c for c in COLOURS if c != main.colour]),
            count=1,
            size="small",
        )
    return Scene(
        main=main,
        position=rng.choice(POSITIONS),
        pattern=rng.choice(PATTERNS),
        background=rng.choice(BACKGROUND_COLOURS),
        distractor=distractor,
        mention_background=rng.random() < 0.5,
        mention_position=rng.random() < 0.6,
        style=rng.randrange(1 << 16),
        seed=rng.randrange(1 << 31),
    )
