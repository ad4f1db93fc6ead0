"""Training data for distillation: images with aligned captions, and parallel text.

    images + captions   an `EvalData` whose `parallel` pivot is set (the reference train split, or any source
                        `compact eval` reads that has an English column): the vision and align stages use it
    parallel text       (English, translation, lang) rows for the text stage: from the same data, from a TSV with
                        columns en / text / lang, or from a captions file plus a translations file
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from compact.data.text import check_caption_text
from compact.data.types import EvalData
from compact.errors import DataError
from compact.models.preprocess import PreprocessConfig, normalize_uint8, preprocess_images


@dataclass
class ParallelText:
    en: list[str] = field(default_factory=list)  # the pivot (English) caption of each row
    text: list[str] = field(default_factory=list)  # the same caption in `lang` (may be English itself)
    lang: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.en)

    def extend(self, other: "ParallelText") -> None:
        self.en += other.en
        self.text += other.text
        self.lang += other.lang

    def languages(self) -> list[str]:
        return sorted(set(self.lang))

    def check_langs(self, langs: Sequence[str]) -> None:
        have = set(self.lang)
        missing = [lg for lg in langs if lg not in have]
        if missing:
            raise DataError(f"language(s) {', '.join(missing)} in the recipe have no parallel text (the data has "
                            f"{', '.join(sorted(have)) or 'none'}); remove them from langs or add data for them")

    def only(self, langs: Sequence[str]) -> "ParallelText":
        keep = [i for i, lg in enumerate(self.lang) if lg in set(langs)]
        return ParallelText([self.en[i] for i in keep], [self.text[i] for i in keep], [self.lang[i] for i in keep])


def _row_error(path, line: int, what: str) -> DataError:
    return DataError(f"{path} line {line}: {what}; fill it in or drop the row")


def parallel_from_tsv(path: Path) -> ParallelText:
    """A TSV (or CSV) with a header naming the columns `en`, `text` (or `translation`) and `lang`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"parallel text file {path} does not exist")
    delim = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    out = ParallelText()
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delim)
        cols = set(reader.fieldnames or [])
        tcol = "text" if "text" in cols else "translation"
        missing = [c for c in ("en", tcol, "lang") if c not in cols]
        if missing:
            raise DataError(f"{path} is missing column(s) {missing}; it needs a header with en, text (or "
                            f"translation) and lang; it has {sorted(cols)}")
        for i, row in enumerate(reader, start=2):
            en, text, lang = ((row.get(k) or "").strip() for k in ("en", tcol, "lang"))
            if not en:
                raise _row_error(path, i, "the English caption is missing")
            if not text:
                raise _row_error(path, i, f"the translation is missing (lang {lang or '?'})")
            if not lang:
                raise _row_error(path, i, "the language code is missing")
            out.en.append(en)
            out.text.append(text)
            out.lang.append(lang)
    if not len(out):
        raise DataError(f"{path} has a header but no rows")
    return out


def _read_rows(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file {path} does not exist")
    if path.suffix.lower() == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line) | {"_line": i})
                except json.JSONDecodeError as e:
                    raise DataError(f"{path} line {i} is not valid JSON ({e.msg})") from None
        return rows
    delim = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    with open(path, encoding="utf-8", newline="") as f:
        return [r | {"_line": i} for i, r in enumerate(csv.DictReader(f, delimiter=delim), start=2)]


def parallel_from_files(captions: Path, translations: Path) -> ParallelText:
    """English captions (`id`, `caption`) plus translations (`id`, `lang`, `text`), joined on id."""
    caps = {}
    for r in _read_rows(captions):
        if "id" not in r or "caption" not in r:
            raise DataError(f"{captions} needs columns id and caption; it has {sorted(k for k in r if k != '_line')}")
        if not str(r["caption"]).strip():
            raise _row_error(captions, r["_line"], "the caption is empty")
        caps[str(r["id"])] = check_caption_text(str(r["caption"]).strip(), f"{captions} line {r['_line']}")
    out = ParallelText()
    for r in _read_rows(translations):
        for c in ("id", "lang", "text"):
            if c not in r:
                raise DataError(f"{translations} needs columns id, lang and text; it has "
                                f"{sorted(k for k in r if k != '_line')}")
        key = str(r["id"])
        if key not in caps:
            raise _row_error(translations, r["_line"], f"id {key!r} has no English caption in {captions}")
        if not str(r["text"] or "").strip():
            raise _row_error(translations, r["_line"], f"the translation is missing (lang {r['lang']})")
        out.en.append(caps[key])
        out.text.append(check_caption_text(str(r["text"]).strip(), f"{translations} line {r['_line']}", "translation"))
        out.lang.append(str(r["lang"]).strip())
    return out


def parallel_from_eval_data(data: EvalData, langs: Sequence[str]) -> ParallelText:
    if not data.parallel:
        raise DataError(f"{data.name} is not parallel text (no pivot language); give --parallel FILE.tsv")
    pivot = data.pairs[data.parallel]
    out = ParallelText()
    for lang in langs:
        rows = data.pairs.get(lang)
        if not rows:
            continue
        for (img, text), (pimg, en) in zip(rows, pivot):
            if img != pimg:
                raise DataError(f"{data.name}: captions in {lang} and {data.parallel} are not aligned")
            if not text.strip():
                raise DataError(f"{data.name}: image {img} has an empty {lang} caption; fill it in or drop it")
            out.en.append(en)
            out.text.append(text)
            out.lang.append(lang)
    return out


@dataclass
class ImageCaptionSet:
    """Preprocessed images (for the student) with their pivot caption and captions per language."""

    pixels: torch.Tensor  # (N, 3, H, W) uint8 when the images are already at the student's size, else float16
    uint8: bool
    captions: dict[str, list[str]]  # lang -> caption per image
    pivot: str
    preprocess: PreprocessConfig
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def batch_pixels(self, idx: torch.Tensor) -> torch.Tensor:
        if self.uint8:
            return normalize_uint8(self.pixels[idx], self.preprocess)
        return self.pixels[idx].float()


def image_caption_set(data: EvalData, pre: PreprocessConfig, langs: Sequence[str],
                      progress: Optional[Callable[[int, int], None]] = None, chunk: int = 512) -> ImageCaptionSet:
    if not data.parallel:
        raise DataError(f"{data.name} has no pivot language; the align stage needs captions aligned across languages")
    n = len(data.images)
    arr = getattr(data.images, "images", None)
    if isinstance(arr, np.ndarray) and arr.shape[1:3] == (pre.image_size, pre.image_size):
        pixels, is_u8 = torch.from_numpy(np.ascontiguousarray(arr)), True  # the reference: already at size
        if progress:
            progress(n, n)
    else:
        parts = []
        for s in range(0, n, chunk):
            ims = [data.images.load(i) for i in range(s, min(n, s + chunk))]
            parts.append(preprocess_images(ims, pre).half())
            if progress:
                progress(min(n, s + chunk), n)
        pixels, is_u8 = torch.cat(parts), False
    captions = {}
    for lang in dict.fromkeys([data.parallel, *langs]):
        rows = data.pairs.get(lang)
        if rows is None:
            continue
        by_img = {}
        for img, text in rows:
            by_img.setdefault(img, text)
        if len(by_img) != n:
            raise DataError(f"{data.name}: {n - len(by_img)} images have no {lang} caption; every image needs one "
                            "per language for the align stage")
        captions[lang] = [by_img[i] for i in range(n)]
    return ImageCaptionSet(pixels, is_u8, captions, data.parallel, pre, [data.images.key(i) for i in range(n)])


def content_hash(parts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]
