"""The two graphs every target exports: an image encoder and a text encoder, with fixed names.

    image: pixel_values (batch, 3, S, S) float32            -> image_embeds (batch, D) float32
    text:  input_ids (batch, seq) int64, attention_mask (same) -> text_embeds (batch, D) float32

open_clip ViT and Hugging Face CLIP models are first converted to `CompactCLIP` (exact; tests compare
embeddings). Its attention is plain `scaled_dot_product_attention` on Linear layers, so every exporter traces it,
the text tower takes any sequence length up to the context (open_clip's native tower needs exactly 77), and
ORT/OpenVINO can fuse it. Models that cannot be converted (other towers) are exported as they are, with the
text length fixed to their context.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from compact.errors import CompactError
from compact.models.dual_encoder import DualEncoder

log = logging.getLogger(__name__)

IMAGE_INPUTS = ("pixel_values",)
TEXT_INPUTS = ("input_ids", "attention_mask")
OUTPUTS = {"image": "image_embeds", "text": "text_embeds"}


class ImageEncoder(nn.Module):
    def __init__(self, model: DualEncoder, normalize: bool = True):
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.model.encode_image(pixel_values)
        return F.normalize(x, dim=-1) if self.normalize else x


class TextEncoder(nn.Module):
    def __init__(self, model: DualEncoder, normalize: bool = True):
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.model.encode_text(input_ids, attention_mask)
        return F.normalize(x, dim=-1) if self.normalize else x


@dataclass
class Tower:
    """One graph to export: the module, example inputs and the shape contract recorded in the manifest."""

    name: str  # "image" | "text"
    module: nn.Module
    input_names: tuple[str, ...]
    output_name: str
    example: tuple[torch.Tensor, ...]
    # Per input: {axis index: (symbolic name, min, max)}; empty for fixed shapes.
    dynamic: dict[str, dict[int, tuple[str, int, int]]] = field(default_factory=dict)

    def input_specs(self) -> list[dict]:
        specs = []
        for name, x in zip(self.input_names, self.example):
            dyn = self.dynamic.get(name, {})
            shape = [dyn[i][0] if i in dyn else int(s) for i, s in enumerate(x.shape)]
            specs.append({"name": name, "dtype": str(x.dtype).replace("torch.", ""), "shape": shape,
                          "dynamic_axes": {str(i): {"name": n, "min": lo, "max": hi} for i, (n, lo, hi) in dyn.items()}})
        return specs

    def output_spec(self, embed_dim: int) -> dict:
        return {"name": self.output_name, "dtype": "float32",
                "shape": ["batch" if self.dynamic else int(self.example[0].shape[0]), embed_dim]}


@dataclass
class Prepared:
    """What every target needs: the model as it will be exported, and the facts for the manifest."""

    model: DualEncoder  # the module that is exported (CompactCLIP when conversion applies, deploy transforms run)
    original: DualEncoder  # the model as loaded; parity is checked against it
    converted: bool
    context_length: int
    variable_length_text: bool
    source: Optional[DualEncoder] = None  # converted, before the deploy transforms: what the manifest hashes
    deploy_transforms: list[dict] = field(default_factory=list)  # export.deploy records, for the manifest


def prepare(original: DualEncoder, skip_transforms: tuple[str, ...] = ()) -> Prepared:
    """Convert to CompactCLIP where possible, then run the deploy transforms (`export.deploy`, e.g. folding
    MobileOne/FastViT branches) on a copy; `original` is never modified."""
    from compact.models.compact_clip import CompactCLIP
    from compact.models.convert import to_compact
    from export.deploy import apply_deploy_transforms

    model: DualEncoder = original
    converted = False
    if not isinstance(original, CompactCLIP):
        try:
            model = to_compact(original).eval()
            converted = True
        except CompactError as e:
            log.warning("exporting %s as it is (%s); its text length is fixed to the context",
                        type(original).__name__, e)
    ctx = int(model.cfg.text.context_length) if isinstance(model, CompactCLIP) else _context_of(original)
    deployed, records = apply_deploy_transforms(model, skip_transforms)
    return Prepared(deployed, original, converted, ctx, bool(getattr(model, "variable_length_text", False)),
                    source=model, deploy_transforms=records)


def _context_of(model: DualEncoder) -> int:
    return int(model.tokenize(["a"]).ids.shape[1])


def towers(prep: Prepared, normalize: bool = True, fixed_batch: Optional[int] = None,
           fixed_seq: Optional[int] = None, max_batch: int = 64) -> list[Tower]:
    """The image and text towers. `fixed_batch`/`fixed_seq` freeze those axes (Core ML's Neural Engine and
    TensorRT like static shapes); otherwise batch is dynamic in 1..max_batch and seq in 2..context."""
    model = prep.model
    size = model.preprocess_cfg.image_size
    ctx = prep.context_length
    b = fixed_batch or 2
    seq_fixed = fixed_seq or (None if prep.variable_length_text else ctx)
    s = seq_fixed or min(ctx, 8)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(b, 3, size, size, generator=g)
    vocab = _vocab_size(model)
    ids = torch.randint(3, max(vocab - 1, 4), (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    batch_dyn = {} if fixed_batch else {0: ("batch", 1, max_batch)}
    seq_dyn = {} if seq_fixed else {1: ("seq", 2, ctx)}
    image = Tower("image", ImageEncoder(model, normalize).eval(), IMAGE_INPUTS, OUTPUTS["image"], (pixels,),
                  {"pixel_values": batch_dyn} if batch_dyn else {})
    text_dyn = {**batch_dyn, **seq_dyn}
    text = Tower("text", TextEncoder(model, normalize).eval(), TEXT_INPUTS, OUTPUTS["text"], (ids, mask),
                 {n: text_dyn for n in TEXT_INPUTS} if text_dyn else {})
    return [image, text]


def _vocab_size(model: DualEncoder) -> int:
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        return int(cfg.text.vocab_size)
    return int(getattr(model.tokenizer, "vocab_size", 1000) or 1000)


def model_hash(model: nn.Module) -> str:
    """sha256 over the state dict (names, shapes, dtypes, bytes): the source model's identity in the manifest."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}:{tuple(v.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes())
    return h.hexdigest()
