import json

import pytest
import torch

from compact.errors import ModelFormatError
from compact.models.folder import load_model, save_model
from compact.models.tokenizer import ByteTokenizer
from helpers import tiny_compact

TEXTS = ["a red circle", "zwei große rote Kreise", "两个红色圆形", "دائرتان حمراوان"]


@pytest.fixture
def saved(tmp_path):
    model = tiny_compact()
    path = save_model(model, tmp_path / "m")
    return model, path


def test_round_trip_same_embeddings(saved):
    model, path = saved
    loaded = load_model(path)
    px = torch.randn(3, 3, 32, 32)
    assert torch.allclose(model.encode_image(px), loaded.encode_image(px), atol=0, rtol=0)
    a, b = model.embed_texts(TEXTS), loaded.embed_texts(TEXTS)
    assert torch.equal(a, b)
    assert loaded.languages == ("en", "de")
    assert loaded.embed_dim == 32 and loaded.logit_scale == pytest.approx(model.logit_scale)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "languages.json", "model.safetensors",
                                                      "preprocess.json", "tokenizer_config.json"]


def test_text_padding_does_not_change_embedding():
    model = tiny_compact()
    one = model.embed_texts(["a red circle"])
    batch = model.embed_texts(["a red circle", "a much longer caption that pads the first one heavily"])
    assert torch.allclose(one[0], batch[0], atol=1e-5)


def test_byte_tokenizer_truncates_with_eos():
    tok = ByteTokenizer(context_length=8)
    tb = tok(["abcdefghijklmnop", "ab"])
    assert tb.ids[0].tolist() == [1, 100, 101, 102, 103, 104, 105, 2]
    assert tb.ids[1].tolist()[:4] == [1, 100, 101, 2] and tb.mask[1].sum() == 4


def test_no_overwrite_without_flag(saved, tmp_path):
    model, path = saved
    with pytest.raises(Exception, match="--overwrite"):
        save_model(model, path)
    save_model(model, path, overwrite=True)
    assert load_model(path).embed_dim == 32


def test_missing_weights(saved):
    _, path = saved
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="model.safetensors is missing"):
        load_model(path)


def test_corrupt_weights(saved):
    _, path = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFormatError, match="corrupt"):
        load_model(path)


def test_garbage_weights(saved):
    _, path = saved
    (path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFormatError, match="corrupt"):
        load_model(path)


def test_unknown_config_key(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["vision"]["widht"] = 64
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="unknown keys \\['widht'\\]"):
        load_model(path)


def test_newer_version(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["version"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="version 99.*upgrade compact"):
        load_model(path)


def test_weights_from_other_model(saved, tmp_path):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["text"]["width"] = 64
    cfg["text"]["mlp_dim"] = 128
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="does not match config.json"):
        load_model(path)


def _full_compute(model, pixels, ids, mask):
    """Every block over every token, then pool: what the towers computed before the pooled-token last block."""
    v, t = model.visual, model.text
    x = v.patch(pixels).flatten(2).transpose(1, 2)
    x = v.ln_pre(torch.cat([v.cls.expand(x.shape[0], -1, -1), x], dim=1) + v.pos)
    for blk in v.blocks:
        x = blk(x)
    img = v.proj(v.ln_post(x[:, 0]))
    x = t.tok(ids) + t.pos[:, : ids.shape[1]]
    for blk in t.blocks:
        x = blk(x, causal=True)
    x = t.ln_final(x)
    if t.cfg.pooling == "mean":
        w = mask.unsqueeze(-1).float()
        pooled = (x * w).sum(1) / w.sum(1)
    elif t.cfg.pooling == "first":
        pooled = x[:, 0]
    else:
        pooled = x[torch.arange(x.shape[0]), mask.sum(1) - 1]
    return img, t.proj(pooled)


@pytest.mark.parametrize("pooling", ["eos", "first", "mean"])
@pytest.mark.parametrize("depth", [1, 3])
def test_last_block_computes_the_pooled_token_only_with_the_same_numbers(pooling, depth):
    """The last block computes only the token that is pooled (its query, out-projection and MLP; keys and values
    for all tokens, causal in the text tower): same embeddings as running it over every token, padded rows too."""
    import dataclasses

    from compact.models.compact_clip import CompactCLIP

    base = tiny_compact()
    cfg = dataclasses.replace(base.cfg, vision=dataclasses.replace(base.cfg.vision, depth=depth),
                              text=dataclasses.replace(base.cfg.text, depth=depth, pooling=pooling))
    torch.manual_seed(1)
    model = CompactCLIP(cfg, base.tokenizer).eval()
    tb = model.tokenize(TEXTS).trimmed()
    assert len(set(tb.mask.sum(1).tolist())) > 1  # rows of different lengths: padding after the EOS
    pixels = torch.randn(len(TEXTS), 3, 32, 32)
    with torch.no_grad():
        ref_img, ref_txt = _full_compute(model, pixels, tb.ids, tb.mask)
        torch.testing.assert_close(model.encode_image(pixels), ref_img, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.encode_text(tb.ids, tb.mask), ref_txt, atol=1e-5, rtol=1e-5)
