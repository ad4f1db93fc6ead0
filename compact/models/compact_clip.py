"""compact's own dual encoder: a small ViT (or any timm backbone) plus a small text transformer.

Attention is written with one fused qkv Linear and `scaled_dot_product_attention` rather than
`nn.MultiheadAttention`: the latter switches to a fused fast path under no_grad that exporters cannot trace,
and separate, plain Linears are what structured pruning slices.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from compact.errors import ModelFormatError
from compact.models.config import ModelConfig, TextConfig, VisionConfig
from compact.models.dual_encoder import DualEncoder, TokenBatch
from compact.models.preprocess import PreprocessConfig


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim or width // heads
        inner = self.heads * self.head_dim
        self.qkv = nn.Linear(width, 3 * inner)
        self.out = nn.Linear(inner, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        return self.out(packed_attention(self.qkv(x), self.heads, causal))

    def qkv_at(self, x: torch.Tensor, x_at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The query of `x_at` (B, Q, C) and the packed keys and values (B, T, 2C) of every token of `x`."""
        inner = self.heads * self.head_dim
        q = F.linear(x_at, self.qkv.weight[:inner], self.qkv.bias[:inner])
        return q, F.linear(x, self.qkv.weight[inner:], self.qkv.bias[inner:])

    def forward_at(self, x: torch.Tensor, x_at: torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
        """Attention output for one query per row: `x_at` (B, 1, C) attends over all of `x` (B, T, C); `visible`
        (B, T) bool says which keys it may see (None: all). Keys and values for every token, the query for
        one: what the last block needs when only the pooled token is read."""
        return self.out(query_attention(*self.qkv_at(x, x_at), self.heads, visible))


def packed_attention(qkv: torch.Tensor, heads: int, causal: bool) -> torch.Tensor:
    """(B, T, 3 * heads * hs) packed q/k/v -> (B, T, heads * hs): split the heads, SDPA, merge them."""
    B, T, _ = qkv.shape
    hs = qkv.shape[-1] // 3 // heads
    q, k, v = qkv.view(B, T, 3, heads, hs).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, T, hs)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, nh, T, hs)
    return y.transpose(1, 2).reshape(B, T, heads * hs)


def query_attention(q: torch.Tensor, kv: torch.Tensor, heads: int, visible: torch.Tensor | None = None) -> torch.Tensor:
    """Queries (B, Q, heads * hs) over packed keys/values (B, T, 2 * heads * hs), the keys a row may see in
    `visible` (B, T) bool (None: all) -> (B, Q, heads * hs)."""
    B, Q, C = q.shape
    q = q.view(B, Q, heads, C // heads).transpose(1, 2)  # (B, nh, Q, hs)
    k, v = kv.view(B, kv.shape[1], 2, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, T, hs)
    mask = None if visible is None else visible[:, None, None, :]
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return y.transpose(1, 2).reshape(B, Q, C)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACTS = {"gelu": F.gelu, "quick_gelu": quick_gelu}


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_dim: int, act: str = "gelu", head_dim: int | None = None):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, head_dim)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)
        self.act = ACTS[act]

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), causal)
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))

    def forward_at(self, x: torch.Tensor, at: torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
        """The block's output at one position per row (`at`, (B,) long) -> (B, C), the same numbers as
        `forward(x)[arange(B), at]`: only that token's query, out-projection, LayerNorm and MLP are computed."""
        rows = torch.arange(x.shape[0], device=x.device)
        h = self.ln1(x)
        y = x[rows, at].unsqueeze(1) + self.attn.forward_at(h, h[rows, at].unsqueeze(1), visible)
        y = y + self.fc2(self.act(self.fc1(self.ln2(y))))
        return y.squeeze(1)


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__()
        self.patch = nn.Conv2d(3, cfg.width, cfg.patch_size, cfg.patch_size)
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, cfg.width) * cfg.width**-0.5)
        self.pos = nn.Parameter(torch.randn(1, n + 1, cfg.width) * 0.02)
        self.ln_pre = nn.LayerNorm(cfg.width)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads_at(i), cfg.mlp_at(i), cfg.act, cfg.dim_per_head)
                                    for i in range(cfg.depth))
        self.ln_post = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixels).flatten(2).transpose(1, 2)  # (B, N, C)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.ln_pre(x)
        for blk in self.blocks[:-1]:
            x = blk(x)
        # Only the class token is read, so the last block computes its query, out-projection and MLP for that
        # token alone (keys and values for all): the same output, 1.2-1.3x faster for the student on ORT/OpenVINO.
        cls = self.blocks[-1].forward_at(x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device), None)
        return self.proj(self.ln_post(cls))


class TimmVision(nn.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__()
        import timm

        try:
            self.backbone = timm.create_model(cfg.timm_name, pretrained=False, num_classes=0)
        except RuntimeError as e:  # timm: "Unknown model (name)"
            raise ModelFormatError(f"vision.timm_name {cfg.timm_name!r}: {e}; see timm.list_models()") from None
        # With num_classes=0 timm returns pooled pre-logits features: `head_hidden_size` wide for models with a
        # pre-logits head (MobileNetV4, EfficientViT, ...), else `num_features`.
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(pixels))


class TextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos = nn.Parameter(torch.randn(1, cfg.context_length, cfg.width) * 0.01)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads_at(i), cfg.mlp_at(i), cfg.act, cfg.dim_per_head)
                                    for i in range(cfg.depth))
        self.ln_final = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        x = self.tok(ids) + self.pos[:, :T]
        keep = mask.bool()
        # Causal attention, as in CLIP. Padding sits after the last real token, and under a causal mask no real
        # token can see a later position, so no padding mask is needed: the fused causal kernel is exact and
        # several times faster than an explicit (B, 1, T, T) mask.
        if self.cfg.pooling == "mean":
            for blk in self.blocks:
                x = blk(x, causal=True)
            x = self.ln_final(x)
            w = keep.unsqueeze(-1).to(x.dtype)
            return self.proj((x * w).sum(1) / w.sum(1).clamp_min(1.0))
        if self.cfg.pooling == "first":
            at = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        else:
            at = keep.long().sum(1).clamp_min(1) - 1  # index of the EOS (last real token)
        for blk in self.blocks[:-1]:
            x = blk(x, causal=True)
        # Only the pooled token is read: the last block computes its query, out-projection and MLP for that token
        # alone, over the keys the causal mask lets it see (positions up to its own).
        visible = torch.arange(T, device=x.device) <= at[:, None]  # (B, T)
        return self.proj(self.ln_final(self.blocks[-1].forward_at(x, at, visible)))


VISION_TOWERS = {"vit": VisionTransformer, "timm": TimmVision}


class CompactCLIP(DualEncoder):
    variable_length_text = True  # causal + padding mask, positions sliced to the batch length

    def __init__(self, cfg: ModelConfig, tokenizer, preprocess_cfg: PreprocessConfig | None = None,
                 languages: tuple[str, ...] | None = None):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.tokenizer = tokenizer
        self.languages = languages
        self.preprocess_cfg = preprocess_cfg or PreprocessConfig(image_size=cfg.vision.image_size)
        self.visual = VISION_TOWERS[cfg.vision.type](cfg.vision, cfg.embed_dim)
        self.text = TextTransformer(cfg.text, cfg.embed_dim)
        self.log_logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))

    def tokenize(self, texts) -> TokenBatch:
        return self.tokenizer(texts)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text(ids, mask)

    @property
    def logit_scale(self) -> float:
        return float(self.log_logit_scale.detach().exp().clamp(max=100.0))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
