"""Image folders for zero-shot classification: `root/<class_dir>/*.jpg|png|...` plus class names per language.

- Class folders are the direct sub-folders of `root` (hidden ones skipped); label i is the i-th folder in
  sorted (plain string) order. Images are the files directly inside a class folder with an image suffix.
- `class_names` is a JSON file `{"en": {"cat_dir": "cat", ...}, "de": {"cat_dir": "Katze", ...}}` that names
  every class folder in every language.
- `templates` is an optional JSON file `{"en": ["a photo of a {}."], "de": ["ein Foto: {}."]}`; "{}" is
  replaced by the class name and the prompt embeddings of a class are averaged. Without it each prompt is
  the bare class name ("{}"). Languages whose grammar changes the name inside a sentence (case, gender,
  articles) should pass full templates written for them, or names that already fit the template.

The class-name and template helpers here are shared with the webdataset source (labels as class keys).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image

from compact.data.images import load_image
from compact.data.sources import register_source
from compact.data.sources.table import check_lang
from compact.data.types import ClassificationView, EvalData, ListImageSource
from compact.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_TEMPLATES = ("{}",)


@register_source("imagefolder")
class ImageFolderSource:
    """Zero-shot classification data from class sub-folders and a class-names JSON file."""

    description = "a folder of class sub-folders (root/<class>/*.jpg) together with class_names (a JSON file)"

    @classmethod
    def matches(cls, spec: str, *, class_names: object = None, **kw: object) -> bool:
        """A directory, when class names were given."""
        return class_names is not None and Path(spec).is_dir()

    @classmethod
    def open(cls, spec: str, *, class_names: str | Path | None = None, templates: str | Path | None = None,
             **kw: object) -> EvalData:
        """Scan the class folders and return an EvalData with a classification view and no pairs."""
        root = Path(spec)
        if class_names is None:
            raise DataError(f"image folder {root}: pass class_names, a JSON file naming each class folder per "
                            "language")
        class_dirs = _class_dirs(root)
        keys, labels = _scan_images(root, class_dirs)
        names = parse_class_names(read_json(class_names, "class_names"), class_names, class_dirs, "class folder")
        view = build_view(labels, names, load_templates(templates, list(names)))
        log.info("image folder %s: %d images in %d classes, languages %s", root, len(keys), len(class_dirs),
                 ", ".join(names))
        loader = functools.partial(_load_relative, root)
        return EvalData(name=root.name, images=ListImageSource(keys, loader), classification=view)


def _class_dirs(root: Path) -> list[str]:
    """The sorted names of the non-hidden sub-folders of `root`."""
    dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DataError(f"image folder {root} is empty (no class sub-folders); put images in "
                        f"{root}/<class>/<image>.jpg, one folder per class")
    return dirs


def _scan_images(root: Path, class_dirs: list[str]) -> tuple[list[str], list[int]]:
    """Image keys ("class_dir/file") and their labels, raising DataError for empty class folders."""
    keys: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, name in enumerate(class_dirs):
        files = sorted(p.name for p in (root / name).iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            empty.append(name)
        keys.extend(f"{name}/{file}" for file in files)
        labels.extend([label] * len(files))
    if empty:
        raise DataError(f"image folder {root}: class folder(s) {', '.join(empty)} contain no images "
                        f"({', '.join(IMAGE_SUFFIXES)}); add images or remove the empty folder(s)")
    return keys, labels


def read_json(path: str | Path, what: str) -> object:
    """Parse a small JSON file, raising DataError for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} not found; check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} file {path} is not valid UTF-8; save it as UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} file {path} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                        f"{exc.colno}); fix it") from exc


def parse_class_names(data: object, path: str | Path, keys: Sequence[str], what: str) -> dict[str, list[str]]:
    """Validate `{lang: {key: name}}` and return `{lang: [name per key, in the order of keys]}`."""
    where = f"class_names file {path}"
    if not isinstance(data, dict) or not data:
        raise DataError(f'{where}: expected a non-empty JSON object like {{"en": {{"{keys[0]}": "name"}}}}; fix it')
    names: dict[str, list[str]] = {}
    for lang, mapping in data.items():
        check_lang(lang, where)
        if not isinstance(mapping, dict):
            raise DataError(f'{where}: language {lang} must map each {what} to a name, like {{"{keys[0]}": "name"}}')
        missing = [key for key in keys if key not in mapping]
        if missing:
            raise DataError(f"{where}: language {lang} has no name for {what}(s) {', '.join(missing)}; add them")
        bad = [key for key in keys if not isinstance(mapping[key], str) or not mapping[key].strip()]
        if bad:
            raise DataError(f"{where}: language {lang} has an empty or non-string name for {what}(s) "
                            f"{', '.join(bad)}; write a name")
        extra = sorted(set(mapping) - set(keys))
        if extra:
            log.warning("%s: language %s names unknown %s(s) %s; ignoring them", where, lang, what, ", ".join(extra))
        names[lang] = [mapping[key].strip() for key in keys]
    return names


def load_templates(path: Optional[str | Path], langs: list[str]) -> dict[str, list[str]]:
    """Read `{lang: ["... {} ..."]}` for every language in `langs`; without a file, every prompt is "{}"."""
    if path is None:
        return {lang: list(DEFAULT_TEMPLATES) for lang in langs}
    where = f"templates file {path}"
    data = read_json(path, "templates")
    if not isinstance(data, dict):
        raise DataError(f'{where}: expected a JSON object like {{"en": ["a photo of a {{}}."]}}; fix it')
    missing = [lang for lang in langs if lang not in data]
    if missing:
        raise DataError(f"{where}: no templates for language(s) {', '.join(missing)}; add them")
    templates: dict[str, list[str]] = {}
    for lang in langs:
        entries = data[lang]
        if not isinstance(entries, list) or not entries or not all(isinstance(t, str) for t in entries):
            raise DataError(f'{where}: language {lang} needs a non-empty list of strings like ["a photo of a {{}}."]')
        for template in entries:
            if "{}" not in template:
                raise DataError(f'{where}: template {template!r} ({lang}) lacks "{{}}", where the class name goes; '
                                "add it")
        templates[lang] = list(entries)
    return templates


def build_view(labels: list[int], names: dict[str, list[str]], templates: dict[str, list[str]]) -> ClassificationView:
    """Fill every template with every class name, per language."""
    prompts = {lang: [[t.replace("{}", name) for t in templates[lang]] for name in class_names]
               for lang, class_names in names.items()}
    return ClassificationView(labels=labels, class_names=names, prompts=prompts)


def _load_relative(root: Path, key: str) -> Image.Image:
    """Load the image `key` (relative to `root`); a module-level function so that loaders pickle."""
    return load_image(root / key)
