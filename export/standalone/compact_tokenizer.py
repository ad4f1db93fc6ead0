"""The tokenizer of a compact export bundle, in pure Python: text to the ids and mask the text model takes.

Why this file is hand-written: a bundle has to run where only an inference runtime and numpy are installed
(phones, boards, Pyodide in a browser). Hugging Face `tokenizers` is a Rust extension that is not there, and
neither is the `regex` package that `\\p{L}` patterns usually need. So this one file re-implements, with the
standard library only, the part of `tokenizers` that compact's bundles use, step for step as `tokenizers` 0.2x
does it, and gives the very ids `compact.models.tokenizer` gives on the training side (the tests compare both on
many scripts). It is copied verbatim into every bundle, next to `tokenizer_config.json` and `tokenizer.json`,
and needs Python 3.9 or newer.

    tok = BundleTokenizer.from_folder("bundle/")
    ids, mask = tok(["a red circle", "ein roter Kreis"])          # padded to the longest row
    ids, mask = tok(texts, pad_to="max_length")                     # padded to tok.context_length

What it reads of tokenizer.json (encoding only; compact adds BOS/EOS itself and calls
`encode(text, add_special_tokens=False)`, so the post-processor and the decoder are never needed):
  normalizers     NFC NFD NFKC NFKD Lowercase Replace Strip StripAccents Prepend ByteLevel BertNormalizer Sequence
  pre-tokenizers  Split ByteLevel Whitespace WhitespaceSplit BertPreTokenizer Punctuation Digits Metaspace Sequence
  models          BPE (unk, fuse_unk, byte_fallback, continuing_subword_prefix, end_of_word_suffix,
                  ignore_merges), WordPiece, WordLevel, Unigram (Viterbi, as `tokenizers` does it)
  added tokens    found in the text before normalization (or after, for `normalized` ones) with their
                  single_word/lstrip/rstrip rules, special ones included, exactly as `tokenizers` does
  truncation and padding blocks, as `tokenizers` applies them to a single text
Anything else (Precompiled/Nmt normalizers, UnicodeScripts/CharDelimiterSplit/FixedLength pre-tokenizers, BPE
dropout, regex syntax Python's `re` lacks) raises a ValueError naming it.

Regexes: tokenizer.json's Split and Replace patterns are Oniguruma regexes; `translate_regex` rewrites them for
Python's `re`: `\\p{L}`-style general categories (built from `unicodedata` once, on first use, ~0.2 s), and
`\\s`, `\\w`, `\\d`, `\\b` with Oniguruma's Unicode meaning (Python's `\\s` would also match U+001C..U+001F, and
its `\\w` differs from Oniguruma's on marks and numbers). Matches are iterated the way the onig crate iterates
them (an empty match right after a match is skipped), which decides how empty matches split.

Known limits, all about characters that Python's `unicodedata` and the Rust crates place in different Unicode
versions (none of them occurs in the tests' text in 11 languages and scripts):
  - characters assigned after Python's Unicode version (14.0 in Python 3.11; `tokenizers` 0.23's regexes know
    Unicode 16) are not letters/numbers here;
  - about 70 compatibility characters newer than `tokenizers`' normalization tables (e.g. U+32FF) are
    NFKC/NFKD-normalized here but not there;
  - BertNormalizer, BertPreTokenizer, Punctuation and StripAccents use 2017 tables in `tokenizers`: marks and
    punctuation added to Unicode since (rare historic scripts, Arabic/Indic extensions) are treated differently.
Metaspace's `prepend_scheme: first` counts a piece as first when it begins the input text; `tokenizers` looks at
its original offset, which differs only when a normalizer deleted the text's first characters.
"""

from __future__ import annotations

import heapq
import json
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive code point ranges
Piece = tuple[str, bool]  # a piece of text, and whether it starts the text (for Metaspace's "first")
Match = tuple[int, int, bool]  # start, end, is it a match: a pattern's cover of a string, as `tokenizers` has it

# ----------------------------------------------------------------------------------------------------------------
# Unicode character sets
# ----------------------------------------------------------------------------------------------------------------

# Unicode's White_Space: what Oniguruma's and Rust's \s and Rust's char::is_whitespace match (Python's \s and
# str.isspace() add U+001C..U+001F).
_WHITE_SPACE: Ranges = ((0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
                        (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000))
_WHITE_SPACE_CHARS = "".join(chr(c) for a, b in _WHITE_SPACE for c in range(a, b + 1))
# \w is Alphabetic + Mark + Nd + Pc (+ Join_Control in Rust). Alphabetic is L + Nl + Other_Alphabetic; the only
# Other_Alphabetic characters outside Mark are these circled/squared letters (So).
_ALPHABETIC_SYMBOLS: Ranges = ((0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189))
_JOIN_CONTROL: Ranges = ((0x200C, 0x200D),)
# Oniguruma's \w (and \b, \p{Word}) outside a character class also takes ² ³ ¹ ¼ ½ ¾; inside a class it does not.
_ONIG_LATIN1_WORD: Ranges = ((0xB2, 0xB3), (0xB9, 0xB9), (0xBC, 0xBE))
_HEX_DIGITS: Ranges = ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66))
_ASCII_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

_GENERAL_CATEGORIES = ("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
                       "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn")
