"""Deploy transforms: rewrites of the torch model that change its structure but not its function, applied
before any target sees it (ONNX, OpenVINO, Core ML, ExecuTorch, TensorRT, the torch bench runtimes and
`compact quantize`). One file each, registered in `DEPLOY_TRANSFORMS` (timm-style registry).

Every export checks parity against the model *as loaded* (before the transforms), so a transform that changed
the function fails the export; the manifest records which transforms ran and on how many modules.

    from export.deploy import apply_deploy_transforms
    model, records = apply_deploy_transforms(model)             # a copy; `model` is untouched when none apply
"""

from __future__ import annotations

import copy
import logging
from typing import Iterable

from torch import nn

from compact.errors import CompactError

log = logging.getLogger(__name__)


class DeployTransform:
    name: str = ""
    description: str = ""

    def count(self, model: nn.Module) -> int:
        """How many modules the transform would rewrite (0: it does not apply to this model)."""
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        """Rewrite `model` in place (it is already a private copy) and return it."""
        raise NotImplementedError


DEPLOY_TRANSFORMS: dict[str, DeployTransform] = {}
DONE_ATTR = "_compact_deploy_transforms"  # set on a transformed copy: the records of what already ran


def register_transform(cls: type[DeployTransform]) -> type[DeployTransform]:
    DEPLOY_TRANSFORMS[cls.name] = cls()
    return cls


def list_transforms() -> list[str]:
    _import_builtin()
    return list(DEPLOY_TRANSFORMS)


def get_transform(name: str) -> DeployTransform:
    _import_builtin()
    if name not in DEPLOY_TRANSFORMS:
        raise CompactError(f"unknown deploy transform {name!r}; choose one of: {', '.join(sorted(DEPLOY_TRANSFORMS))}")
    return DEPLOY_TRANSFORMS[name]


def apply_deploy_transforms(model: nn.Module, skip: Iterable[str] = ()) -> tuple[nn.Module, list[dict]]:
    """Every registered transform that applies, in registry order, on one deep copy of `model` (eval mode).
    Returns the model to export (the original object when nothing applied) and one record per transform run."""
    skip = set(skip)
    for name in skip:
        get_transform(name)  # a one-line error for a misspelt name
    # A model that already went through a transform (e.g. `compact quantize` exports the prepared model again)
    # carries the records; folding twice is not always possible (timm's RepMixer loses its branches).
    done = list(getattr(model, DONE_ATTR, []))
    seen = {r["name"] for r in done}
    todo = [(t, n) for t in (DEPLOY_TRANSFORMS[k] for k in list_transforms() if k not in skip and k not in seen)
            if (n := t.count(model)) > 0]
    if not todo:
        return model, done
    out = copy.deepcopy(model).eval()
    records = list(done)
    for t, n in todo:
        before = sum(p.numel() for p in out.parameters())
        out = t.apply(out).eval()
        after = sum(p.numel() for p in out.parameters())
        records.append({"name": t.name, "modules": n, "parameters_before": before, "parameters_after": after})
        log.info("deploy transform %s: %d modules, %d -> %d parameters", t.name, n, before, after)
    setattr(out, DONE_ATTR, records)
    return out, records


def _import_builtin() -> None:
    import importlib

    for mod in ("reparameterize",):
        importlib.import_module(f"export.deploy.{mod}")
