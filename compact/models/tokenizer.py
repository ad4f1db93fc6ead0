"""Tokenizers that a compact model folder can hold. One class per type, found through `TOKENIZERS`.

Every tokenizer pads or truncates to `context_length` and returns ids plus an attention mask. The text tower
pools at the last real token (the EOS), so truncation always keeps an EOS at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from compact.errors import ModelFormatError
from compact.models.dual_encoder import TokenBatch

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZERS: dict[str, type["Tokenizer"]] = {}


def register_tokenizer(name: str) -> Callable[[type["Tokenizer"]], type["Tokenizer"]]:
    def wrap(cls: type["Tokenizer"]) -> type["Tokenizer"]:
        cls.type_name = name
        TOKENIZERS[name] = cls
        return cls

    return wrap


class Tokenizer:
    type_name: str = ""
    context_length: int
    vocab_size: int
    pad_id: int

    def encode(self, text: str) -> list[int]:
        """Ids for one text, including any BOS/EOS, not yet padded or truncated."""
        raise NotImplementedError

    @property
    def eos_id(self) -> int:
        raise NotImplementedError

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        ids = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), self.context_length), dtype=torch.long)
        for i, text in enumerate(texts):
            toks = self.encode(text)
            if len(toks) > self.context_length:
                toks = toks[: self.context_length - 1] + [self.eos_id]
            ids[i, : len(toks)] = torch.tensor(toks, dtype=torch.long)
            mask[i, : len(toks)] = 1
        return TokenBatch(ids, mask)

    def config(self) -> dict:
        return {"type": self.type_name, "context_length": self.context_length}

    def save(self, folder: Path) -> None:
        (folder / TOKENIZER_CONFIG).write_text(json.dumps(self.config(), indent=2))

    @classmethod
    def load(cls, folder: Path, config: dict) -> "Tokenizer":
        raise NotImplementedError


@register_tokenizer("bytes")
class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as tokens (ByT5/MrT5 style): no vocabulary file, every script covered."""

    SPECIALS = 3  # pad, bos, eos

    def __init__(self, context_length: int = 64):
        self.context_length = context_length
        self.vocab_size = 256 + self.SPECIALS
        self.pad_id = 0

    @property
    def eos_id(self) -> int:
        return 2

    def encode(self, text: str) -> list[int]:
        return [1] + [b + self.SPECIALS for b in text.encode("utf-8")] + [2]

    @classmethod
    def load(cls, folder: Path, config: dict) -> "ByteTokenizer":
        return cls(context_length=int(config["context_length"]))


@register_tokenizer("hf")
class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizers` model saved as tokenizer.json, with explicit BOS/EOS/PAD ids."""

    FILE = "tokenizer.json"

    def __init__(self, tokenizer, context_length: int, bos_id: int | None, eos_id: int, pad_id: int):
        self.tok = tokenizer
        self.context_length = context_length
        self.bos_id = bos_id
        self._eos_id = eos_id
        self.pad_id = pad_id
        self.vocab_size = tokenizer.get_vocab_size()

    @property
    def eos_id(self) -> int:
        return self._eos_id

    def encode(self, text: str) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False).ids
        head = [self.bos_id] if self.bos_id is not None else []
        return head + ids + [self._eos_id]

    def config(self) -> dict:
        return {**super().config(), "file": self.FILE, "bos_id": self.bos_id, "eos_id": self._eos_id,
                "pad_id": self.pad_id}

    def save(self, folder: Path) -> None:
        self.tok.save(str(folder / self.FILE))
        super().save(folder)

    @classmethod
    def load(cls, folder: Path, config: dict) -> "HFTokenizer":
        from tokenizers import Tokenizer as _Tok

        path = folder / config.get("file", cls.FILE)
        if not path.is_file():
            raise ModelFormatError(f"{path} is missing; the model folder's tokenizer is incomplete, re-save the model")
        try:
            tok = _Tok.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on a corrupt file
            raise ModelFormatError(f"{path} is not a valid tokenizer.json ({e}); re-save the model") from None
        return cls(tok, int(config["context_length"]), config.get("bos_id"), int(config["eos_id"]),
                   int(config["pad_id"]))


def load_tokenizer(folder: Path) -> Tokenizer:
    path = folder / TOKENIZER_CONFIG
    if not path.is_file():
        raise ModelFormatError(f"{path} is missing; a compact model folder needs its tokenizer")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    kind = config.get("type")
    if kind not in TOKENIZERS:
        raise ModelFormatError(f"{path}: unknown tokenizer type {kind!r}; known: {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].load(folder, config)
