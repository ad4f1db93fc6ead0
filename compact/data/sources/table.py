"""Caption tables: CSV, TSV or JSONL with one row per caption: image, caption and optionally lang.

- CSV/TSV need a header row naming the columns (any order, case-insensitive, extra columns ignored);
  captions that contain the delimiter must be quoted. JSONL holds one object per line with keys
  "image", "caption" and optionally "lang".
- Image paths are relative to the table's folder (absolute paths also work). Rows naming the same image
  share one image index, so an image with captions in five languages is embedded once.
- Without a lang column (or key), every caption is English ("en"). With one, every row must fill it in
  with a code like "en", "de", "pt-BR" or "zh-Hans".
- Every image path is checked up front, so that a missing file is reported before a long evaluation.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Optional

from PIL import Image

from compact.data.images import load_image
from compact.data.sources import register_source
from compact.data.text import check_caption_text
from compact.data.types import EvalData, ListImageSource
from compact.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_LANG = "en"
LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
REQUIRED_COLUMNS = ("image", "caption")
SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None}
_MAX_LISTED = 3  # missing images named in one message


def check_lang(code: str, where: str) -> str:
    """Return `code` if it looks like a BCP-47 language code, else raise DataError naming `where`."""
    if not LANG_RE.match(code):
        raise DataError(f"{where}: {code!r} is not a language code; use a lower-case BCP-47 code such as "
                        "en, de, pt-BR or zh-Hans")
    return code


@dataclass(frozen=True)
class _Row:
    line: int
    image: str
    caption: str
    lang: str


@register_source("table")
class TableSource:
    """Image-caption pairs from a .csv, .tsv or .jsonl table."""

    description = "a .csv/.tsv/.jsonl table with columns image,caption[,lang]"

    @classmethod
    def matches(cls, spec: str, **kw: object) -> bool:
        """Any path ending in .csv, .tsv or .jsonl (a missing file is reported by `open`)."""
        return Path(spec).suffix.lower() in SUFFIXES

    @classmethod
    def open(cls, spec: str, *, class_names: object = None, templates: object = None, **kw: object) -> EvalData:
        """Read and validate the whole table, then return its images and captions."""
        path = Path(spec)
        if class_names is not None or templates is not None:
            raise DataError(f"table {path}: class_names and templates only apply to image folders and labelled "
                            "webdataset shards; drop them")
        if not path.is_file():
            raise DataError(f"table {path} not found; check the path")
        rows = _read_rows(path)
        if not rows:
            raise DataError(f"table {path} has no rows; add one row per caption: image,caption[,lang]")
        return _build(path, rows)


def _read_rows(path: Path) -> list[_Row]:
    """Parse every row of the table, raising DataError at the first bad one."""
    delimiter = SUFFIXES[path.suffix.lower()]
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            if delimiter is None:
                return list(_jsonl_rows(handle, path))
            return list(_csv_rows(handle, path, delimiter))
    except UnicodeDecodeError as exc:
        raise DataError(f"table {path} is not valid UTF-8 ({exc.reason} at byte {exc.start}); save it as "
                        "UTF-8") from exc


def _csv_rows(handle: IO[str], path: Path, delimiter: str) -> Iterator[_Row]:
    """Rows of a CSV/TSV file with a header row."""
    reader = csv.reader(handle, delimiter=delimiter)
    header = _next_record(reader, path)
    if header is None:
        raise DataError(f"table {path} is empty; add a header row image,caption[,lang] and one row per caption")
    columns = [name.strip().lower() for name in header]
    _check_columns(path, "line 1 (header)", columns)
    index = {name: i for i, name in enumerate(columns)}
    last = reader.line_num
    while (fields := _next_record(reader, path)) is not None:
        line, last = last + 1, reader.line_num
        if not any(field.strip() for field in fields):
            continue  # blank line
        if len(fields) != len(columns):
            raise DataError(f"table {path} line {line}: {len(fields)} fields but the header has {len(columns)}; "
                            f"quote values that contain {'a tab' if delimiter == chr(9) else 'a comma'}")
        lang = fields[index["lang"]] if "lang" in index else None
        yield _make_row(path, line, fields[index["image"]], fields[index["caption"]], lang)


def _next_record(reader: "csv._reader", path: Path) -> Optional[list[str]]:
    """The next CSV record, or None at the end; csv errors become DataError."""
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise DataError(f"table {path} line {reader.line_num}: malformed CSV ({exc}); check the quoting") from exc


def _check_columns(path: Path, where: str, found: list[str]) -> None:
    """Raise DataError if a required column (or JSON key) is missing."""
    missing = [name for name in REQUIRED_COLUMNS if name not in found]
    if missing:
        shown = ", ".join(found) if any(found) else "none"
        raise DataError(f"table {path} {where}: missing required column(s) {', '.join(missing)} (found: {shown}); "
                        "the table needs image and caption, plus lang optionally, with a header row for CSV/TSV")
    duplicated = sorted({name for name in found if name and found.count(name) > 1})
    if duplicated:
        raise DataError(f"table {path} {where}: column(s) {', '.join(duplicated)} appear more than once; "
                        "keep one of each")


def _jsonl_rows(handle: IO[str], path: Path) -> Iterator[_Row]:
    """Rows of a JSONL file: one object per non-blank line."""
    for line, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        where = f"table {path} line {line}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); write one object per "
                            'line like {"image": "a.jpg", "caption": "a cat", "lang": "en"}') from exc
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}; write one object per "
                            'line like {"image": "a.jpg", "caption": "a cat"}')
        _check_columns(path, f"line {line}", list(obj))
        for key in ("image", "caption", "lang"):
            if key in obj and not isinstance(obj[key], str):
                raise DataError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}; quote it")
        yield _make_row(path, line, obj["image"], obj["caption"], obj.get("lang"))


def _make_row(path: Path, line: int, image: str, caption: str, lang: Optional[str]) -> _Row:
    """Validate one row's values."""
    where = f"table {path} line {line}"
    image, caption = image.strip(), caption.strip()
    if not image:
        raise DataError(f"{where}: empty image path; fill it in or delete the row")
    if not caption:
        raise DataError(f"{where}: empty caption; write a caption or delete the row")
    check_caption_text(caption, where)
    if lang is None:
        lang = DEFAULT_LANG
    elif not lang.strip():
        raise DataError(f"{where}: empty lang; fill it in (e.g. en) or drop the lang column to mean English")
    return _Row(line, image, caption, check_lang(lang.strip(), where))


