"""Structural reparameterization: train-time multi-branch blocks (MobileOne, RepVGG, RepViT, FastViT's
RepMixer and conv stems, MobileCLIP / MobileCLIP2 image towers, ...) folded into the single conv they equal at
inference. timm's `reparameterize_model` does the walk (`fuse()` / `reparameterize()` / `switch_to_deploy()` on
every module that has one); this file only counts what it will touch so the manifest can say so, and runs it on
the whole dual encoder, so open_clip towers built on timm blocks are covered too.
"""

from __future__ import annotations

from torch import nn

from compact.errors import CompactError
from export.deploy import DeployTransform, register_transform

HOOKS = ("fuse", "reparameterize", "switch_to_deploy")


def _hooked(m: nn.Module) -> bool:
    return any(callable(getattr(m, h, None)) for h in HOOKS)


@register_transform
class Reparameterize(DeployTransform):
    name = "reparameterize"
    description = "fold multi-branch train-time blocks (MobileOne, RepVGG, RepViT, FastViT, MobileCLIP) into one conv"

    def count(self, model: nn.Module) -> int:
        # timm walks children only (never the root) and stops descending nowhere; count the same set.
        return sum(1 for name, m in model.named_modules() if name and _hooked(m))

    def apply(self, model: nn.Module) -> nn.Module:
        from timm.utils.model import reparameterize_model

        try:
            return reparameterize_model(model, inplace=True)
        except (AttributeError, RuntimeError) as e:  # e.g. a block that was already folded and lost its branches
            raise CompactError(f"reparameterize failed ({type(e).__name__}: {e}); if the model is already in "
                               "deploy form, export with --skip-transform reparameterize") from None