_LONG_NAMES = {
    "letter": "L", "casedletter": "LC", "uppercaseletter": "Lu", "lowercaseletter": "Ll", "titlecaseletter": "Lt",
    "modifierletter": "Lm", "otherletter": "Lo", "mark": "M", "combiningmark": "M", "nonspacingmark": "Mn",
    "spacingmark": "Mc", "enclosingmark": "Me", "number": "N", "decimalnumber": "Nd", "letternumber": "Nl",
    "othernumber": "No", "punctuation": "P", "connectorpunctuation": "Pc", "dashpunctuation": "Pd",
    "openpunctuation": "Ps", "closepunctuation": "Pe", "initialpunctuation": "Pi", "finalpunctuation": "Pf",
    "otherpunctuation": "Po", "symbol": "S", "mathsymbol": "Sm", "currencysymbol": "Sc", "modifiersymbol": "Sk",
    "othersymbol": "So", "separator": "Z", "spaceseparator": "Zs", "lineseparator": "Zl",
    "paragraphseparator": "Zp", "other": "C", "control": "Cc", "format": "Cf", "surrogate": "Cs",
    "privateuse": "Co", "unassigned": "Cn",
    "space": "space", "whitespace": "space", "digit": "digit", "word": "word", "any": "any", "xdigit": "hex",
}
_PROPERTY_NAMES: dict[str, str] = {
    **{gc.lower(): gc for gc in _GENERAL_CATEGORIES + ("L", "M", "N", "P", "S", "Z", "C", "LC")},
    **_LONG_NAMES,
}

_category_runs: tuple[list[int], list[str]] | None = None
_sets: dict[str, Ranges] = {}


def _runs() -> tuple[list[int], list[str]]:
    """(first code point, general category) of every run of equal categories: one pass over all code points."""
    global _category_runs
    if _category_runs is None:
        cats = list(map(unicodedata.category, map(chr, range(sys.maxunicode + 1))))
        starts = [0] + [cp for cp, a, b in zip(range(1, len(cats)), cats, cats[1:]) if a != b]
        _category_runs = (starts, [cats[cp] for cp in starts])
    return _category_runs


def _normalize(ranges) -> Ranges:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def _union(*parts: Ranges) -> Ranges:
    return _normalize([r for part in parts for r in part])


def _complement(ranges: Ranges) -> Ranges:
    out = []
    nxt = 0
    for a, b in ranges:
        if a > nxt:
            out.append((nxt, a - 1))
        nxt = b + 1
    if nxt <= sys.maxunicode:
        out.append((nxt, sys.maxunicode))
    return tuple(out)


def _categories(wanted: set) -> Ranges:
    starts, names = _runs()
    out = []
    for i, (start, name) in enumerate(zip(starts, names)):
        if name in wanted:
            out.append((start, starts[i + 1] - 1 if i + 1 < len(starts) else sys.maxunicode))
    return _normalize(out)


def _named_set(name: str) -> Ranges:
    """A character set by name: a general category ("L", "Nd", "LC", ...), or "space", "digit", "hex", "any",
    "word" / "class_word" (Oniguruma's \\w outside / inside a character class), "rust_word" (Rust regex's \\w),
    "bert_punct" (BERT's punctuation)."""
    ranges = _sets.get(name)
    if ranges is None:
        if name == "space":
            ranges = _WHITE_SPACE
        elif name == "hex":
            ranges = _HEX_DIGITS
        elif name == "any":
            ranges = ((0, sys.maxunicode),)
        elif name == "digit":
            ranges = _categories({"Nd"})
        elif name in ("word", "class_word", "rust_word"):
            base = _categories({gc for gc in _GENERAL_CATEGORIES if gc[0] in "LM"} | {"Nd", "Nl", "Pc"})
            extra = {"word": _ONIG_LATIN1_WORD, "class_word": (), "rust_word": _JOIN_CONTROL}[name]
            ranges = _union(base, _ALPHABETIC_SYMBOLS, extra)
        elif name == "bert_punct":
            ascii_punct = _normalize((ord(c), ord(c)) for c in _ASCII_PUNCTUATION)
            ranges = _union(_categories({gc for gc in _GENERAL_CATEGORIES if gc[0] == "P"}), ascii_punct)
        elif name == "LC":
            ranges = _categories({"Lu", "Ll", "Lt"})
        elif len(name) == 1:
            ranges = _categories({gc for gc in _GENERAL_CATEGORIES if gc[0] == name})
        else:
            ranges = _categories({name})
        _sets[name] = ranges
    return ranges


def _property(name: str, in_class: bool = False) -> Ranges:
    """The set of `\\p{name}`; names are matched as Oniguruma does (case, spaces, '_' and '-' ignored)."""
    key = name.replace(" ", "").replace("_", "").replace("-", "").lower()
    negate = key.startswith("^")
    canonical = _PROPERTY_NAMES.get(key.lstrip("^"))
    if canonical is None:
        raise ValueError(f"tokenizer.json uses the regex class \\p{{{name}}}, which compact_tokenizer.py does not "
                         "implement (it knows the general categories, e.g. L, N, Lu, Nd, P, and Space, Digit, "
                         "Word, XDigit, Any)")
    ranges = _named_set("class_word" if canonical == "word" and in_class else canonical)
    return _complement(ranges) if negate else ranges


def _esc(cp: int) -> str:
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def _class_body(ranges: Ranges) -> str:
    return "".join(_esc(a) if a == b else f"{_esc(a)}-{_esc(b)}" for a, b in ranges)


def _class(ranges: Ranges) -> str:
    """A Python regex matching one character of `ranges`."""
    if not ranges:
        return "(?!)"
    if ranges == ((0, sys.maxunicode),):
        return "(?s:.)"
    return f"[{_class_body(ranges)}]"


# ----------------------------------------------------------------------------------------------------------------
# Oniguruma regex -> Python regex
# ----------------------------------------------------------------------------------------------------------------

_CHAR_ESCAPES = {"n": 10, "t": 9, "r": 13, "f": 12, "v": 11, "a": 7, "e": 27}
_SET_ESCAPES = {"s": "space", "w": "word", "d": "digit", "h": "hex"}


def _unsupported_regex(pattern: str, what: str) -> ValueError:
    return ValueError(f"tokenizer.json has the regex {pattern!r}, which uses {what}; compact_tokenizer.py does not "
                      "implement that")


