"""Structural surgery: physically smaller tensors; exact when the removed units were zero."""

import pytest
import torch

from compact.errors import CompactError
from compact.models.compact_clip import count_parameters
from compact.models.surgery import SlicePlan, TowerPlan, slice_model
from helpers import tiny_compact

TEXTS = ["zwei große rote Kreise", "a red circle", "两个红色的圆形"]


def _embed(m, px):
    with torch.no_grad():
        tb = m.tokenize(TEXTS)
        return m.encode_image(px), m.encode_text(tb.ids, tb.mask)


def _zero_head(blk, h, hd):
    W = blk.attn.out.weight.shape[0]
    with torch.no_grad():
        blk.attn.out.weight.view(W, -1, hd)[:, h] = 0  # the head writes nothing to the residual stream


def test_heads_ffn_layers_exact_when_zero():
    m = tiny_compact()
    px = torch.randn(2, 3, 32, 32)
    hd = m.cfg.vision.dim_per_head
    with torch.no_grad():
        for tower in (m.visual, m.text):
            _zero_head(tower.blocks[0], 1, hd)  # head 1 of layer 0
            tower.blocks[1].fc1.weight[:10] = 0  # FFN neurons 0..9 of layer 1 (gelu(0)=0, but bias too:)
            tower.blocks[1].fc1.bias[:10] = 0
    want = _embed(m, px)
    plan = TowerPlan(layers=[0, 1], heads={0: [0]}, mlp={1: list(range(10, 64))})
    small = slice_model(m, SlicePlan(vision=plan, text=plan))
    got = _embed(small, px)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)
    assert small.cfg.vision.heads == [1, 2] and small.cfg.vision.mlp_dim == [64, 54]
    assert small.visual.blocks[0].attn.qkv.weight.shape == (3 * hd, 32)
    assert small.visual.blocks[1].fc1.weight.shape == (54, 32)
    # parameters removed = one head (qkv rows + out cols + qkv bias) + 10 neurons, per tower
    removed = (3 * hd * 32 + 3 * hd + 32 * hd) + 10 * (32 + 1 + 32)
    assert count_parameters(m) - count_parameters(small) == 2 * removed


def test_layer_removal_exact_when_layer_is_identity():
    m = tiny_compact()
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for tower in (m.visual, m.text):
            b = tower.blocks[1]
            for p in (b.attn.out.weight, b.attn.out.bias, b.fc2.weight, b.fc2.bias):
                p.zero_()
    want = _embed(m, px)
    small = slice_model(m, SlicePlan(vision=TowerPlan(layers=[0]), text=TowerPlan(layers=[0])))
    assert small.cfg.vision.depth == 1 and small.cfg.text.depth == 1
    for a, b in zip(_embed(small, px), want):
        assert torch.allclose(a, b, atol=1e-5)


def test_vocab_rows_and_width_and_embed():
    m = tiny_compact()
    small = slice_model(m, SlicePlan(vision=TowerPlan(layers=[0, 1], width=list(range(24))),
                                     text=TowerPlan(layers=[1], width=list(range(8, 32))),
                                     vocab=list(range(259)), embed=list(range(16)), context_length=40))
    assert small.cfg.vision.width == 24 and small.cfg.text.width == 24 and small.cfg.embed_dim == 16
    assert small.text.pos.shape == (1, 40, 24)
    assert torch.equal(small.text.tok.weight, m.text.tok.weight[:, 8:32])
    assert torch.equal(small.text.pos[:, :24], m.text.pos[:, :24, 8:32])
    img, txt = _embed(small, torch.randn(1, 3, 32, 32))
    assert img.shape == (1, 16) and txt.shape == (3, 16)


def test_bad_plans_name_the_problem():
    m = tiny_compact()
    with pytest.raises(CompactError, match="every attention head of layer 0"):
        slice_model(m, SlicePlan(vision=TowerPlan(layers=[0, 1], heads={0: []})))
    with pytest.raises(CompactError, match="every layer"):
        slice_model(m, SlicePlan(text=TowerPlan(layers=[])))


def test_dynamic_padding_is_exact():
    m = tiny_compact()
    tb = m.tokenize(["a red circle", "zwei Sterne", "圆形"])
    short = tb.trimmed()
    assert short.ids.shape[1] == int(tb.mask.sum(1).max()) < tb.ids.shape[1]
    with torch.no_grad():
        assert torch.allclose(m.encode_text(short.ids, short.mask), m.encode_text(tb.ids, tb.mask), atol=1e-6)
