"""Byte-level student tokenizer: UTF-8 bytes plus pad/BOS/EOS; nothing to train, every script covered."""

from __future__ import annotations

from compact.distill.tokenizers import StudentTokenizer, TokenizerConfig, register_student_tokenizer
from compact.models.tokenizer import ByteTokenizer


@register_student_tokenizer("bytes")
def build(cfg: TokenizerConfig, corpus, teacher=None) -> StudentTokenizer:
    tok = ByteTokenizer(context_length=cfg.context_length)
    return StudentTokenizer(tok, None, {"vocab_before": None})