def _read_escape(p: str, i: int, in_class: bool) -> tuple[str, object, int]:
    """The escape at p[i] (a backslash): ("set", ranges, next), ("char", code point, next) or, outside a
    character class, ("raw", Python regex text, next)."""
    if i + 1 >= len(p):
        raise _unsupported_regex(p, "a trailing backslash")
    c = p[i + 1]
    j = i + 2
    if c in "pP":
        if p.startswith("{", j):
            end = p.find("}", j)
            if end < 0:
                raise _unsupported_regex(p, "an unterminated \\p{")
            name, j = p[j + 1:end], end + 1
        elif j < len(p):
            name, j = p[j], j + 1
        else:
            raise _unsupported_regex(p, "a bare \\p")
        ranges = _property(name, in_class)
        return "set", (_complement(ranges) if c == "P" else ranges), j
    if c.lower() in _SET_ESCAPES:
        name = _SET_ESCAPES[c.lower()]
        ranges = _named_set("class_word" if name == "word" and in_class else name)
        return "set", (ranges if c.islower() else _complement(ranges)), j
    if c in _CHAR_ESCAPES:
        return "char", _CHAR_ESCAPES[c], j
    if c in "xu":
        if c == "x" and p.startswith("{", j):
            end = p.find("}", j)
            digits, j = p[j + 1:end] if end > 0 else "", end + 1
        else:
            m = re.match(r"[0-9a-fA-F]{1,2}" if c == "x" else r"[0-9a-fA-F]{4}", p[j:])
            digits = m.group() if m else ""
            j += len(digits)
        if not re.fullmatch(r"[0-9a-fA-F]{1,8}", digits):
            raise _unsupported_regex(p, f"a malformed \\{c} escape")
        return "char", int(digits, 16), j
    if c == "0":
        m = re.match(r"[0-7]{0,2}", p[j:])
        return "char", int("0" + m.group(), 8), j + len(m.group())
    if not in_class:
        if c in "123456789":
            digits = re.match(r"\d*", p[j:]).group()
            return "raw", "\\" + c + digits, j + len(digits)
        if c in "bB":
            w = _class(_named_set("word"))
            if c == "b":
                return "raw", f"(?:(?<={w})(?!{w})|(?<!{w})(?={w}))", j
            return "raw", f"(?:(?<={w})(?={w})|(?<!{w})(?!{w}))", j
        if c == "A":
            return "raw", r"\A", j
        if c == "z":
            return "raw", r"\Z", j
        if c == "Z":
            return "raw", r"(?=\n?\Z)", j
        if c == "k" and p.startswith("<", j) and p.find(">", j) > 0:
            end = p.find(">", j)
            return "raw", f"(?P={p[j + 1:end]})", end + 1
    elif c == "b":
        return "char", 8, j
    if c.isascii() and c.isalnum():
        raise _unsupported_regex(p, f"the escape \\{c}")
    return "char", ord(c), j


def _read_class(p: str, i: int) -> tuple[str, int]:
    """The character class at p[i] ('['), as Python regex text."""
    j = i + 1
    negate = p.startswith("^", j)
    if negate:
        j += 1
    items: list[str] = []
    first = True
    while True:
        if j >= len(p):
            raise _unsupported_regex(p, "an unterminated character class")
        c = p[j]
        if c == "]" and not first:
            j += 1
            break
        if c == "[":
            raise _unsupported_regex(p, "a nested character class or a POSIX bracket")
        if p.startswith("&&", j):
            raise _unsupported_regex(p, "a character class intersection (&&)")
        first = False
        if c == "\\":
            kind, value, j = _read_escape(p, j, in_class=True)
        else:
            kind, value, j = "char", ord(c), j + 1
        if kind == "char" and p.startswith("-", j) and j + 1 < len(p) and p[j + 1] != "]":
            if p[j + 1] == "\\":
                kind2, value2, k = _read_escape(p, j + 1, in_class=True)
            elif p[j + 1] == "[":
                raise _unsupported_regex(p, "a nested character class")
            else:
                kind2, value2, k = "char", ord(p[j + 1]), j + 2
            if kind2 != "char" or value2 < value:
                raise _unsupported_regex(p, "a malformed character range")
            items.append(f"{_esc(value)}-{_esc(value2)}")
            j = k
        elif kind == "char":
            items.append(_esc(value))
        elif value:
            items.append(_class_body(value))
    body = "".join(items)
    if not body:
        return ("(?s:.)" if negate else "(?!)"), j
    return f"[{'^' if negate else ''}{body}]", j


def _read_group(p: str, i: int, at_start: bool) -> tuple[str, int]:
    """The group opening at p[i] ('(?'), as Python regex text."""
    j = i + 2
    rest = p[j:]
    if rest[:1] in (":", "=", "!", ">"):
        return "(?" + rest[0], j + 1
    if rest[:2] in ("<=", "<!"):
        return "(?" + rest[:2], j + 2
    m = re.match(r"(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|P<([A-Za-z_]\w*)>)", rest)
    if m:
        return f"(?P<{m.group(1) or m.group(2) or m.group(3)}>", j + m.end()
    if rest.startswith("#"):
        end = p.find(")", j)
        if end < 0:
            raise _unsupported_regex(p, "an unterminated comment")
        return "", end + 1
    m = re.match(r"([imx]*)(?:-([imx]*))?([:)])", rest)
    if m and (m.group(1) or m.group(2) is not None):
        on, off = m.group(1).replace("m", "s"), (m.group(2) or "").replace("m", "s")  # Ruby's m is Python's s
        flags = on + (f"-{off}" if off else "")
        if m.group(3) == ":":
            return f"(?{flags}:", j + m.end()
        if at_start and not off:
            return f"(?{flags})", j + m.end()
        raise _unsupported_regex(p, "an inline flag group that is not at the start")
    raise _unsupported_regex(p, f"the group syntax (?{rest[:1]}")


