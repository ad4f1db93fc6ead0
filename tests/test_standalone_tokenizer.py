"""export/standalone/compact_tokenizer.py, the bundles' pure-Python tokenizer, against compact's own tokenizers.

Every tokenizer is saved the way compact saves it (tokenizer_config.json + tokenizer.json) and read back by
`BundleTokenizer`; ids and masks must equal `compact.models.tokenizer`'s, for both padding modes, on text in many
scripts, odd whitespace, long text (truncation) and the reference benchmark's captions.
"""

from __future__ import annotations

import ast
import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from compact.models.tokenizer import ByteTokenizer, HFTokenizer
from export.standalone import compact_tokenizer as ct
from export.standalone.compact_tokenizer import BundleTokenizer, JsonTokenizer

HAND_WRITTEN = [
    "a photo of a dog", "A Photo Of TWO Dogs.", "ViT-B/32 costs $3.50!!", "don't, I'll, we've, she's, they'd, I'M",
    "Über die Brücke läuft ein Mädchen mit großem Hund", "une fenêtre à côté de l'église, où l'œuvre est née",
    "el niño pequeño señala la montaña", "Съешь же ещё этих мягких французских булок", "我爱北京天安门，天安门上太阳升。",
    "日本語のテキストとカタカナ、ひらがな、漢字が混ざった文", "مرحبا بالعالم، هذه صورة لقطة سوداء", "नमस्ते दुनिया, यह एक लाल गोला है",
    "สวัสดีครับ นี่คือภาพแมวสีดำ", "안녕하세요 세계, 빨간 원이 하나 있습니다", "Ελληνικά: ΟΔΟΣ και οδός", "emoji 😀👍🏽🇩🇪❤️‍🔥 ok",
    "a\tb\t\tc\nd\n\ne\r\nf", "   leading and trailing   ", " ", "", "\u00a0non\u2003breaking\u3000spaces\u2028",
    "x1y2z3 1234567890 ١٢٣ ४५६ 3.14159 1,000,000", "C++ & C# (the *best*) [languages] {ok}? #1 @home ~50% ^_^",
    "e\u0301 vs é, ﬁ ligature, ① ㍿ Ⅻ", "'s 't 're 've 'm 'll 'd ''' \"quoted\"", "<|endoftext|> in the text <|startoftext|>",
    "word " * 120, "長" * 150, "supercalifragilisticexpialidocious" * 4,
    # Right-to-left and mixed-direction text, emoji-only captions, and a 100 kB caption (truncated to the context).
    "שלום עולם, ריבוע אדום ליד עיגול כחול", "red مربع أحمر next to 红色 square and ריבוע 3", "🐱🐶🚗🟥", "👍🏽👍🏽👍🏽",
    "‮right-to-left override‬ and ‏marks‎", ("a red square next to a blue circle, ") * 2900,
]
ALPHABET = "aZq09 \t\n'!?.,-_/éßñçœ漢字カナひらЖжλΩ한글ไทยعربيहिंदी😀\u00a0\u2003\u0301²"
LANGS = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "ko", "hi")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    out = list(HAND_WRITTEN)
    wordfreq = pytest.importorskip("wordfreq")
    for lang in LANGS:
        words = wordfreq.top_n_list(lang, 200)
        out += words[:60] + [" ".join(words[i:i + 9]) for i in range(0, len(words), 9)]
    from compact.data.reference.captions import LANGS as CAPTION_LANGS
    from compact.data.reference.captions import class_prompts
    from compact.data.reference.scene import CLASSES

    for i, (colour, shape) in enumerate(CLASSES[:8]):
        for lang in CAPTION_LANGS:
            out += class_prompts(colour, shape, lang)[i % 3::6]
    rng = random.Random(0)
    out += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    return out


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    wordfreq = pytest.importorskip("wordfreq")
    out = []
    for lang in LANGS:
        words = wordfreq.top_n_list(lang, 300)
        out += [" ".join(words[i:i + 10]) for i in range(0, len(words), 10)]
    return out + HAND_WRITTEN[:20]


@pytest.fixture(scope="module")
def clip_backend():
    pytest.importorskip("open_clip")
    from compact.models.hf_tokenizers import clip_bpe_tokenizer

    return clip_bpe_tokenizer()


