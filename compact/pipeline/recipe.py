"""The `compact run` recipe: one YAML naming every stage from teacher to device, validated into dataclasses
(unknown keys are errors with their line number)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from compact.data.reference.captions import LANGS
from compact.errors import CompactError
from compact.utils.config import load_recipe_file

@dataclass
class DistillStageConfig:
    recipe: str = "reference-small"  # a shipped distill recipe name (`compact distill recipes`) or a YAML file
    max_steps: Optional[int] = None  # cap every distill stage (smoke runs)
    cache: bool = True  # precompute the teacher's embeddings once (`compact distill cache`)


@dataclass
class PruneStageConfig:
    enabled: bool = True
    keep: float = 0.7  # fraction of the parameters kept
    importance: str = "magnitude"
    granularity: list[str] = field(default_factory=lambda: ["heads", "mlp", "layers"])
    recover_steps: int = 100
    calib_limit: int = 300
    # ORT latency and ONNX size of the student before and after pruning, in prune/report.json (four ONNX exports;
    # the bench stage times the pruned student against the teacher either way)
    latency: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise CompactError(f"prune.keep must be in (0, 1], got {self.keep}")


@dataclass
class QuantizeStageConfig:
    enabled: bool = True
    runtime: str = "onnxruntime"
    methods: list[str] = field(default_factory=list)  # empty with auto: every method of the runtime
    auto: bool = True
    max_drop: float = 1.0
    min_cosine: float = 0.99
    eval_limit: Optional[int] = None  # val images for the per-language gate; None: the whole split (500 in
    # reference-small): at 200 images one image is 0.5 points of a 1-point gate
    force: bool = False  # write even when the gate is breached (the report says so)
    timing_seconds: float = 1.0  # per candidate and tower, fp32 and int8 side by side (`compact quantize`'s
    # default is 10): the default student's towers run in about a millisecond, so a second is hundreds of calls
    reduce_range: str = "auto"  # 7-bit int8 weights: auto (where this CPU saturates int8, no VNNI) | on | off

    def __post_init__(self) -> None:
        if self.timing_seconds <= 0:
            raise CompactError(f"quantize.timing_seconds must be positive, got {self.timing_seconds}")
        from compact.quantize.saturation import check_setting

        check_setting(self.reduce_range)


@dataclass
class ExportStageConfig:
    targets: list[str] = field(default_factory=lambda: ["onnx", "openvino"])
    teacher: bool = True  # also export the teacher (for the latency comparison)


@dataclass
class BenchStageConfig:
    runtimes: list[str] = field(default_factory=lambda: ["onnxruntime", "openvino"])
    batch: list[int] = field(default_factory=lambda: [1, 8])
    iters: Optional[int] = None  # None: until the median's CI is within ±2% (capped by max_seconds)
    max_seconds: float = 1.5

    def __post_init__(self) -> None:
        if not self.batch or any(b <= 0 for b in self.batch):
            raise CompactError(f"bench.batch must be positive integers, got {self.batch}")
        if self.iters is not None and self.iters <= 0:
            raise CompactError(f"bench.iters must be positive, got {self.iters}")


@dataclass
class EvalStageConfig:
    data: Optional[str] = None  # None: `<data>:test`
    limit: Optional[int] = 500


@dataclass
class PipelineRecipe:
    name: str = "default"
    teacher: str = "reference-small"  # any teacher spec; reference-* names are built on demand (offline)
    data: str = "reference-small"  # training data for distillation (reference-* built on demand)
    langs: list[str] = field(default_factory=lambda: list(LANGS))
    distill: DistillStageConfig = field(default_factory=DistillStageConfig)
    prune: PruneStageConfig = field(default_factory=PruneStageConfig)
    quantize: QuantizeStageConfig = field(default_factory=QuantizeStageConfig)
    export: ExportStageConfig = field(default_factory=ExportStageConfig)
    bench: BenchStageConfig = field(default_factory=BenchStageConfig)
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.langs:
            raise CompactError("langs is empty; list the target languages, e.g. [en, de, zh]")

    def eval_data(self) -> str:
        return self.eval.data or f"{self.data}:test"


def load_pipeline(path: Union[str, Path, None]) -> PipelineRecipe:
    """A recipe file, or None for the built-in default. A distill recipe named by a relative path is looked up
    next to the pipeline recipe first."""
    if path is None:
        return PipelineRecipe()
    p = Path(path)
    recipe = load_recipe_file(p, PipelineRecipe)
    beside = p.parent / recipe.distill.recipe
    if not Path(recipe.distill.recipe).is_absolute() and beside.is_file():
        recipe.distill.recipe = str(beside)
    return recipe
