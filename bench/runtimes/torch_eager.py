"""torch eager: the bundle's source model, as the same image/text graphs that were exported (`export.towers`).

The model comes from `manifest["source"]["model"]` (any spec `load_teacher` resolves: a compact model folder,
open_clip:NAME, hf:ID, ...) or from `RuntimeConfig.model` (a DualEncoder or a spec). Runs under
`torch.inference_mode()` on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtimes import BenchRuntime, Feeds, RuntimeConfig, register_runtime
from compact.errors import CompactError


@dataclass
class TorchHandle:
    module: Any
    names: tuple[str, ...]
    threads: int | None


def source_model(manifest: dict, cfg: RuntimeConfig):
    """The DualEncoder a bundle was exported from (or `cfg.model`)."""
    from compact.models.teachers import load_teacher

    model = cfg.model
    if model is None:
        model = (manifest.get("source") or {}).get("model")
        if not model:
            raise CompactError("the bundle's manifest names no source model; pass the model to bench torch")
    if isinstance(model, (str, Path)):
        try:
            model = load_teacher(str(model))
        except CompactError as e:
            raise CompactError(f"torch runtimes load the bundle's source model {model!r}, which failed: {e}") from None
    return model.eval()


def tower_module(manifest: dict, tower: str, cfg: RuntimeConfig):
    """The exported graph for `tower` as a torch module (the same `export.towers` wrapper the export used)."""
    from export.towers import prepare, towers

    prep = prepare(source_model(manifest, cfg))
    mods = {t.name: t for t in towers(prep, normalize=bool(manifest.get("normalized", True)))}
    return mods[tower].module.eval(), mods[tower].input_names


@register_runtime
class TorchEager(BenchRuntime):
    name = "torch"
    description = "PyTorch eager, the source model (CPU)"
    packages = ("torch",)
    extra = "torch"

    def entry(self, manifest: dict, tower: str) -> dict:
        files = [f for f in manifest["files"] if f["tower"] == tower]
        if not files:
            raise CompactError(f"the bundle has no {tower} tower")
        return files[0]  # shapes and precision only; the graph comes from the source model

    def load(self, bundle: Path, manifest: dict, tower: str, cfg: RuntimeConfig) -> TorchHandle:
        import torch

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        module, names = tower_module(manifest, tower, cfg)
        return TorchHandle(module, names, cfg.threads)

    def prepare(self, handle: TorchHandle, feeds: Feeds) -> tuple:
        import torch

        return tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in handle.names)

    def run(self, handle: TorchHandle, inputs: tuple) -> Any:
        import torch

        with torch.inference_mode():
            return handle.module(*inputs)

    def to_numpy(self, output: Any) -> np.ndarray:
        return output.detach().float().cpu().numpy()