def translate_regex(pattern: str) -> str:
    """An Oniguruma regex (the syntax of tokenizer.json's Split and Replace patterns) in Python `re` syntax.

    Compile the result with re.MULTILINE: in Oniguruma's (Ruby) syntax ^ and $ match at line breaks."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            kind, value, i = _read_escape(pattern, i, in_class=False)
            out.append(value if kind == "raw" else _class(value) if kind == "set" else _esc(value))
        elif c == "[":
            text, i = _read_class(pattern, i)
            out.append(text)
        elif pattern.startswith("(?", i):
            text, i = _read_group(pattern, i, at_start=not out)
            out.append(text)
        else:
            out.append(c)
            i += 1
    return "".join(out)


_compiled: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    rx = _compiled.get(pattern)
    if rx is None:
        try:
            rx = re.compile(translate_regex(pattern), re.MULTILINE)
        except re.error as e:
            raise _unsupported_regex(pattern, f"syntax Python's re rejects ({e})") from None
        _compiled[pattern] = rx
    return rx


def _pattern(spec: dict, where: str) -> re.Pattern[str]:
    """A Split/Replace `pattern`: {"String": literal} or {"Regex": Oniguruma regex}."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"tokenizer.json: {where} has a malformed pattern {spec!r}")
    (kind, value), = spec.items()
    if kind == "String":
        return re.compile(re.escape(value))
    if kind == "Regex":
        return _compile(value)
    raise ValueError(f"tokenizer.json: {where} has a pattern of kind {kind!r}, which compact_tokenizer.py does not "
                     "implement")


# ----------------------------------------------------------------------------------------------------------------
# Splitting, as tokenizers' NormalizedString::split does it
# ----------------------------------------------------------------------------------------------------------------


def _regex_matches(rx: re.Pattern[str], s: str) -> list[Match]:
    """The cover of `s` by the matches of `rx`, iterated as the onig crate does: an empty match ending where the
    previous match ended is skipped by one character (Python's finditer would keep it and retry)."""
    if not s:
        return [(0, 0, False)]
    out: list[Match] = []
    prev = pos = 0
    last_end = -1
    n = len(s)
    search = rx.search
    while pos <= n:
        m = search(s, pos)
        if m is None:
            break
        a, b = m.span()
        if a == b and b == last_end:
            pos += 1
            continue
        pos = last_end = b
        if prev != a:
            out.append((prev, a, False))
        out.append((a, b, True))
        prev = b
    if prev != n:
        out.append((prev, n, False))
    return out


def _char_matches(s: str, pred: Callable[[str], bool]) -> list[Match]:
    """The cover of `s` by single characters for which `pred` holds (each one a match of its own)."""
    if not s:
        return [(0, 0, False)]
    out: list[Match] = []
    last = 0
    for i, ch in enumerate(s):
        if pred(ch):
            if last < i:
                out.append((last, i, False))
            out.append((i, i + 1, True))
            last = i + 1
    if last < len(s):
        out.append((last, len(s), False))
    return out


_BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")


def _split(s: str, at_start: bool, matches: list[Match], behavior: str, invert: bool = False) -> list[Piece]:
    if invert:
        matches = [(a, b, not m) for a, b, m in matches]
    spans: list[list[int]] = []
    if behavior == "Removed":
        spans = [[a, b] for a, b, m in matches if not m]
    elif behavior == "Isolated":
        spans = [[a, b] for a, b, _ in matches]
    elif behavior == "Contiguous":
        prev = False
        for a, b, m in matches:
            if m == prev and spans:
                spans[-1][1] = b
            else:
                spans.append([a, b])
            prev = m
    elif behavior == "MergedWithPrevious":
        prev = False
        for a, b, m in matches:
            if m and not prev and spans:
                spans[-1][1] = b
            else:
                spans.append([a, b])
            prev = m
    elif behavior == "MergedWithNext":
        prev = False
        for a, b, m in reversed(matches):
            if m and not prev and spans:
                spans[-1][0] = a
            else:
                spans.append([a, b])
            prev = m
        spans.reverse()
    else:
        raise ValueError(f"tokenizer.json uses the split behavior {behavior!r}, which compact_tokenizer.py does not "
                         f"implement (known: {', '.join(_BEHAVIORS)})")
    return [(s[a:b], at_start and a == 0) for a, b in spans if b > a]


# ----------------------------------------------------------------------------------------------------------------
# Normalizers: str -> str
# ----------------------------------------------------------------------------------------------------------------

Normalizer = Callable[[str], str]


def _lowercase(s: str) -> str:
    # tokenizers lowercases char by char (Rust's char::to_lowercase): no final-sigma rule, unlike str.lower().
    return s.lower() if "\u03a3" not in s else "".join(c.lower() for c in s)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table that ByteLevel uses."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


_BYTE_TABLE = _bytes_to_unicode()


def _byte_level_chars(s: str) -> str:
    return s.encode("utf-8").decode("latin-1").translate(_BYTE_TABLE)


def _is_bert_control(c: str) -> bool:
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co")


_BERT_CJK: Ranges = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                     (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0x2F800, 0x2FA1F))


def _bert_normalizer(spec: dict) -> Normalizer:
    clean_text = spec.get("clean_text", True)
    chinese = spec.get("handle_chinese_chars", True)
    lowercase = spec.get("lowercase", True)
    strip_accents = spec.get("strip_accents")
    strip_accents = lowercase if strip_accents is None else strip_accents
    cjk = re.compile(f"({_class(_BERT_CJK)})")
    bert_space = "\t\n\r" + _WHITE_SPACE_CHARS

    def run(s: str) -> str:
        if clean_text:
            s = "".join(" " if c in bert_space else c for c in s
                        if c != "\x00" and c != "\ufffd" and not _is_bert_control(c))
        if chinese:
            s = cjk.sub(r" \1 ", s)
        if strip_accents:
            s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
        if lowercase:
            s = _lowercase(s)
        return s

    return run


def _replace(spec: dict) -> Normalizer:
    rx = _pattern(spec.get("pattern"), "a Replace normalizer")
    content = spec.get("content", "")

    def run(s: str) -> str:
        return "".join(content if m else s[a:b] for a, b, m in _regex_matches(rx, s))

    return run


def _strip(spec: dict) -> Normalizer:
    left, right = spec.get("strip_left", True), spec.get("strip_right", True)

    def run(s: str) -> str:
        if left:
            s = s.lstrip(_WHITE_SPACE_CHARS)
        if right:
            s = s.rstrip(_WHITE_SPACE_CHARS)
        return s

    return run


