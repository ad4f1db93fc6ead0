"""The distillation recipe: typed, loaded from YAML with line-numbered errors. `recipes/*.yaml` ship examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from compact.data.reference.captions import LANGS
from compact.errors import CompactError
from compact.utils.config import load_recipe_file

STAGES = ("text", "vision", "align")


@dataclass
class StageConfig:
    """One training stage. `text`: parallel text only, student text tower learns the teacher's English embedding
    (M-CLIP). `vision`: images only, student image tower learns the teacher's image embedding. `align`:
    image-caption pairs in every language, both towers (DC-CLIP's final stage)."""

    name: str = "text"
    steps: int = 500
    epochs: Optional[float] = None  # if set, overrides steps: passes over the stage's data (parallel rows or images)
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    losses: dict[str, float] = field(default_factory=lambda: {"feature_cosine": 1.0})
    loss_params: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in STAGES:
            raise CompactError(f"stage name {self.name!r} must be one of {STAGES}")
        for k in ("steps", "batch_size"):
            if getattr(self, k) < 1:
                raise CompactError(f"stage {self.name}: {k} must be >= 1")
        if not self.losses:
            raise CompactError(f"stage {self.name} has no losses")
        extra = sorted(set(self.loss_params) - set(self.losses))
        if extra:
            raise CompactError(f"stage {self.name}: loss_params for {extra}, which are not in its losses")


@dataclass
class TokenizerSpec:
    kind: str = "trimmed"  # trimmed | trained | bytes
    context_length: Optional[int] = None  # None: the longest corpus text, rounded up to a multiple of 8
    vocab_size: int = 4000  # trained only


@dataclass
class VisionSpec:
    type: str = "vit"
    image_size: Optional[int] = None  # None: the teacher's
    patch_size: Optional[int] = None  # None: the teacher's
    width: int = 96
    depth: int = 3
    heads: int = 3
    mlp_dim: int = 384
    timm_name: Optional[str] = None


@dataclass
class TextSpec:
    width: int = 96
    depth: int = 3
    heads: int = 3
    mlp_dim: int = 384
    pooling: str = "eos"


@dataclass
class StudentSpec:
    embed_dim: Optional[int] = None  # None: the teacher's (needed for agreement and for the teacher's space)
    vision: VisionSpec = field(default_factory=VisionSpec)
    text: TextSpec = field(default_factory=TextSpec)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    inherit: Union[bool, list[str]] = True  # True / False / a list of towers: ["vision", "text"]
    inherit_layers: str = "uniform"  # uniform: evenly spaced teacher layers; first: the first ones


@dataclass
class DistillRecipe:
    teacher: str = "reference"
    data: str = "reference"  # training images + captions: "reference" or any source with a pivot language
    train_limit: Optional[int] = None  # use only the first N training images (reference data)
    val_data: Optional[str] = None  # None: the reference val split (or no periodic validation for other data)
    parallel: list[str] = field(default_factory=list)  # extra parallel-text TSVs for the text stage
    captions_file: Optional[str] = None  # English captions (id, caption) ...
    translations_file: Optional[str] = None  # ... plus translations (id, lang, text): more parallel text
    langs: list[str] = field(default_factory=lambda: list(LANGS))
    student: StudentSpec = field(default_factory=StudentSpec)
    # Start from this compact model folder instead of building a student (e.g. recovery after pruning).
    student_init: Optional[str] = None
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    seed: int = 0
    bf16: bool = True  # bf16 autocast where the CPU/GPU supports it
    # Text batches are split into this many groups of similar length, each padded only to its own longest text
    # (1: one group, padded to the batch's longest). The embeddings are the same either way (causal attention
    # never sees the padding); reference-small's parallel texts average 42 tokens but a batch of 256 usually holds
    # one of 120-145, so one group spends about two thirds of its compute on padding.
    length_groups: int = 4
    val_every: int = 250  # steps; 0 = only at the end of each stage
    val_limit: int = 500  # images of the val split used for periodic validation
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        if not self.langs:
            raise CompactError("langs is empty; list the target languages, e.g. [en, de, zh]")
        if not self.stages:
            raise CompactError("the recipe has no stages")
        if self.length_groups < 1:
            raise CompactError(f"length_groups must be >= 1, got {self.length_groups}")


def load_recipe(path: Union[str, Path]) -> DistillRecipe:
    """A recipe file, or the name of a shipped one (see `compact distill recipes`)."""
    p = Path(path)
    if not p.exists() and (RECIPES / f"{path}.yaml").is_file():
        p = RECIPES / f"{path}.yaml"
    return load_recipe_file(p, DistillRecipe)


RECIPES = Path(__file__).with_name("recipes")


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))
