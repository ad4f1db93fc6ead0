"""Getting a teacher's tokenizer as a Hugging Face `tokenizers.Tokenizer`, and trimming its vocabulary.

Every teacher compact loads tokenizes through a `tokenizers` model in the end (open_clip's CLIP BPE is rebuilt
as one, exactly: a test compares ids with open_clip's own SimpleTokenizer). That gives one object to trim, save
and ship to apps, whatever library the teacher came from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Iterable, Optional

from compact.errors import CompactError

log = logging.getLogger(__name__)


def clip_bpe_tokenizer():
    """open_clip's CLIP BPE (the vocabulary its wheel ships) as a `tokenizers.Tokenizer`; no network."""
    import open_clip
    from transformers import CLIPTokenizer

    bpe = open_clip.SimpleTokenizer()
    merges = [pair for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
    # open_clip names the specials <start_of_text>/<end_of_text>; Hugging Face's CLIP names them <|...|>.
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in bpe.encoder.items()}
    return CLIPTokenizer(vocab=vocab, merges=merges).backend_tokenizer


@dataclass
class TeacherTokenizer:
    tokenizer: object  # tokenizers.Tokenizer, including the teacher's own post-processor (BOS/EOS)
    bos_id: Optional[int]
    eos_id: int
    pad_id: int
    context_length: int


def teacher_hf_tokenizer(teacher) -> TeacherTokenizer:
    """The teacher's tokenizer as a `tokenizers.Tokenizer`, with its special ids.

    Raises CompactError for teachers whose tokenizer has no vocabulary to trim (e.g. byte-level students).
    """
    from compact.models.teachers.hf import HFCLIPEncoder
    from compact.models.teachers.openclip import OpenCLIPEncoder
    from compact.models.tokenizer import HFTokenizer

    if isinstance(teacher, OpenCLIPEncoder):
        tok = teacher.tokenizer
        inner = getattr(tok, "tokenizer", None)
        ctx = int(getattr(tok, "context_length", 77) or 77)
        if inner is not None and hasattr(inner, "backend_tokenizer"):  # open_clip HFTokenizer (XLM-R, NLLB, ...)
            return _from_transformers(inner, ctx)
        if hasattr(tok, "bpe_ranks"):  # open_clip SimpleTokenizer (CLIP BPE)
            backend = clip_bpe_tokenizer()
            return TeacherTokenizer(backend, backend.token_to_id("<|startoftext|>"),
                                    backend.token_to_id("<|endoftext|>"), 0, ctx)
        raise CompactError(f"teacher tokenizer {type(tok).__name__} has no vocabulary compact can trim; "
                           "use --tokenizer trained or --tokenizer bytes")
    if isinstance(teacher, HFCLIPEncoder):
        return _from_transformers(teacher.tokenizer, teacher.context_length)
    inner = getattr(teacher, "tokenizer", None)
    if isinstance(inner, HFTokenizer):
        return TeacherTokenizer(inner.tok, inner.bos_id, inner.eos_id, inner.pad_id, inner.context_length)
    raise CompactError(f"the teacher's tokenizer ({type(inner).__name__}) has no vocabulary to trim; "
                       "use --tokenizer trained or --tokenizer bytes")


def _from_transformers(tok, context_length: int) -> TeacherTokenizer:
    backend = tok.backend_tokenizer
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    if eos is None:
        raise CompactError(f"teacher tokenizer {type(tok).__name__} has no EOS/SEP token to pool on")
    return TeacherTokenizer(backend, bos, int(eos), int(pad), int(context_length))


@dataclass
class TrimResult:
    tokenizer: object  # the trimmed tokenizers.Tokenizer (specials handled by the caller; no post-processor)
    old_ids: list[int]  # old_ids[new_id] = the teacher's id of the same token: which embedding rows to keep
    vocab_before: int
    vocab_after: int


def used_token_ids(tokenizer, texts: Iterable[str]) -> set[int]:
    used: set[int] = set()
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == 2048:
            used.update(i for enc in tokenizer.encode_batch(batch, add_special_tokens=False) for i in enc.ids)
            batch = []
    if batch:
        used.update(i for enc in tokenizer.encode_batch(batch, add_special_tokens=False) for i in enc.ids)
    return used


