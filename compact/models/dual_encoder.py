"""The one interface every model in compact exposes, whatever library it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from compact.errors import DataError
from compact.models.preprocess import PreprocessConfig, preprocess_images


@dataclass
class TokenBatch:
    ids: torch.Tensor  # (B, L) int64
    mask: torch.Tensor  # (B, L) int64, 1 for real tokens

    def trimmed(self) -> "TokenBatch":
        """Cut the padding columns every row has (dynamic padding). Only for towers that accept any length up
        to their context (compact's own); open_clip's text tower needs the full context."""
        n = int(self.mask.sum(1).max().item()) if self.mask.numel() else 0
        return TokenBatch(self.ids[:, : max(n, 1)], self.mask[:, : max(n, 1)])


def check_texts(texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"caption #{i} is empty; remove the row or give it text")
    return texts


class DualEncoder(nn.Module):
    """A CLIP-style image tower plus text tower.

    Subclasses set `embed_dim` and `preprocess_cfg`, and implement `tokenize`, `encode_image`, `encode_text`
    and `logit_scale`. Embeddings are returned un-normalised, as the wrapped library returns them.
    `languages` is None when the model makes no claim about which languages it reads.
    """

    embed_dim: int
    preprocess_cfg: PreprocessConfig
    languages: tuple[str, ...] | None = None

    # True when encode_text accepts batches shorter than the context (padding can be trimmed per batch).
    variable_length_text: bool = False

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        raise NotImplementedError

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def logit_scale(self) -> float:
        raise NotImplementedError

    # Conveniences built on the four methods above.
    def preprocess(self, images) -> torch.Tensor:
        return preprocess_images(images, self.preprocess_cfg)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenize(check_texts(texts))
        if self.variable_length_text:
            batch = batch.trimmed()
        return self.encode_text(batch.ids, batch.mask)

    @torch.no_grad()
    def embed_images(self, images) -> torch.Tensor:
        return self.encode_image(self.preprocess(images))
