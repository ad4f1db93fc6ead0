"""Small builders shared by tests."""

from __future__ import annotations

from compact.models.compact_clip import CompactCLIP
from compact.models.config import ModelConfig, TextConfig, VisionConfig
from compact.models.tokenizer import ByteTokenizer


def tiny_compact(seed: int = 0, languages=("en", "de")) -> CompactCLIP:
    import torch

    torch.manual_seed(seed)
    cfg = ModelConfig(embed_dim=32, vision=VisionConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2,
                                                        mlp_dim=64),
                      text=TextConfig(vocab_size=259, context_length=24, width=32, depth=2, heads=2, mlp_dim=64))
    return CompactCLIP(cfg, ByteTokenizer(context_length=24), languages=languages).eval()


def clip_bpe_hf_tokenizer():
    """A transformers CLIPTokenizer built offline from the CLIP BPE vocabulary that open_clip's wheel ships."""
    from transformers import CLIPTokenizerFast

    from compact.models.hf_tokenizers import clip_bpe_tokenizer

    return CLIPTokenizerFast(tokenizer_object=clip_bpe_tokenizer(), bos_token="<|startoftext|>",
                             eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>")