def _build(path: Path, rows: list[_Row]) -> EvalData:
    """Deduplicate images, check they exist and assemble the EvalData."""
    keys: list[str] = []
    index: dict[str, int] = {}
    first_line: dict[str, int] = {}
    pairs: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        key = posixpath.normpath(row.image)
        if key not in index:
            index[key], first_line[key] = len(keys), row.line
            keys.append(key)
        pairs.setdefault(row.lang, []).append((index[key], row.caption))
    base = path.parent
    _check_images_exist(path, base, keys, first_line)
    log.info("table %s: %d images, %d captions in %s", path, len(keys), len(rows), ", ".join(pairs))
    loader = functools.partial(_load_relative, base)
    return EvalData(name=path.stem, images=ListImageSource(keys, loader), pairs=pairs)


def _check_images_exist(path: Path, base: Path, keys: list[str], first_line: dict[str, int]) -> None:
    """Raise one DataError naming the first few image paths that are not files."""
    missing = [key for key in keys if not (base / key).is_file()]
    if not missing:
        return
    named = ", ".join(f"{key} (line {first_line[key]})" for key in missing[:_MAX_LISTED])
    more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    raise DataError(f"table {path}: image file(s) not found: {named}{more}; image paths are relative to the "
                    f"table's folder {base}, fix them or move the images there")


def _load_relative(base: Path, key: str) -> Image.Image:
    """Load the image `key` (relative to `base`); a module-level function so that loaders pickle."""
    return load_image(base / key)