def assert_same(tok, folder: Path, texts: list[str]) -> None:
    """Save `tok` as compact does, read it back with BundleTokenizer, compare both padding modes."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(folder)
    mine = BundleTokenizer.from_folder(folder)
    assert mine.context_length == tok.context_length
    for start in range(0, len(texts), 256):
        chunk = texts[start:start + 256]
        batch = tok(chunk)
        ids, mask = mine(chunk, pad_to="max_length")
        for text, got, want in zip(chunk, ids, batch.ids.tolist()):
            assert got == want, text
        assert mask == batch.mask.tolist()
        short = batch.trimmed()
        ids, mask = mine(chunk)  # pad_to="longest"
        assert (ids, mask) == (short.ids.tolist(), short.mask.tolist())


def test_clip_bpe(clip_backend, texts, tmp_path):
    tok = HFTokenizer(clip_backend, 77, clip_backend.token_to_id("<|startoftext|>"),
                      clip_backend.token_to_id("<|endoftext|>"), 0)
    assert_same(tok, tmp_path / "clip", texts)
    tok.context_length = 12  # most texts truncate
    assert_same(tok, tmp_path / "clip12", texts)


def test_clip_bpe_trimmed(clip_backend, corpus, texts, tmp_path):
    """The student tokenizer `--tokenizer trimmed` builds from an open_clip teacher."""
    from compact.distill.tokenizers import TokenizerConfig
    from compact.distill.tokenizers.trimmed import build

    teacher = SimpleNamespace(tokenizer=HFTokenizer(clip_backend, 77, clip_backend.token_to_id("<|startoftext|>"),
                                                    clip_backend.token_to_id("<|endoftext|>"), 0))
    student = build(TokenizerConfig(kind="trimmed", context_length=32), corpus, teacher)
    assert student.tokenizer.vocab_size < clip_backend.get_vocab_size()
    assert_same(student.tokenizer, tmp_path / "trimmed", texts)


def test_trained_byte_level_bpe(corpus, texts, tmp_path):
    """The student tokenizer `--tokenizer trained` builds (NFC + Lowercase, ByteLevel, BPE)."""
    from compact.distill.tokenizers import TokenizerConfig
    from compact.distill.tokenizers.trained import build

    student = build(TokenizerConfig(kind="trained", context_length=24, vocab_size=800), corpus)
    assert_same(student.tokenizer, tmp_path / "trained", texts + ["<s> x </s> <pad>"])


def test_bytes(texts, tmp_path):
    assert_same(ByteTokenizer(context_length=40), tmp_path / "bytes", texts)


def _train(tok: Tokenizer, trainer, corpus: list[str]) -> Tokenizer:
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def test_wordpiece_bert(corpus, texts, tmp_path):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    _train(tok, trainers.WordPieceTrainer(vocab_size=700, special_tokens=specials, show_progress=False), corpus)
    ids = [tok.token_to_id(s) for s in specials]
    assert_same(HFTokenizer(tok, 20, ids[2], ids[3], ids[0]), tmp_path / "bert", texts + ["[CLS] a [MASK] b"])


def test_wordpiece_lowercase_whitespace(corpus, texts, tmp_path):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=12))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    _train(tok, trainers.WordPieceTrainer(vocab_size=500, special_tokens=["[PAD]", "[UNK]", "[EOS]"],
                                          show_progress=False), corpus)
    assert_same(HFTokenizer(tok, 30, None, 2, 0), tmp_path / "wordpiece", texts)


@pytest.mark.parametrize("fuse_unk", [False, True])
def test_char_bpe_with_unknowns(corpus, texts, tmp_path, fuse_unk):
    """unk (fused or not), continuing_subword_prefix, end_of_word_suffix; normalizer/pre-tokenizer sequences."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=fuse_unk, continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Strip(),
                                           normalizers.Replace("ß", "ss"), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    _train(tok, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<unk>", "</s>"], limit_alphabet=60,
                                    continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                    show_progress=False), corpus)
    assert_same(HFTokenizer(tok, 48, None, 2, 0), tmp_path / "charbpe", texts)


def test_byte_fallback_bpe_and_unigram_with_metaspace(corpus, texts, tmp_path):
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    _train(bpe, trainers.BpeTrainer(vocab_size=500, special_tokens=["<pad>", "<unk>", "</s>"] + byte_tokens,
                                    limit_alphabet=50, show_progress=False), corpus)
    assert_same(HFTokenizer(bpe, 64, None, 2, 0), tmp_path / "fallback", texts)

    uni = Tokenizer(models.Unigram())
    uni.normalizer = normalizers.NFC()
    uni.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    _train(uni, trainers.UnigramTrainer(vocab_size=3000, special_tokens=["<pad>", "<unk>", "</s>"],
                                        unk_token="<unk>", show_progress=False), corpus)
    uni.add_tokens([AddedToken("</s>", special=True, normalized=False)])
    assert_same(HFTokenizer(uni, 64, None, 2, 0), tmp_path / "unigram", texts + ["a</s>b </s> c"])


def _json_tokenizer(tok: Tokenizer) -> JsonTokenizer:
    return JsonTokenizer.from_str(tok.to_str())


