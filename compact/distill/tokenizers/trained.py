"""A new byte-level BPE trained on the multilingual corpus with Hugging Face `tokenizers`."""

from __future__ import annotations

from compact.distill.tokenizers import StudentTokenizer, TokenizerConfig, register_student_tokenizer
from compact.models.tokenizer import HFTokenizer

SPECIALS = ("<pad>", "<s>", "</s>")


@register_student_tokenizer("trained")
def build(cfg: TokenizerConfig, corpus, teacher=None) -> StudentTokenizer:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus), trainer=trainer)
    pad, bos, eos = (tok.token_to_id(s) for s in SPECIALS)
    return StudentTokenizer(HFTokenizer(tok, cfg.context_length, bos, eos, pad), None, {"vocab_before": None})
