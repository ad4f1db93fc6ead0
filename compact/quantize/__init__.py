"""Quantization that is chosen by measurement and checked per tower and per language (`compact quantize`).

Every method is a config dataclass plus a handler, one file each under `methods/`, registered in `METHODS`
(torchao style: `quantize_(model, Int8DynamicActivationInt8WeightConfig())`). A method produces, for one tower,
a `Candidate`: something that runs (an ONNX / OpenVINO graph, or a torch module) plus the file it writes. The
runner in `run.py` gates each candidate against fp32 (cosine, SQNR, per-language zero-shot and retrieval,
latency side by side) and, in auto mode, keeps the fastest one that passes, per tower.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from compact.errors import CompactError
from compact.utils.extras import NeedsPackages

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]
RUNTIMES = ("onnxruntime", "openvino", "torch", "coreml", "tensorrt")
CONV_TOWER_MIN_CONVS = 8  # a ViT has one convolution (the patch embedding); MobileNet/FastViT towers have dozens


@dataclass
class Candidate:
    method: str
    tower: str
    runner: Runner
    precision: str  # int8 | int8-weights | fp16 | bf16 | mixed ...
    files: list[Path] = field(default_factory=list)  # written into the work folder; the chosen ones are kept
    details: dict = field(default_factory=dict)
    module: object = None  # torch candidates: the quantized module (saved through its config, not pickled)
    timed_runner: Optional[Runner] = None  # torch.compile'd variant used for latency (torchao); else `runner`
    tower_state: Optional[dict] = None  # torch candidates that retrained the tower (QAT): its new fp32 weights


class QuantMethod(NeedsPackages):
    """One quantization method. `runtime` is where its result runs; `packages`/`extra` what it needs."""

    name: str = ""
    runtime: str = ""
    packages: tuple[str, ...] = ()
    extra: str = ""
    description: str = ""
    kind = "quantization method"
    needs_opt_in: str = ""  # e.g. "--qat-steps N": auto mode tries the method only when `opted_in(cfg)`
    options: dict[str, str] = {}  # the `method_options` keys it reads (`--method-option KEY=VALUE`) -> what they do

    def check_options(self, options: dict) -> None:
        """Raise CompactError for a value of one of `options` this method cannot use."""

    def opted_in(self, cfg) -> bool:
        """Whether `--auto` (with no methods named) may try this method under `cfg`."""
        return True

    def quantize(self, ctx, tower: str) -> Candidate:
        """Quantize `tower` ("image" | "text") of the fp32 model in `ctx` (a `run.QuantContext`)."""
        raise NotImplementedError


def listed(value) -> list[str]:
    """A list-valued method option as a list: `--method-option op_types=MatMul` parses to the string "MatMul"
    (a list only where the text has commas)."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


METHODS: dict[str, QuantMethod] = {}


def register_method(cls: type[QuantMethod]) -> type[QuantMethod]:
    METHODS[cls.name] = cls()
    return cls


def _import_builtin() -> None:
    import importlib
    import pkgutil

    from compact.quantize import methods

    for mod in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"compact.quantize.methods.{mod.name}")


def list_methods(runtime: Optional[str] = None) -> list[str]:
    _import_builtin()
    return [n for n, m in METHODS.items() if runtime is None or m.runtime == runtime]


def get_method(name: str) -> QuantMethod:
    _import_builtin()
    if name not in METHODS:
        raise CompactError(f"unknown quantization method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]