def _sequence(steps: list[Callable]) -> Callable:
    def run(s):
        for step in steps:
            s = step(s)
        return s

    return run


def _build_normalizer(spec: dict | None) -> Normalizer | None:
    if spec is None:
        return None
    kind = spec.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda s: unicodedata.normalize(kind, s)
    if kind == "Lowercase":
        return _lowercase
    if kind == "Replace":
        return _replace(spec)
    if kind == "Strip":
        return _strip(spec)
    if kind == "StripAccents":
        return lambda s: "".join(c for c in s if not unicodedata.category(c).startswith("M"))
    if kind == "Prepend":
        prefix = spec.get("prepend", "")
        return lambda s: prefix + s if s else s
    if kind == "ByteLevel":
        return _byte_level_chars
    if kind == "BertNormalizer":
        return _bert_normalizer(spec)
    if kind == "Sequence":
        steps = [_build_normalizer(n) for n in spec.get("normalizers", [])]
        return _sequence([s for s in steps if s is not None])
    raise ValueError(f"tokenizer.json uses normalizer {kind!r}, which compact_tokenizer.py does not implement")


# ----------------------------------------------------------------------------------------------------------------
# Pre-tokenizers: one piece -> its sub-pieces
# ----------------------------------------------------------------------------------------------------------------

PreTokenizer = Callable[[str, bool], list[Piece]]

# GPT-2's pattern, as tokenizers' ByteLevel pre-tokenizer has it.
BYTE_LEVEL_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _byte_level(spec: dict) -> PreTokenizer:
    add_prefix_space = spec.get("add_prefix_space", True)
    rx = _compile(BYTE_LEVEL_PATTERN) if spec.get("use_regex", True) else None

    def run(s: str, at_start: bool) -> list[Piece]:
        if add_prefix_space and not s.startswith(" "):
            s = " " + s
        pieces = _split(s, at_start, _regex_matches(rx, s), "Isolated") if rx is not None else [(s, at_start)]
        return [(_byte_level_chars(p), st) for p, st in pieces]

    return run


def _regex_pieces(rx: re.Pattern[str]) -> PreTokenizer:
    """Keep the (never empty) matches of `rx`, drop the rest: Invert + Removed on a pattern."""
    return lambda s, at_start: [(m.group(), at_start and m.start() == 0) for m in rx.finditer(s)]


def _metaspace(spec: dict) -> PreTokenizer:
    rep = spec.get("replacement", "\u2581")
    scheme = spec.get("prepend_scheme")
    if scheme is None:
        scheme = "always" if spec.get("add_prefix_space", True) else "never"
    if scheme not in ("always", "first", "never"):
        raise ValueError(f"tokenizer.json uses Metaspace prepend_scheme {scheme!r}, which compact_tokenizer.py does "
                         "not implement")
    split = spec.get("split", True)

    def run(s: str, at_start: bool) -> list[Piece]:
        s = s.replace(" ", rep)
        if not s.startswith(rep) and (scheme == "always" or (scheme == "first" and at_start)):
            s = rep + s
        if split:
            return _split(s, at_start, _char_matches(s, lambda c: c == rep), "MergedWithNext")
        return [(s, at_start)]

    return run


def _build_pre_tokenizer(spec: dict | None) -> PreTokenizer | None:
    if spec is None:
        return None
    kind = spec.get("type")
    space = _class_body(_WHITE_SPACE)
    if kind == "Split":
        rx = _pattern(spec.get("pattern"), "a Split pre-tokenizer")
        behavior, invert = spec.get("behavior", "Isolated"), bool(spec.get("invert", False))
        _split("", False, [], behavior)  # an unknown behavior fails here, at load time
        return lambda s, at_start: _split(s, at_start, _regex_matches(rx, s), behavior, invert)
    if kind == "ByteLevel":
        return _byte_level(spec)
    if kind == "Whitespace":  # Rust regex \w+|[^\w\s]+
        word = _class_body(_named_set("rust_word"))
        return _regex_pieces(re.compile(f"[{word}]+|[^{word}{space}]+"))
    if kind == "WhitespaceSplit":
        return _regex_pieces(re.compile(f"[^{space}]+"))
    if kind == "BertPreTokenizer":  # drop whitespace, isolate each punctuation character
        punct = _class_body(_named_set("bert_punct"))
        return _regex_pieces(re.compile(f"[{punct}]|[^{punct}{space}]+"))
    if kind == "Punctuation":
        behavior = spec.get("behavior", "Isolated")
        rx = re.compile(_class(_named_set("bert_punct")))
        _split("", False, [], behavior)
        return lambda s, at_start: _split(s, at_start, _char_matches(s, rx.match), behavior)
    if kind == "Digits":  # char::is_numeric: the N categories
        behavior = "Isolated" if spec.get("individual_digits", False) else "Contiguous"
        rx = re.compile(_class(_named_set("N")))
        return lambda s, at_start: _split(s, at_start, _char_matches(s, rx.match), behavior)
    if kind == "Metaspace":
        return _metaspace(spec)
    if kind == "Sequence":
        steps = [p for p in (_build_pre_tokenizer(x) for x in spec.get("pretokenizers", [])) if p is not None]

        def run(s: str, at_start: bool) -> list[Piece]:
            pieces = [(s, at_start)]
            for step in steps:
                pieces = [sub for p, st in pieces for sub in step(p, st)]
            return pieces

        return run
    raise ValueError(f"tokenizer.json uses pre_tokenizer {kind!r}, which compact_tokenizer.py does not implement")


# ----------------------------------------------------------------------------------------------------------------
# Models: one pre-tokenized word -> ids
# ----------------------------------------------------------------------------------------------------------------

_CACHE_LIMIT = 100_000


