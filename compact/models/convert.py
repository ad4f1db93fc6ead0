"""Convert open_clip and Hugging Face CLIP models into an equivalent `CompactCLIP` (same embeddings).

Every later stage (weight inheritance, structured pruning, export) then works on one architecture with plain
Linear layers, whatever library the model came from. Tests check allclose against each library's forward.
"""

from __future__ import annotations

import torch

from compact.errors import CompactError
from compact.models.compact_clip import CompactCLIP
from compact.models.config import ModelConfig, TextConfig, VisionConfig
from compact.models.hf_tokenizers import teacher_hf_tokenizer
from compact.models.tokenizer import HFTokenizer


def to_compact(encoder) -> CompactCLIP:
    """A CompactCLIP equal to `encoder` (a DualEncoder from the teacher registry)."""
    from compact.models.teachers.hf import HFCLIPEncoder
    from compact.models.teachers.openclip import OpenCLIPEncoder

    if isinstance(encoder, CompactCLIP):
        return encoder
    if isinstance(encoder, OpenCLIPEncoder):
        return _from_open_clip(encoder)
    if isinstance(encoder, HFCLIPEncoder):
        return _from_hf(encoder)
    raise CompactError(f"cannot convert a {type(encoder).__name__} to a compact model; supported: compact folders, "
                       "open_clip ViT + text transformer, Hugging Face CLIPModel")


def _tokenizer(encoder) -> HFTokenizer:
    tt = teacher_hf_tokenizer(encoder)
    import json

    from tokenizers import Tokenizer

    spec = json.loads(tt.tokenizer.to_str())
    spec["post_processor"] = None  # compact's Tokenizer adds BOS/EOS itself
    spec["truncation"] = spec["padding"] = None
    return HFTokenizer(Tokenizer.from_str(json.dumps(spec)), tt.context_length, tt.bos_id, tt.eos_id, tt.pad_id)


def _act(mod) -> str:
    name = type(mod).__name__.lower()
    return "quick_gelu" if "quick" in name else "gelu"


def _mha_block(prefix: str, blk) -> dict:
    return {
        f"{prefix}.ln1.weight": blk.ln_1.weight, f"{prefix}.ln1.bias": blk.ln_1.bias,
        f"{prefix}.attn.qkv.weight": blk.attn.in_proj_weight, f"{prefix}.attn.qkv.bias": blk.attn.in_proj_bias,
        f"{prefix}.attn.out.weight": blk.attn.out_proj.weight, f"{prefix}.attn.out.bias": blk.attn.out_proj.bias,
        f"{prefix}.ln2.weight": blk.ln_2.weight, f"{prefix}.ln2.bias": blk.ln_2.bias,
        f"{prefix}.fc1.weight": blk.mlp.c_fc.weight, f"{prefix}.fc1.bias": blk.mlp.c_fc.bias,
        f"{prefix}.fc2.weight": blk.mlp.c_proj.weight, f"{prefix}.fc2.bias": blk.mlp.c_proj.bias,
    }


def _from_open_clip(enc) -> CompactCLIP:
    m = enc.model
    v = getattr(m, "visual", None)
    from open_clip.transformer import VisionTransformer as OCViT

    if not isinstance(v, OCViT) or getattr(m, "transformer", None) is None:
        kind = type(v).__name__ if not isinstance(v, OCViT) else type(getattr(m, "text", None)).__name__
        raise CompactError(f"cannot convert open_clip tower {kind}: only ViT image towers with the built-in text "
                           "transformer are supported (timm/HF towers are not)")
    if v.attn_pool is not None or v.pool_type != "tok" or v.final_ln_after_pool:
        raise CompactError("cannot convert this open_clip ViT: attentional pooling / non-CLS pooling is not supported")
    if getattr(m, "text_pool_type", "argmax") not in ("argmax", "last"):
        raise CompactError(f"cannot convert open_clip text pooling {m.text_pool_type!r}")
    vb, tb = v.transformer.resblocks, m.transformer.resblocks
    width = v.conv1.out_channels
    vheads = vb[0].attn.num_heads
    twidth = m.token_embedding.weight.shape[1]
    theads = tb[0].attn.num_heads
    tok = _tokenizer(enc)
    cfg = ModelConfig(
        embed_dim=v.proj.shape[1],
        vision=VisionConfig(type="vit", image_size=v.image_size[0] if isinstance(v.image_size, tuple) else v.image_size,
                            patch_size=v.conv1.kernel_size[0], width=width, depth=len(vb), heads=vheads,
                            mlp_dim=vb[0].mlp.c_fc.out_features, act=_act(vb[0].mlp.gelu)),
        text=TextConfig(vocab_size=m.token_embedding.weight.shape[0], context_length=m.positional_embedding.shape[0],
                        width=twidth, depth=len(tb), heads=theads, mlp_dim=tb[0].mlp.c_fc.out_features,
                        pooling="eos", act=_act(tb[0].mlp.gelu)),
    )
    sd = {
        "visual.patch.weight": v.conv1.weight, "visual.patch.bias": torch.zeros(width),
        "visual.cls": v.class_embedding.reshape(1, 1, -1), "visual.pos": v.positional_embedding[None],
        "visual.ln_pre.weight": v.ln_pre.weight, "visual.ln_pre.bias": v.ln_pre.bias,
        "visual.ln_post.weight": v.ln_post.weight, "visual.ln_post.bias": v.ln_post.bias,
        "visual.proj.weight": v.proj.T,
        "text.tok.weight": m.token_embedding.weight, "text.pos": m.positional_embedding[None],
        "text.ln_final.weight": m.ln_final.weight, "text.ln_final.bias": m.ln_final.bias,
        "text.proj.weight": m.text_projection.T,
        "log_logit_scale": m.logit_scale.reshape(()),
    }
    for i, blk in enumerate(vb):
        sd.update(_mha_block(f"visual.blocks.{i}", blk))
    for i, blk in enumerate(tb):
        sd.update(_mha_block(f"text.blocks.{i}", blk))
    return _build(cfg, tok, enc, sd)


