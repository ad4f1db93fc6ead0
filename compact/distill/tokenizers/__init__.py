"""Student tokenizers, one file each, found through `STUDENT_TOKENIZERS`.

    trimmed   the teacher's own tokenizer with its vocabulary cut to the tokens the target-language corpus uses;
              the student inherits the teacher's embedding rows for them (remapped)
    trained   a new byte-level BPE trained with Hugging Face `tokenizers` on the multilingual corpus
    bytes     UTF-8 bytes, no vocabulary file (ByT5/MrT5 style)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

from compact.errors import CompactError
from compact.models.tokenizer import Tokenizer


@dataclass(frozen=True)
class TokenizerConfig:
    kind: str = "trimmed"
    context_length: Optional[int] = None  # None: fit the corpus (see `auto_context`)
    vocab_size: int = 4000  # "trained" only


@dataclass
class StudentTokenizer:
    tokenizer: Tokenizer
    teacher_rows: Optional[list[int]]  # teacher_rows[new_id] = teacher token id (embedding inheritance), or None
    report: dict = field(default_factory=dict)  # kind, vocab_before, vocab_after, truncated share, ...


# builder(cfg, corpus, teacher) -> StudentTokenizer
Builder = Callable[[TokenizerConfig, Sequence[str], object], StudentTokenizer]
STUDENT_TOKENIZERS: dict[str, Builder] = {}


def register_student_tokenizer(name: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        STUDENT_TOKENIZERS[name] = fn
        return fn

    return wrap


def build_student_tokenizer(cfg: TokenizerConfig, corpus: Sequence[str], teacher=None) -> StudentTokenizer:
    _import_builtin()
    if cfg.kind not in STUDENT_TOKENIZERS:
        raise CompactError(f"unknown tokenizer kind {cfg.kind!r}; choose one of {sorted(STUDENT_TOKENIZERS)}")
    if not corpus:
        raise CompactError("the tokenizer corpus is empty; the recipe's text data has no rows")
    built = STUDENT_TOKENIZERS[cfg.kind](replace(cfg, context_length=cfg.context_length or 4096), corpus, teacher)
    lengths = [len(built.tokenizer.encode(t)) for t in corpus]
    if not cfg.context_length:
        built.tokenizer.context_length = auto_context(lengths)
        cfg = replace(cfg, context_length=built.tokenizer.context_length)
    built.report.update({
        "kind": cfg.kind,
        "vocab_after": built.tokenizer.vocab_size,
        "context_length": cfg.context_length,
        "max_tokens": max(lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 2),
        "truncated_share": round(sum(n > cfg.context_length for n in lengths) / len(lengths), 4),
    })
    return built


def auto_context(lengths: Sequence[int], multiple: int = 8) -> int:
    """The longest corpus text, rounded up to a multiple of 8: nothing the corpus holds is truncated, and the
    text tower's position table is no longer than it needs to be (bytes need ~3x more than BPE for CJK)."""
    longest = max(lengths)
    return int(-(-longest // multiple) * multiple)


def list_student_tokenizers() -> list[str]:
    _import_builtin()
    return sorted(STUDENT_TOKENIZERS)


def _import_builtin() -> None:
    from compact.distill.tokenizers import bytes as _b, trained, trimmed  # noqa: F401
