"""Export targets: one file each, registered in `TARGETS` (timm-style registry + factory).

A target turns each `Tower` into artifact files and can, where its runtime is installed here, load them back
for the parity check. Targets whose package is missing raise `MissingExtraError` naming the pip extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from compact.utils.extras import NeedsPackages
from export.towers import Tower

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Artifact:
    """One file (or folder) a target wrote for one tower, as recorded in the manifest."""

    path: str  # relative to the bundle
    tower: str
    precision: str = "fp32"
    details: dict = field(default_factory=dict)  # target-specific facts: opset, exporter, op counts, ...
    companions: list[str] = field(default_factory=list)  # files the artifact needs beside it (IR weights, ...)


class ExportTarget(NeedsPackages):
    kind = "export target"
    name: str = ""
    description: str = ""
    packages: tuple[str, ...] = ()  # importable module names the target needs
    extra: str = ""  # the pip extra that installs them
    # Parity is checked on the target's own runtime when `runner` returns one; the export fails below these.
    min_cosine: float = 0.999

    def export(self, tower: Tower, out: Path, cfg) -> list[Artifact]:
        raise NotImplementedError

    def runner(self, artifact: Artifact, bundle: Path, cfg) -> Optional[Runner]:
        """A callable running the artifact on this machine, or None when its runtime cannot run here (the
        manifest then says the parity was checked another way, or not at all)."""
        return None

    def unverified_reason(self) -> str:
        return f"{self.name} artifacts cannot run on this machine"

    def finalize(self, bundle: Path, artifacts: list[Artifact], cfg) -> dict:
        """Bundle-level extras after every tower is exported (e.g. build scripts). Returns manifest fields."""
        return {}


TARGETS: dict[str, ExportTarget] = {}


def register_target(cls: type[ExportTarget]) -> type[ExportTarget]:
    TARGETS[cls.name] = cls()
    return cls


def get_target(name: str) -> ExportTarget:
    _import_builtin()
    if name not in TARGETS:
        from compact.errors import CompactError

        raise CompactError(f"unknown export target {name!r}; choose one of: {', '.join(sorted(TARGETS))}, all")
    return TARGETS[name]


def list_targets() -> list[str]:
    _import_builtin()
    return list(TARGETS)


def _import_builtin() -> None:
    import importlib

    for mod in ("onnx", "openvino", "coreml", "tensorrt", "executorch"):
        try:
            importlib.import_module(f"export.targets.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"export.targets.{mod}":
                raise
