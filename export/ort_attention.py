"""onnxruntime's fused `Attention` op (com.microsoft) in exported graphs, for CompactCLIP towers.

ORT's transformer optimizer (`onnxruntime.transformers.optimizer`) is the library that normally fuses attention,
but it matches the subgraphs of a few exporters of BERT/CLIP/ViT; on the graph the dynamo exporter writes for
`scaled_dot_product_attention` it fuses nothing (0 Attention nodes, measured on the reference student). So the
attention block is exported as a custom torch op that translates to one `com.microsoft.Attention` node: the qkv
projection, the head split, the (causal) softmax attention and the head merge in one kernel. That removes the
Transpose/Split/Reshape chain (17-21% of the student image tower's ORT time) from fp32 and int8 graphs alike,
and `quantize_dynamic` turns the node into `QAttention` (int8 qkv projection).

    with fused_attention(tower.module) as table:
        torch.onnx.export(tower.module, ..., dynamo=True, custom_translation_table=table)

The graphs need onnxruntime (the op is not in the ONNX standard); the plain graphs stay the default export.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


@torch.library.custom_op("compact::ort_attention", mutates_args=())
def ort_attention(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, heads: int, causal: bool) -> torch.Tensor:
    """Self-attention with a packed qkv projection: `compact_clip.Attention` minus `out`."""
    from compact.models.compact_clip import packed_attention

    return packed_attention(F.linear(x, weight, bias), heads, causal)


@ort_attention.register_fake
def _(x, weight, bias, heads, causal):
    return x.new_empty(x.shape[0], x.shape[1], weight.shape[0] // 3)


@torch.library.custom_op("compact::ort_mha", mutates_args=())
def ort_mha(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Attention of projected queries `q` (B, Q, C) over keys/values (B, T, C), every key visible."""
    from compact.models.compact_clip import query_attention

    return query_attention(q, torch.cat([k, v], dim=-1), heads)


@torch.library.custom_op("compact::ort_mha_masked", mutates_args=())
def ort_mha_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """As `ort_mha`, with `mask` (B, T) int32: 1 where a key is visible (ORT's 2-D key padding mask)."""
    from compact.models.compact_clip import query_attention

    return query_attention(q, torch.cat([k, v], dim=-1), heads, mask.bool())


@ort_mha.register_fake
def _(q, k, v, heads):
    return torch.empty_like(q)


@ort_mha_masked.register_fake
def _(q, k, v, mask, heads):
    return torch.empty_like(q)


def _attention_schema():
    # The op's schema lives in onnxruntime's C++ registry, not in the `onnx` package that onnxscript reads, so
    # the subset used here (input, packed weights, bias; num_heads, unidirectional) is declared for onnxscript.
    from onnx.defs import OpSchema

    fp = OpSchema.FormalParameter
    return OpSchema(
        "Attention", "com.microsoft", 1,
        inputs=[fp("input", "T"), fp("weights", "T"), fp("bias", "T")], outputs=[fp("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "number of attention heads"),
                    OpSchema.Attribute("unidirectional", OpSchema.AttrType.INT, "1: causal mask")])


def _mha_schema():
    # com.microsoft.MultiHeadAttention, the subset used: separate query/key/value, no bias, an optional 2-D key
    # padding mask.
    from onnx.defs import OpSchema

    fp = OpSchema.FormalParameter
    opt = OpSchema.FormalParameterOption.Optional
    return OpSchema(
        "MultiHeadAttention", "com.microsoft", 1,
        inputs=[fp("query", "T"), fp("key", "T"), fp("value", "T"), fp("bias", "T", param_option=opt),
                fp("key_padding_mask", "M", param_option=opt)],
        outputs=[fp("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors"),
                          ("M", ["tensor(int32)"], "key padding mask")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "number of attention heads")])


def _translations() -> dict:
    import onnxscript
    from onnxscript import opset18 as op

    ms = onnxscript.values.Opset("com.microsoft", 1)
    attention = onnxscript.values.Op(ms, "Attention", _attention_schema())
    mha = onnxscript.values.Op(ms, "MultiHeadAttention", _mha_schema())

    def translate(x, weight, bias, heads: int, causal: bool):
        # ORT wants weights as (in, 3 * hidden); torch's Linear stores (3 * hidden, in). The exporter folds the
        # Transpose of the initializer.
        return attention(x, op.Transpose(weight, perm=[1, 0]), bias, num_heads=heads,
                         unidirectional=1 if causal else 0)

    def translate_mha(q, k, v, heads: int):
        return mha(q, k, v, num_heads=heads)

    def translate_mha_masked(q, k, v, mask, heads: int):
        return mha(q, k, v, None, mask, num_heads=heads)

    return {torch.ops.compact.ort_attention.default: translate,
            torch.ops.compact.ort_mha.default: translate_mha,
            torch.ops.compact.ort_mha_masked.default: translate_mha_masked}


def _fused_forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
    return self.out(ort_attention(x, self.qkv.weight, self.qkv.bias, self.heads, causal))


def _fused_forward_at(self, x: torch.Tensor, x_at: torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
    # The pooled-token attention of the last block (`Attention.forward_at`): one query per row over every key,
    # as one MultiHeadAttention node instead of the head split/merge Reshape/Transpose/Slice chain.
    q, kv = self.qkv_at(x, x_at)
    k, v = kv.chunk(2, dim=-1)
    y = ort_mha(q, k, v, self.heads) if visible is None else ort_mha_masked(q, k, v, visible.to(torch.int32),
                                                                            self.heads)
    return self.out(y)


def _blocks(module: nn.Module) -> list:
    from compact.models.compact_clip import Attention

    return [m for m in module.modules() if isinstance(m, Attention) and m.qkv.bias is not None]


def fusable(module: nn.Module) -> int:
    """How many attention blocks of `module` the fused export replaces."""
    return len(_blocks(module))


@contextlib.contextmanager
def fused_attention(module: nn.Module) -> Iterator[dict]:
    """Within the block, every `compact_clip.Attention` of `module` runs as the custom op; yields the
    exporter's custom translation table."""
    patched = _blocks(module)
    for m in patched:
        m.forward = _fused_forward.__get__(m)
        m.forward_at = _fused_forward_at.__get__(m)
    try:
        yield _translations()
    finally:
        for m in patched:
            del m.forward
            del m.forward_at