def trim_tokenizer(tokenizer, corpus: Iterable[str], keep_ids: Iterable[int] = ()) -> TrimResult:
    """Keep only the tokens `corpus` uses (plus `keep_ids`, the base alphabet and the merges they need).

    Why by hand: `tokenizers` can train a vocabulary but has no API to shrink a trained one. The edit is on the
    model's JSON, so the result is an ordinary tokenizer.json that any `tokenizers` runtime (Python, Rust, JS)
    loads.

    Exactness: for BPE, a merge whose product is neither a kept token nor a part of one never fired on the
    corpus, so dropping it cannot change how the corpus tokenizes. Every single-byte/char base token is kept
    too, so unseen text still encodes (more tokens, never an unknown). For Unigram, the best segmentation of a
    corpus text uses only kept pieces, so it stays the best one.
    """
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer.to_str())
    model = spec["model"]
    kind = model.get("type")
    if kind not in ("BPE", "Unigram", "WordPiece"):
        raise CompactError(f"cannot trim a {kind} tokenizer; use --tokenizer trained or --tokenizer bytes")
    before = tokenizer.get_vocab_size()
    keep = set(used_token_ids(tokenizer, corpus)) | {int(i) for i in keep_ids}
    keep |= {t["id"] for t in spec.get("added_tokens", [])}
    old_vocab = tokenizer.get_vocab()  # token -> id, added tokens included

    if kind == "BPE":
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        id_of = model["vocab"]
        products = {a + b: (a, b) for a, b in merges}
        # Base alphabet: every token that is not the product of a merge (single bytes/chars, with suffix forms).
        keep |= {i for tok, i in id_of.items() if tok not in products}
        stack = [tok for tok, i in id_of.items() if i in keep and tok in products]
        kept_tokens = {tok for tok, i in id_of.items() if i in keep}
        while stack:  # the parts of every kept merged token are needed to build it
            for part in products[stack.pop()]:
                if part not in kept_tokens:
                    kept_tokens.add(part)
                    if part in products:
                        stack.append(part)
        keep |= {id_of[t] for t in kept_tokens}
        order = sorted(keep)
        new_id = {old: new for new, old in enumerate(order)}
        inv = {i: t for t, i in old_vocab.items()}
        model["vocab"] = {inv[o]: new_id[o] for o in order if inv[o] in id_of}
        model["merges"] = [[a, b] for a, b in merges if a + b in kept_tokens and a in kept_tokens and b in kept_tokens]
    elif kind == "Unigram":
        pieces = model["vocab"]  # [[piece, score], ...], id = index
        keep |= {i for i, (p, _) in enumerate(pieces) if len(p) == 1}
        if model.get("unk_id") is not None:
            keep.add(int(model["unk_id"]))
        order = sorted(keep)
        new_id = {old: new for new, old in enumerate(order)}
        model["vocab"] = [pieces[o] for o in order]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[int(model["unk_id"])]
    else:  # WordPiece
        id_of = model["vocab"]
        keep |= {i for t, i in id_of.items() if len(t.removeprefix(model.get("continuing_subword_prefix", "##"))) <= 1}
        keep.add(id_of[model["unk_token"]])
        order = sorted(keep)
        new_id = {old: new for new, old in enumerate(order)}
        inv = {i: t for t, i in id_of.items()}
        model["vocab"] = {inv[o]: new_id[o] for o in order if o in inv}

    for t in spec.get("added_tokens", []):
        t["id"] = new_id[t["id"]]
    # Specials are added by compact's Tokenizer wrapper (BOS/EOS with the new ids), not by a post-processor
    # that still names the old ids.
    spec["post_processor"] = None
    trimmed = Tokenizer.from_str(json.dumps(spec))
    log.info("trimmed tokenizer vocabulary from %d to %d tokens", before, len(order))
    return TrimResult(trimmed, order, before, len(order))