def _from_hf(enc) -> CompactCLIP:
    m = enc.model
    vc, tc = m.config.vision_config, m.config.text_config
    vm, tm = m.vision_model, m.text_model
    tok = _tokenizer(enc)
    cfg = ModelConfig(
        embed_dim=m.config.projection_dim,
        vision=VisionConfig(type="vit", image_size=vc.image_size, patch_size=vc.patch_size, width=vc.hidden_size,
                            depth=vc.num_hidden_layers, heads=vc.num_attention_heads, mlp_dim=vc.intermediate_size,
                            act=_hf_act(vc.hidden_act)),
        text=TextConfig(vocab_size=tc.vocab_size, context_length=min(tc.max_position_embeddings, enc.context_length),
                        width=tc.hidden_size, depth=tc.num_hidden_layers, heads=tc.num_attention_heads,
                        mlp_dim=tc.intermediate_size, pooling="eos", act=_hf_act(tc.hidden_act)),
    )
    eps = {vm.pre_layrnorm.eps, vm.post_layernorm.eps, tm.final_layer_norm.eps}
    if eps != {1e-5}:
        raise CompactError(f"cannot convert a CLIP with layer_norm_eps {sorted(eps)}; compact's towers use 1e-5")
    ve = vm.embeddings
    sd = {
        "visual.patch.weight": ve.patch_embedding.weight, "visual.patch.bias": torch.zeros(vc.hidden_size),
        "visual.cls": ve.class_embedding.reshape(1, 1, -1), "visual.pos": ve.position_embedding.weight[None],
        "visual.ln_pre.weight": vm.pre_layrnorm.weight, "visual.ln_pre.bias": vm.pre_layrnorm.bias,
        "visual.ln_post.weight": vm.post_layernorm.weight, "visual.ln_post.bias": vm.post_layernorm.bias,
        "visual.proj.weight": m.visual_projection.weight,
        "text.tok.weight": tm.embeddings.token_embedding.weight,
        "text.pos": tm.embeddings.position_embedding.weight[None, : cfg.text.context_length],
        "text.ln_final.weight": tm.final_layer_norm.weight, "text.ln_final.bias": tm.final_layer_norm.bias,
        "text.proj.weight": m.text_projection.weight,
        "log_logit_scale": m.logit_scale.reshape(()),
    }
    for tower, layers in (("visual", vm.encoder.layers), ("text", tm.encoder.layers)):
        for i, lyr in enumerate(layers):
            a = lyr.self_attn
            p = f"{tower}.blocks.{i}"
            sd.update({
                f"{p}.ln1.weight": lyr.layer_norm1.weight, f"{p}.ln1.bias": lyr.layer_norm1.bias,
                f"{p}.attn.qkv.weight": torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
                f"{p}.attn.qkv.bias": torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
                f"{p}.attn.out.weight": a.out_proj.weight, f"{p}.attn.out.bias": a.out_proj.bias,
                f"{p}.ln2.weight": lyr.layer_norm2.weight, f"{p}.ln2.bias": lyr.layer_norm2.bias,
                f"{p}.fc1.weight": lyr.mlp.fc1.weight, f"{p}.fc1.bias": lyr.mlp.fc1.bias,
                f"{p}.fc2.weight": lyr.mlp.fc2.weight, f"{p}.fc2.bias": lyr.mlp.fc2.bias,
            })
    return _build(cfg, tok, enc, sd)


def _hf_act(name: str) -> str:
    if name in ("gelu", "quick_gelu"):
        return name
    raise CompactError(f"cannot convert a CLIP with hidden_act {name!r}; supported: gelu, quick_gelu")


def _build(cfg: ModelConfig, tok, enc, sd: dict) -> CompactCLIP:
    model = CompactCLIP(cfg, tok, enc.preprocess_cfg, getattr(enc, "languages", None))
    with torch.no_grad():
        missing, unexpected = model.load_state_dict({k: t.detach().clone().float() for k, t in sd.items()},
                                                    strict=False)
    if missing or unexpected:  # a bug in the mapping above, not a user error
        raise RuntimeError(f"conversion left tensors unmapped: missing {missing}, unexpected {unexpected}")
    return model.eval()