class _Model:
    def __init__(self) -> None:
        self._cache: dict[str, list[int]] = {}

    def tokenize(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            ids = self._tokenize(word) if word else []
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def _tokenize(self, word: str) -> list[int]:
        raise NotImplementedError


def _vocab_id(vocab: dict[str, int], token: str | None, model: str) -> int:
    if token is None or token not in vocab:
        raise ValueError(f"tokenizer.json: the {model} model met an unknown piece of text but its unk_token "
                         f"{token!r} is not in its vocabulary (tokenizers fails here too)")
    return vocab[token]


class _BPE(_Model):
    """tokenizers' BPE: characters to ids (with unk/byte fallback), then merges by rank, leftmost first."""

    def __init__(self, spec: dict):
        super().__init__()
        if spec.get("dropout") not in (None, 0, 0.0):
            raise ValueError("tokenizer.json uses BPE dropout (random merges), which compact_tokenizer.py does not "
                             "implement")
        self.vocab: dict[str, int] = dict(spec.get("vocab") or {})
        self.unk_token: str | None = spec.get("unk_token")
        self.prefix: str = spec.get("continuing_subword_prefix") or ""
        self.suffix: str = spec.get("end_of_word_suffix") or ""
        self.fuse_unk = bool(spec.get("fuse_unk", False))
        self.byte_fallback = bool(spec.get("byte_fallback", False))
        self.ignore_merges = bool(spec.get("ignore_merges", False))
        self.merges: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, merge in enumerate(spec.get("merges") or []):
            parts = merge.split(" ") if isinstance(merge, str) else list(merge)
            if len(parts) != 2:
                raise ValueError(f"tokenizer.json: BPE merge #{rank} {merge!r} is not a pair")
            a, b = parts
            new = a + b[len(self.prefix):]
            for tok in (a, b, new):
                if tok not in self.vocab:
                    raise ValueError(f"tokenizer.json: BPE merge {merge!r} uses {tok!r}, which is not in the vocab")
            self.merges[(self.vocab[a], self.vocab[b])] = (rank, self.vocab[new])

    def _symbols(self, word: str) -> list[int]:
        vocab = self.vocab
        ids: list[int] = []
        unk: int | None = None
        last = len(word) - 1
        for i, ch in enumerate(word):
            s = ch
            if i > 0 and self.prefix:
                s = self.prefix + s
            if i == last and self.suffix:
                s = s + self.suffix
            tid = vocab.get(s)
            if tid is not None:
                if unk is not None:
                    ids.append(unk)
                    unk = None
                ids.append(tid)
                continue
            if self.byte_fallback:
                byte_ids = [vocab.get(f"<0x{b:02X}>") for b in s.encode("utf-8")]
                if None not in byte_ids:
                    ids.extend(byte_ids)  # as tokenizers: a pending unk is not flushed before these
                    continue
            if self.unk_token is None:
                continue  # tokenizers drops the character
            if unk is not None and not self.fuse_unk:
                ids.append(unk)
            unk = _vocab_id(vocab, self.unk_token, "BPE")
        if unk is not None:
            ids.append(unk)
        return ids

    def _merge(self, sym: list[int]) -> list[int]:
        """tokenizers' Word::merge_all: a heap of (rank, position) over adjacent pairs, stale entries skipped."""
        n = len(sym)
        if n < 2:
            return sym
        merges = self.merges
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        alive = [True] * n
        heap = []
        for i in range(n - 1):
            m = merges.get((sym[i], sym[i + 1]))
            if m is not None:
                heap.append((m[0], i, m[1]))
        heapq.heapify(heap)
        while heap:
            _, pos, new_id = heapq.heappop(heap)
            if not alive[pos]:
                continue
            right = nxt[pos]
            if right == -1:
                continue
            m = merges.get((sym[pos], sym[right]))
            if m is None or m[1] != new_id:
                continue
            sym[pos] = new_id
            alive[right] = False
            after = nxt[right]
            nxt[pos] = after
            if after != -1:
                prv[after] = pos
            before = prv[pos]
            if before != -1:
                m = merges.get((sym[before], new_id))
                if m is not None:
                    heapq.heappush(heap, (m[0], before, m[1]))
            if after != -1:
                m = merges.get((new_id, sym[after]))
                if m is not None:
                    heapq.heappush(heap, (m[0], pos, m[1]))
        return [s for s, keep in zip(sym, alive) if keep]

    def _tokenize(self, word: str) -> list[int]:
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        return self._merge(self._symbols(word))


class _WordPiece(_Model):
    """Greedy longest match from the left; the whole word is unk if any part has no match."""

    def __init__(self, spec: dict):
        super().__init__()
        self.vocab: dict[str, int] = dict(spec.get("vocab") or {})
        self.unk_token: str | None = spec.get("unk_token", "[UNK]")
        self.prefix: str = spec.get("continuing_subword_prefix", "##")
        self.max_chars = int(spec.get("max_input_chars_per_word", 100))

    def _tokenize(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [_vocab_id(self.vocab, self.unk_token, "WordPiece")]
        ids: list[int] = []
        start, n = 0, len(word)
        while start < n:
            end = n
            found = None
            while start < end:
                sub = word[start:end] if start == 0 else self.prefix + word[start:end]
                found = self.vocab.get(sub)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [_vocab_id(self.vocab, self.unk_token, "WordPiece")]
            ids.append(found)
            start = end
        return ids


class _WordLevel(_Model):
    def __init__(self, spec: dict):
        super().__init__()
        self.vocab: dict[str, int] = dict(spec.get("vocab") or {})
        self.unk_token: str | None = spec.get("unk_token")

    def _tokenize(self, word: str) -> list[int]:
        tid = self.vocab.get(word)
        return [tid if tid is not None else _vocab_id(self.vocab, self.unk_token, "WordLevel")]


class _Unigram(_Model):
    """tokenizers' Unigram::encode_optimized: Viterbi over the pieces, unknown characters fused into one unk."""

    UNK_PENALTY = 10.0

    def __init__(self, spec: dict):
        super().__init__()
        pieces = spec.get("vocab") or []
        self.ids: dict[str, int] = {}
        self.scores: list[float] = []
        for i, (piece, score) in enumerate(pieces):
            self.ids[piece] = i
            self.scores.append(float(score))
        self.unk_id: int | None = spec.get("unk_id")
        self.byte_fallback = bool(spec.get("byte_fallback", False))
        self.max_len = max((len(p) for p in self.ids), default=0)
        self.unk_score = min(self.scores, default=float("inf")) - self.UNK_PENALTY

    def _missing_unk(self) -> ValueError:
        return ValueError("tokenizer.json: the Unigram model met an unknown character but has no unk_id "
                          "(tokenizers fails here too)")

    def _pieces(self, s: str) -> list[str]:
        n = len(s)
        best_score = [0.0] * (n + 1)
        best_start: list[int | None] = [None] * (n + 1)
        best_id = [0] * (n + 1)
        ids, scores = self.ids, self.scores
        for start in range(n):
            here = best_score[start]
            single = False
            for length in range(1, min(self.max_len, n - start) + 1):
                tid = ids.get(s[start:start + length])
                if tid is None:
                    continue
                end = start + length
                score = scores[tid] + here
                if best_start[end] is None or score > best_score[end]:
                    best_score[end], best_start[end], best_id[end] = score, start, tid
                if length == 1:
                    single = True
            if not single:
                end = start + 1
                score = self.unk_score + here
                if best_start[end] is None or score > best_score[end]:
                    if self.unk_id is None:
                        raise self._missing_unk()
                    best_score[end], best_start[end], best_id[end] = score, start, self.unk_id
        out: list[str] = []
        fused: list[str] = []
        end = n
        while end > 0:
            start = best_start[end]
            if self.unk_id is not None and best_id[end] == self.unk_id:
                fused.append(s[start:end])
            else:
                if fused:
                    out.append("".join(reversed(fused)))
                    fused = []
                out.append(s[start:end])
            end = start
        if fused:
            out.append("".join(reversed(fused)))
        out.reverse()
        return out

    def _tokenize(self, word: str) -> list[int]:
        ids: list[int] = []
        for piece in self._pieces(word):
            tid = self.ids.get(piece)
            if tid is None and self.byte_fallback:
                byte_ids = [self.ids.get(f"<0x{b:02X}>") for b in piece.encode("utf-8")]
                if None not in byte_ids:
                    ids.extend(byte_ids)
                    continue
            if tid is None:
                if self.unk_id is None:
                    raise self._missing_unk()
                tid = self.unk_id
            ids.append(tid)
        return ids


_MODELS = {"BPE": _BPE, "WordPiece": _WordPiece, "WordLevel": _WordLevel, "Unigram": _Unigram}


def _build_model(spec: dict) -> _Model:
    kind = spec.get("type")
    if kind is None:  # old files: the type is implied by the fields
        kind = "Unigram" if isinstance(spec.get("vocab"), list) else "BPE" if "merges" in spec else "WordPiece"
    if kind not in _MODELS:
        raise ValueError(f"tokenizer.json uses model {kind!r}, which compact_tokenizer.py does not implement")
    return _MODELS[kind](spec)


# ----------------------------------------------------------------------------------------------------------------
# Added tokens
# ----------------------------------------------------------------------------------------------------------------


class _AddedTokens:
    """tokenizers' AddedVocabulary: tokens found in the text (leftmost-longest) before the model runs.

    Tokens with `normalized: false` are found in the raw text, the others in each normalized piece."""

    def __init__(self, tokens: list[dict], normalizer: Normalizer | None):
        self._info: dict[bool, dict[str, tuple[int, bool, bool, bool]]] = {False: {}, True: {}}
        for t in tokens:
            content = t.get("content", "")
            normalized = bool(t.get("normalized", not t.get("special", False)))
            if normalized and normalizer is not None:
                content = normalizer(content)
            if content:
                info = (int(t["id"]), bool(t.get("single_word")), bool(t.get("lstrip")), bool(t.get("rstrip")))
                self._info[normalized].setdefault(content, info)
        self._rx = {
            key: re.compile("|".join(re.escape(c) for c in sorted(info, key=len, reverse=True))) if info else None
            for key, info in self._info.items()
        }
        self._word: re.Pattern[str] | None = None
        self._any = bool(self._info[False] or self._info[True])

    def _is_word_char(self, c: str) -> bool:  # Rust regex \w
        if self._word is None:
            self._word = re.compile(_class(_named_set("rust_word")))
        return self._word.match(c) is not None

    def split(self, s: str, at_start: bool, normalized: bool) -> list[tuple[str, int | None, bool]]:
        """AddedVocabulary::find_matches: (text, added token id or None, starts the text) covering `s`."""
        rx = self._rx[normalized]
        if rx is None or not s:
            return [(s, None, at_start)]
        info = self._info[normalized]
        out: list[tuple[str, int | None, bool]] = []
        offset = 0
        for m in rx.finditer(s):
            start, stop = m.span()
            tid, single_word, lstrip, rstrip = info[m.group()]
            if single_word:
                before_ok = start == 0 or not self._is_word_char(s[start - 1])
                after_ok = stop == len(s) or not self._is_word_char(s[stop])
                if not (before_ok and after_ok):
                    continue
            if lstrip:
                start = max(len(s[:start].rstrip(_WHITE_SPACE_CHARS)), offset)
            if rstrip:
                stop = len(s) - len(s[stop:].lstrip(_WHITE_SPACE_CHARS))
            if offset < start:
                out.append((s[offset:start], None, at_start and offset == 0))
            out.append((s[start:stop], tid, False))
            offset = stop
        if offset != len(s):
            out.append((s[offset:], None, at_start and offset == 0))
        return out

    def extract_and_normalize(self, text: str, normalizer: Normalizer | None) -> list[tuple[str, int | None, bool]]:
        if not self._any:
            return [(normalizer(text) if normalizer else text, None, True)]
        out = []
        for piece, tid, at_start in self.split(text, True, normalized=False):
            if tid is not None:
                out.append((piece, tid, at_start))
            elif piece:
                out.extend(self.split(normalizer(piece) if normalizer else piece, at_start, normalized=True))
        return out


# ----------------------------------------------------------------------------------------------------------------
# tokenizer.json
# ----------------------------------------------------------------------------------------------------------------


class JsonTokenizer:
    """A tokenizer.json, encoding as `tokenizers.Tokenizer.encode(text, add_special_tokens=False).ids` does."""

    def __init__(self, spec: dict):
        if "model" not in spec:
            raise ValueError("tokenizer.json has no model")
        self._normalizer = _build_normalizer(spec.get("normalizer"))
        self._pre_tokenizer = _build_pre_tokenizer(spec.get("pre_tokenizer"))
        self._model = _build_model(spec["model"])
        self._added = _AddedTokens(spec.get("added_tokens") or [], self._normalizer)
        self._truncation = spec.get("truncation")
        self._padding = spec.get("padding")
        if self._padding is not None:
            strategy = self._padding.get("strategy", "BatchLongest")
            if strategy != "BatchLongest" and not (isinstance(strategy, dict) and "Fixed" in strategy):
                raise ValueError(f"tokenizer.json uses padding strategy {strategy!r}, which compact_tokenizer.py "
                                 "does not implement")

    @classmethod
    def from_file(cls, path: str | Path) -> JsonTokenizer:
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    @classmethod
    def from_str(cls, text: str) -> JsonTokenizer:
        return cls(json.loads(text))

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece, tid, at_start in self._added.extract_and_normalize(text, self._normalizer):
            if tid is not None:
                ids.append(tid)
                continue
            if not piece:
                continue
            words = self._pre_tokenizer(piece, at_start) if self._pre_tokenizer else [(piece, at_start)]
            for word, _ in words:
                ids.extend(self._model.tokenize(word))
        return self._truncate_and_pad(ids)

    def _truncate_and_pad(self, ids: list[int]) -> list[int]:
        trunc = self._truncation
        if trunc is not None:
            max_length = int(trunc.get("max_length", 512))
            if len(ids) > max_length:
                ids = ids[len(ids) - max_length:] if trunc.get("direction") == "Left" else ids[:max_length]
        pad = self._padding
        if pad is not None:
            strategy = pad.get("strategy", "BatchLongest")
            target = strategy["Fixed"] if isinstance(strategy, dict) else len(ids)
            multiple = pad.get("pad_to_multiple_of")
            if multiple and target % multiple:
                target += multiple - target % multiple
            if len(ids) < target:
                fill = [int(pad.get("pad_id", 0))] * (target - len(ids))
                ids = fill + ids if pad.get("direction") == "Left" else ids + fill
        return ids


# ----------------------------------------------------------------------------------------------------------------
# The bundle's tokenizer
# ----------------------------------------------------------------------------------------------------------------


class BundleTokenizer:
    """A bundle's tokenizer_config.json (+ tokenizer.json): ids and attention mask, as compact's training side
    (`compact.models.tokenizer`) makes them.

    Types: "bytes" (UTF-8 bytes + 3, BOS 1, EOS 2, PAD 0) and "hf" (a tokenizer.json with explicit bos/eos/pad
    ids). A text longer than context_length keeps its first context_length - 1 ids and ends with EOS: the text
    tower pools at the EOS."""

    def __init__(self, encode: Callable[[str], list[int]], context_length: int, bos_id: int | None, eos_id: int,
                 pad_id: int):
        if context_length < 1:
            raise ValueError(f"context_length must be at least 1, got {context_length}")
        self._encode = encode
        self.context_length = int(context_length)
        self.bos_id = bos_id
        self.eos_id = int(eos_id)
        self.pad_id = int(pad_id)

    @classmethod
    def from_folder(cls, folder: str | Path) -> BundleTokenizer:
        folder = Path(folder)
        path = folder / TOKENIZER_CONFIG
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; an export bundle needs its tokenizer config")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        return cls.from_config(config, folder)

    @classmethod
    def from_config(cls, config: dict, folder: str | Path = ".") -> BundleTokenizer:
        kind = config.get("type")
        context_length = int(config["context_length"])
        if kind == "bytes":
            return cls(lambda text: [b + 3 for b in text.encode("utf-8")], context_length, 1, 2, 0)
        if kind == "hf":
            path = Path(folder) / config.get("file", TOKENIZER_JSON)
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing; the bundle's tokenizer is incomplete")
            bos = config.get("bos_id")
            return cls(JsonTokenizer.from_file(path).encode, context_length, None if bos is None else int(bos),
                       int(config["eos_id"]), int(config["pad_id"]))
        raise ValueError(f"{TOKENIZER_CONFIG}: tokenizer type {kind!r}, which compact_tokenizer.py does not "
                         "implement (known: 'bytes', 'hf')")

    def encode(self, text: str) -> list[int]:
        """The ids of one text with BOS (if any) and EOS, neither padded nor truncated."""
        head = [self.bos_id] if self.bos_id is not None else []
        return head + self._encode(text) + [self.eos_id]

    def __call__(self, texts: str | Sequence[str],
                 pad_to: str = "longest") -> tuple[list[list[int]], list[list[int]]]:
        """(ids, mask) as lists of rows, truncated to context_length; padded with pad_id to the longest row
        (pad_to="longest") or to context_length (pad_to="max_length"). One string counts as one text."""
        if pad_to not in ("longest", "max_length"):
            raise ValueError(f"pad_to must be 'longest' or 'max_length', not {pad_to!r}")
        if isinstance(texts, str):
            texts = [texts]
        rows = []
        for text in texts:
            ids = self.encode(text)
            if len(ids) > self.context_length:
                ids = ids[: self.context_length - 1] + [self.eos_id]
            rows.append(ids)
        width = self.context_length if pad_to == "max_length" else max((len(r) for r in rows), default=0)
        ids_out = [r + [self.pad_id] * (width - len(r)) for r in rows]
        mask_out = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
        return ids_out, mask_out
