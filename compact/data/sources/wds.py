"""Webdataset shards: tar files whose members `key.<ext>` group into samples.

A sample is one image (`key.jpg`, `.jpeg`, `.png` or `.webp`) plus its caption(s), from either
- `key.txt`: one English caption (or in the language named by `"lang"` in `key.json`), or
- `key.json`: `{"caption": str, "lang": str}` (lang defaults to "en") and/or `{"captions": {lang: str}}`
  (a list of strings per language also works), optionally with `"label": int` for classification.
When `key.json` carries captions, `key.txt` is ignored. Samples with neither image nor caption (other
files) are skipped. Sample keys must be unique over all shards.

The spec is a `.tar` file, a folder of `.tar` shards (all of them, sorted by name) or a brace pattern such
as `shards-{000..003}.tar`. Shards are read with the `webdataset` package's tar iterators (the same
grouping rules as training pipelines, without its URL/shuffling machinery); images are kept in memory as
encoded bytes and decoded on `load`. With `class_names` (`{lang: {"0": name, "1": name, ...}}`, one name
per label) and optional `templates`, labelled shards also get a classification view.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import braceexpand
from PIL import Image
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

from compact.data.images import load_image
from compact.data.sources import register_source
from compact.data.sources.table import DEFAULT_LANG, check_lang
from compact.data.text import check_caption_text
from compact.data.types import ClassificationView, EvalData, ListImageSource
from compact.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_BRACE_RE = re.compile(r"\{[^{}]*(\.\.|,)[^{}]*\}")


@dataclass
class _Collected:
    """Everything read from the shards so far."""

    keys: list[str] = field(default_factory=list)
    blobs: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # key -> (name for messages, bytes)
    where: dict[str, str] = field(default_factory=dict)  # key -> shard it came from
    labels: list[int] = field(default_factory=list)
    pairs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


@register_source("webdataset")
class WebDatasetSource:
    """Image-caption pairs (and optional labels) from webdataset tar shards."""

    description = "webdataset shards: a .tar file, a folder of .tar files, or a pattern like shards-{000..003}.tar"

    @classmethod
    def matches(cls, spec: str, **kw: object) -> bool:
        """A path or brace pattern ending in .tar, or a folder holding .tar files."""
        if spec.lower().endswith(".tar"):
            return True
        path = Path(spec)
        return path.is_dir() and any(p.suffix.lower() == ".tar" and p.is_file() for p in path.iterdir())

    @classmethod
    def open(cls, spec: str, *, class_names: str | Path | None = None, templates: str | Path | None = None,
             **kw: object) -> EvalData:
        """Read every shard into memory and return its images, captions and (optionally) labels."""
        shards = _shard_paths(spec)
        data = _Collected()
        for shard in shards:
            _read_shard(shard, data)
        log.info("webdataset %s: %d shards, %d images, captions in %s", spec, len(shards), len(data.keys),
                 ", ".join(data.pairs))
        view = _classification(spec, data.labels, class_names, templates)
        loader = functools.partial(_load_blob, data.blobs)
        images = ListImageSource(data.keys, loader)
        return EvalData(name=_name(spec), images=images, pairs=data.pairs, classification=view)


def _name(spec: str) -> str:
    """A dataset name: the folder name, the shard's stem, or a pattern's text before the braces."""
    path = Path(spec)
    if path.is_dir():
        return path.name
    stem = path.name[: -len(".tar")] if path.name.lower().endswith(".tar") else path.name
    return stem.split("{")[0].rstrip("-_.") or "webdataset"


def _shard_paths(spec: str) -> list[Path]:
    """Expand the spec into shard paths and check that they all exist."""
    path = Path(spec)
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if p.suffix.lower() == ".tar" and p.is_file())
    elif _BRACE_RE.search(spec):
        shards = [Path(p) for p in braceexpand.braceexpand(spec)]
    else:
        shards = [path]
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"webdataset shard(s) not found: {', '.join(missing[:3])}{more}; check the path or pattern")
    return shards


def _read_shard(shard: Path, data: _Collected) -> None:
    """Add the usable samples of one shard to `data`; raise DataError if there are none."""
    if shard.stat().st_size == 0:
        raise DataError(f"webdataset shard {shard} is empty (zero bytes); re-create it")
    usable, seen_exts = 0, Counter()
    for sample in _samples(shard):
        seen_exts.update(k for k in sample if not k.startswith("__"))
        if _add_sample(shard, sample, data):
            usable += 1
    if usable == 0:
        found = ", ".join(f".{ext}" for ext in sorted(seen_exts)) or "no files"
        raise DataError(f"webdataset shard {shard} has no usable samples (found {found}); each sample needs "
                        "key.jpg|jpeg|png|webp plus key.txt or key.json with its caption")


def unsafe_members(shard: Path) -> list[tuple[str, str]]:
    """(name, why) for every member that is not a plain file with a plain relative name: links, devices, absolute
    names, names with '..'. compact never extracts a tar (members are read into memory), so these cannot write
    anywhere; they are skipped and reported so a hostile or broken shard is visible."""
    out = []
    try:
        with tarfile.open(shard, "r:*") as tar:  # headers only: seeks over the data of uncompressed shards
            for m in tar:
                if m.issym() or m.islnk():
                    out.append((m.name, f"{'symlink' if m.issym() else 'hard link'} to {m.linkname!r}"))
                elif not (m.isreg() or m.isdir()):
                    out.append((m.name, "not a regular file"))
                elif not _safe_name(m.name):
                    out.append((m.name, "absolute or '..' path"))
    except (tarfile.TarError, OSError, EOFError):
        return out  # the read in `_samples` reports an unreadable shard
    return out


def _safe_name(name: str) -> bool:
    return bool(name) and not name.startswith(("/", "\\")) and ".." not in re.split(r"[/\\]", name) \
        and "\x00" not in name


def _samples(shard: Path) -> Iterator[dict[str, Any]]:
    """The samples of one tar shard, grouped by key with webdataset's own rules (suffixes lower-cased). Unsafe
    members are skipped (webdataset already skips links and devices) and reported once per shard."""
    bad = unsafe_members(shard)
    if bad:
        kinds = Counter(why.split(" to ")[0] for _, why in bad)
        shown = "; ".join(f"{n!r}: {why}" for n, why in bad[:3])
        log.warning("webdataset shard %s: skipped %d unsafe member(s) (%s; e.g. %s%s)", shard, len(bad),
                    ", ".join(f"{k}: {v}" for k, v in kinds.items()), shown, "; ..." if len(bad) > 3 else "")
    # A sample that lost a member this way (a caption whose image was a symlink) is skipped whole.
    bad_keys = {base_plus_ext(n)[0] for n, _ in bad} - {None}
    with shard.open("rb") as stream:
        try:
            for sample in group_by_keys(tar_file_expander([{"url": str(shard), "stream": stream}],
                                                          select_files=_safe_name)):
                if sample["__key__"] not in bad_keys:
                    yield sample
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            # webdataset appends " @ <stream>" to the message; keep the reason only
            reason = " ".join(str(exc.args[0] if exc.args else exc).split(" @ ")[0].split()) or type(exc).__name__
            raise DataError(f"webdataset shard {shard} is not a readable tar file ({reason}); re-create it") from exc


def _add_sample(shard: Path, sample: dict[str, Any], data: _Collected) -> bool:
    """Validate one sample and add it; False when it has neither image nor caption (skipped)."""
    key = sample["__key__"]
    where = f"webdataset shard {shard} sample {key}"
    images = [ext for ext in IMAGE_EXTS if ext in sample]
    if key in data.blobs and (images or "txt" in sample or "json" in sample):
        raise DataError(f"{where}: the key {key} also appears in {data.where[key]}; sample keys must be unique "
                        "and a sample's files adjacent in the tar")
    captions, label = _captions(sample, where)
    if not images:
        if captions:
            raise DataError(f"{where}: has a caption but no image ({', '.join(IMAGE_EXTS)}); add the image or "
                            "drop the caption")
        return False
    if len(images) > 1:
        raise DataError(f"{where}: has several images ({', '.join(images)}); keep one image per sample")
    if not captions:
        raise DataError(f"{where}: has an image but no caption; add {key}.txt or {key}.json with a caption")
    index = len(data.keys)
    data.keys.append(key)
    data.blobs[key] = (f"{shard}:{key}.{images[0]}", sample[images[0]])
    data.where[key] = str(shard)
    data.labels.append(label)
    for lang, texts in captions.items():
        data.pairs.setdefault(lang, []).extend((index, text) for text in texts)
    return True


def _captions(sample: dict[str, Any], where: str) -> tuple[dict[str, list[str]], int]:
    """The captions per language and the label (-1 if none) of a sample."""
    captions: dict[str, list[str]] = {}
    label, txt_lang = -1, DEFAULT_LANG
    if "json" in sample:
        meta = _json(sample["json"], where)
        txt_lang = check_lang(_text(meta.get("lang", DEFAULT_LANG), where, "lang"), where)
        if "caption" in meta:
            captions[txt_lang] = [_text(meta["caption"], where, "caption")]
        if "captions" in meta:
            _add_caption_map(meta["captions"], where, captions)
        label = _label(meta, where)
    if "txt" in sample and not captions:
        try:
            text = sample["txt"].decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: the .txt caption is not valid UTF-8; save it as UTF-8") from exc
        captions[txt_lang] = [_text(text, where, "caption")]
    return captions, label


def _json(blob: bytes, where: str) -> dict[str, Any]:
    """Parse a sample's .json member, which must be an object."""
    try:
        meta = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: the .json member is not valid JSON ({exc}); fix it") from exc
    if not isinstance(meta, dict):
        raise DataError(f'{where}: the .json member must be an object like {{"caption": "...", "lang": "en"}}')
    return meta