def test_added_tokens_truncation_and_padding(corpus):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    _train(tok, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"], show_progress=False), corpus)
    tok.add_tokens([AddedToken("Hi", single_word=True, normalized=True), AddedToken("ЖЖ", normalized=True),
                    AddedToken("xx", lstrip=True, rstrip=True, normalized=False)])
    tok.add_special_tokens(["<s>", "</s>"])
    texts = ["hi Hi HI ahi hia hi.", "a xx b  xx\t c xxx", "жж ЖЖ Жж", "<s>a</s>", " xx", "xx ", "", "plain"]
    for truncation, padding in [(None, None), (5, None), (None, 12), (4, 6)]:
        tok.no_truncation() if truncation is None else tok.enable_truncation(truncation)
        tok.no_padding() if padding is None else tok.enable_padding(length=padding, pad_id=7)
        mine = _json_tokenizer(tok)
        for text in texts + corpus[:40]:
            assert mine.encode(text) == tok.encode(text, add_special_tokens=False).ids, (text, truncation, padding)


ONIG_PATTERNS = [
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", r"\w+|[\W\d]+", r"\b", r"x*", r"(?=b)", r"\p{Lu}\p{Ll}*", r"\P{L}+",
    r"[a-f\-_]+", r"^\s+|\s+$", r"\x{4e00}|\h+|\u3042", r"\A\s|\s\z|\Z", r"(?<g>a)\k<g>", r"[\S&]|\p{^N}",
]


@pytest.mark.parametrize("pattern", ONIG_PATTERNS)
def test_split_regex_behaviors(pattern, texts):
    """Oniguruma patterns translated to Python `re`, with every split behavior, inverted or not."""
    sample = texts[::7] + ["a\nb", "a\n\nb\n", "aa aab ab", "ABCdef GHI's I'M 123456 ¼²³ x\u200dy", "abxxc"]
    for behavior in ("removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"):
        for invert in (False, True):
            hf = pre_tokenizers.Split(Regex(pattern), behavior=behavior, invert=invert)
            mine = ct._build_pre_tokenizer(json.loads(hf.__getstate__()))
            for text in sample:
                assert [p for p, _ in mine(text, True)] == [p for p, _ in hf.pre_tokenize_str(text)], (behavior, text)


def test_replace_normalizer_empty_matches():
    for pattern, text in [(Regex(r"x*"), "abxxc"), (Regex(r"\s+"), " a \t b\u3000"), ("", "abc"), ("ab", "aabab")]:
        hf = normalizers.Replace(pattern, "-")
        mine = ct._build_normalizer(json.loads(hf.__getstate__()))
        assert mine(text) == hf.normalize_str(text)


@pytest.mark.parametrize("spec, needle", [
    ({"normalizer": {"type": "Precompiled", "precompiled_charsmap": ""}}, "normalizer 'Precompiled'"),
    ({"pre_tokenizer": {"type": "UnicodeScripts"}}, "pre_tokenizer 'UnicodeScripts'"),
    ({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": r"\p{Han}+"}, "behavior": "Isolated",
                        "invert": False}}, r"\p{Han}"),
    ({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": r"[[:alpha:]]"}, "behavior": "Isolated",
                        "invert": False}}, "POSIX bracket"),
    ({"model": {"type": "BPE", "vocab": {}, "merges": [], "dropout": 0.1}}, "dropout"),
    ({"model": {"type": "Mystery"}}, "model 'Mystery'"),
])
def test_unsupported_components_are_named(spec, needle):
    full = {"normalizer": None, "pre_tokenizer": None, "model": {"type": "WordLevel", "vocab": {"a": 0}}, **spec}
    with pytest.raises(ValueError, match="compact_tokenizer.py does not implement") as err:
        JsonTokenizer(full)
    assert needle in str(err.value)


def test_bundle_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer_config.json"):
        BundleTokenizer.from_folder(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"type": "sentencepiece", "context_length": 8}))
    with pytest.raises(ValueError, match="'sentencepiece'"):
        BundleTokenizer.from_folder(tmp_path)
    tok = BundleTokenizer.from_config({"type": "bytes", "context_length": 4})
    with pytest.raises(ValueError, match="pad_to"):
        tok(["a"], pad_to="64")
    assert tok("héllo") == ([[1, 107, 198, 2]], [[1, 1, 1, 1]])  # one string is one text; truncated with EOS


def test_imports_only_the_standard_library():
    source = Path(ct.__file__).read_text(encoding="utf-8")
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            names.add(node.module.split(".")[0])
    assert names and names <= set(sys.stdlib_module_names) | {"__future__"}, names - set(sys.stdlib_module_names)
