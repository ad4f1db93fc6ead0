"""The teacher's tokenizer, trimmed to the tokens the target-language corpus uses (rows remapped)."""

from __future__ import annotations

from compact.distill.tokenizers import StudentTokenizer, TokenizerConfig, register_student_tokenizer
from compact.errors import CompactError
from compact.models.hf_tokenizers import teacher_hf_tokenizer, trim_tokenizer
from compact.models.tokenizer import HFTokenizer


@register_student_tokenizer("trimmed")
def build(cfg: TokenizerConfig, corpus, teacher=None) -> StudentTokenizer:
    if teacher is None:
        raise CompactError("--tokenizer trimmed needs a teacher to trim; pass --teacher or use trained/bytes")
    tt = teacher_hf_tokenizer(teacher)
    specials = [i for i in (tt.bos_id, tt.eos_id, tt.pad_id) if i is not None]
    res = trim_tokenizer(tt.tokenizer, corpus, keep_ids=specials)
    new = {old: new for new, old in enumerate(res.old_ids)}
    tok = HFTokenizer(res.tokenizer, cfg.context_length, new[tt.bos_id] if tt.bos_id is not None else None,
                      new[tt.eos_id], new[tt.pad_id])
    return StudentTokenizer(tok, list(res.old_ids), {"vocab_before": res.vocab_before})