def _add_caption_map(value: Any, where: str, captions: dict[str, list[str]]) -> None:
    """Merge a `{"captions": {lang: str | [str, ...]}}` block into `captions`."""
    if not isinstance(value, dict) or not value:
        raise DataError(f'{where}: "captions" must be a non-empty object like {{"en": "...", "de": "..."}}')
    for lang, texts in value.items():
        check_lang(lang, where)
        items = texts if isinstance(texts, list) and texts else [texts]
        captions.setdefault(lang, []).extend(_text(t, where, f"caption ({lang})") for t in items)


def _text(value: Any, where: str, what: str) -> str:
    """A non-empty, stripped string, or DataError."""
    if not isinstance(value, str):
        raise DataError(f"{where}: the {what} must be a string, got {type(value).__name__}; fix it")
    if not value.strip():
        raise DataError(f"{where}: empty {what}; write one or remove the sample")
    return check_caption_text(value.strip(), where, what)


def _label(meta: dict[str, Any], where: str) -> int:
    """The optional integer label of a sample (-1 when absent)."""
    if "label" not in meta:
        return -1
    label = meta["label"]
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise DataError(f"{where}: label must be an integer >= 0, got {label!r}; fix it or drop it")
    return label


def _classification(spec: str, labels: list[int], class_names: Optional[str | Path],
                    templates: Optional[str | Path]) -> Optional[ClassificationView]:
    """A classification view for labelled shards when class names were given, else None."""
    from compact.data.sources.imagefolder import build_view, load_templates, parse_class_names, read_json

    labelled = any(label >= 0 for label in labels)
    if class_names is None:
        if templates is not None:
            raise DataError(f"webdataset {spec}: templates need class_names too; pass both or neither")
        if labelled:
            log.info("webdataset %s has labels; pass class_names to also evaluate zero-shot classification", spec)
        return None
    if not labelled:
        raise DataError(f"webdataset {spec}: class_names given but no sample has a \"label\" in its .json; add "
                        "labels or drop class_names")
    raw = read_json(class_names, "class_names")
    declared = [int(k) for v in (raw.values() if isinstance(raw, dict) else []) if isinstance(v, dict)
                for k in v if isinstance(k, str) and k.isdigit()]
    num_classes = max(declared + labels) + 1
    keys = [str(i) for i in range(num_classes)]
    names = parse_class_names(raw, class_names, keys, "label")
    return build_view(list(labels), names, load_templates(templates, list(names)))


def _load_blob(blobs: dict[str, tuple[str, bytes]], key: str) -> Image.Image:
    """Decode the in-memory image of sample `key`."""
    name, blob = blobs[key]
    return load_image(blob, name=name)
