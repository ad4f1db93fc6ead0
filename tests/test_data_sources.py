"""Tests for compact.data.sources: the registry, tables, webdataset shards and image folders."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import compact.data.sources as sources
from compact.data.sources import list_sources, open_eval_data, register_source
from compact.data.types import EvalData, ListImageSource
from compact.errors import DataError


def _image(path: Path, size: tuple[int, int] = (6, 4), colour: tuple[int, int, int] = (255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _png(size: tuple[int, int] = (5, 3), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (0, 255, 0)).save(buffer, fmt)
    return buffer.getvalue()


def _error(spec: object, **kw: Any) -> str:
    with pytest.raises(DataError) as info:
        open_eval_data(spec, **kw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


# --- registry ---------------------------------------------------------------------------------------------


def test_builtin_sources_in_order() -> None:
    assert list_sources()[:3] == ["table", "webdataset", "imagefolder"]


def test_registered_source_is_tried_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))

    @register_source("dummy")
    class Dummy:
        @classmethod
        def matches(cls, spec: str, **kw: Any) -> bool:
            return spec.startswith("dummy")

        @classmethod
        def open(cls, spec: str, **kw: Any) -> EvalData:
            return EvalData(name=spec, images=ListImageSource([], lambda key: Image.new("RGB", (1, 1))))

    assert list_sources()[-1] == "dummy" and Dummy.name == "dummy"  # type: ignore[attr-defined]
    assert open_eval_data("dummy:n=10").name == "dummy:n=10"
    with pytest.raises(ValueError):
        register_source("dummy")(type("Other", (Dummy,), {}))


def test_unrecognised_spec_lists_formats(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.txt")
    assert "no such file" in message and ".csv" in message and ".tar" in message and "class_names" in message
    (tmp_path / "cls").mkdir()
    assert "pass class_names" in _error(tmp_path)


# --- tables -----------------------------------------------------------------------------------------------


def test_csv_with_lang_dedupes_images(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", (6, 4))
    _image(tmp_path / "img" / "b.png", (3, 2))
    table = tmp_path / "caps.csv"
    table.write_text('image,caption,lang\na.png,a red square,en\n./a.png,"ein rotes, Quadrat",de\n'
                     "img/b.png,small red,en\n\na.png,un carré rouge,fr\n", encoding="utf-8")
    data = open_eval_data(table)
    assert data.name == "caps" and len(data.images) == 2
    assert [data.images.key(i) for i in range(2)] == ["a.png", "img/b.png"]
    assert data.pairs == {"en": [(0, "a red square"), (1, "small red")], "de": [(0, "ein rotes, Quadrat")],
                          "fr": [(0, "un carré rouge")]}
    assert data.classification is None and data.languages() == ["de", "en", "fr"]
    image = data.images.load(1)
    assert image.mode == "RGB" and image.size == (3, 2)
    assert pickle.loads(pickle.dumps(data.images)).load(0).size == (6, 4)


def test_tsv_without_lang_defaults_to_english(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    table = tmp_path / "caps.tsv"
    table.write_text("Caption\tImage\textra\na cat, sitting\ta.png\tx\n", encoding="utf-8")
    assert open_eval_data(str(table)).pairs == {"en": [(0, "a cat, sitting")]}


def test_jsonl(tmp_path: Path) -> None:
    _image(tmp_path / "x" / "a.jpg")
    table = tmp_path / "caps.jsonl"
    rows = [{"image": "x/a.jpg", "caption": "rot", "lang": "de"}, {"image": "x/a.jpg", "caption": "red"}]
    table.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    data = open_eval_data(table)
    assert len(data.images) == 1 and data.pairs == {"de": [(0, "rot")], "en": [(0, "red")]}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a.png,a cat\n", ["missing required column(s) image, caption", "found: a.png, a cat", "header"]),
        ("img,caption\na.png,x\n", ["missing required column(s) image", "found: img, caption"]),
        ("image,caption\na.png,ok\na.png,   \n", ["line 3", "empty caption"]),
        ("image,caption\na.png,a cat, sitting\n", ["line 2", "3 fields", "quote"]),
        ("image,caption,lang\na.png,ok,english\n", ["line 2", "'english'", "language code"]),
        ("image,caption,lang\na.png,ok,\n", ["line 2", "empty lang"]),
        ("", ["empty", "header"]),
        ("image,caption\n", ["no rows"]),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, words: list[str]) -> None:
    _image(tmp_path / "a.png")
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    message = _error(tmp_path / "t.csv")
    assert "t.csv" in message
    for word in words:
        assert word in message


def test_missing_images_are_reported_up_front(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    lines = ["image,caption", "a.png,ok"] + [f"m{i}.png,cap" for i in range(5)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = _error(tmp_path / "t.csv")
    assert "not found" in message and "m0.png (line 3)" in message and "and 2 more" in message
    assert str(tmp_path) in message


def test_jsonl_errors(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    table = tmp_path / "t.jsonl"
    table.write_text('{"image": "a.png", "caption": "ok"}\n{"image": "a.png", "caption": \n', encoding="utf-8")
    message = _error(table)
    assert "line 2" in message and "JSON" in message
    table.write_text('{"image": "a.png", "text": "ok"}\n', encoding="utf-8")
    message = _error(table)
    assert "line 1" in message and "caption" in message and "found: image, text" in message
    table.write_text('{"image": "a.png", "caption": ""}\n', encoding="utf-8")
    assert "empty caption" in _error(table)
    assert "not found" in _error(tmp_path / "missing.csv")


# --- webdataset -------------------------------------------------------------------------------------------


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_webdataset_single_shard(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "val.tar", {
        "000.jpg": _png(fmt="JPEG"), "000.txt": b"a green box\n",
        "001.png": _png((2, 7)), "001.json": _json({"captions": {"en": "green", "de": ["gruen", "Gruen!"]},
                                                   "label": 1}),
        "002.webp": _png(fmt="WEBP"), "002.json": _json({"caption": "vert", "lang": "fr"}),
        "README.md": b"ignored",
    })
    data = open_eval_data(shard)
    assert data.name == "val" and [data.images.key(i) for i in range(3)] == ["000", "001", "002"]
    assert data.pairs == {"en": [(0, "a green box"), (1, "green")], "de": [(1, "gruen"), (1, "Gruen!")],
                          "fr": [(2, "vert")]}
    assert data.classification is None
    image = data.images.load(1)
    assert image.mode == "RGB" and image.size == (2, 7)


def test_webdataset_folder_pattern_and_labels(tmp_path: Path) -> None:
    for i in range(2):
        _tar(tmp_path / f"shards-{i:03d}.tar", {f"{i}a.png": _png(), f"{i}a.json": _json({"caption": f"c{i}",
                                                                                         "label": i})})
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"en": {"0": "zero", "1": "one", "2": "two"}}), encoding="utf-8")
    for spec in (tmp_path, str(tmp_path / "shards-{000..001}.tar")):
        data = open_eval_data(spec)
        assert data.pairs == {"en": [(0, "c0"), (1, "c1")]} and len(data.images) == 2
    data = open_eval_data(str(tmp_path / "shards-{000..001}.tar"), class_names=names)
    assert data.name == "shards" and data.classification is not None
    assert data.classification.labels == [0, 1] and data.classification.num_classes == 3
    assert data.classification.prompts == {"en": [["zero"], ["one"], ["two"]]}
    assert "not found" in _error(str(tmp_path / "shards-{000..002}.tar"))


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ({"a.jpg": b"x"}, ["sample a", "image but no caption"]),
        ({"a.jpg": b"x", "a.txt": b"  \n"}, ["sample a", "empty caption"]),
        ({"a.jpg": b"x", "a.json": _json({"captions": {"en": ""}})}, ["sample a", "empty caption (en)"]),
        ({"a.txt": b"lonely"}, ["sample a", "caption but no image"]),
        ({"README.md": b"x", "b.cls": b"1"}, ["no usable samples", ".md", ".cls"]),
        ({"a.jpg": b"x", "a.json": b"{nope"}, ["sample a", "not valid JSON"]),
        ({"a.jpg": b"x", "a.json": _json({"caption": "x", "label": "1"})}, ["label must be an integer"]),
    ],
)
def test_webdataset_errors(tmp_path: Path, members: dict[str, bytes], words: list[str]) -> None:
    message = _error(_tar(tmp_path / "s.tar", members))
    assert "s.tar" in message
    for word in words:
        assert word in message


def test_webdataset_unreadable_shards(tmp_path: Path) -> None:
    (tmp_path / "empty.tar").write_bytes(b"")
    assert "zero bytes" in _error(tmp_path / "empty.tar")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    assert "not a readable tar" in _error(tmp_path / "junk.tar")
    full = _tar(tmp_path / "full.tar", {"a.jpg": b"x" * 5000, "a.txt": b"cap"})
    (tmp_path / "cut.tar").write_bytes(full.read_bytes()[:3000])
    assert "not a readable tar" in _error(tmp_path / "cut.tar")
    split = _tar(tmp_path / "split.tar", {"a.jpg": b"x", "a.txt": b"c", "b.jpg": b"x", "b.txt": b"c", "a.json": b"{}"})
    assert "also appears" in _error(split)
    assert "not found" in _error(tmp_path / "missing.tar")


def test_webdataset_bad_image_fails_on_load_with_its_name(tmp_path: Path) -> None:
    data = open_eval_data(_tar(tmp_path / "s.tar", {"k.jpg": b"garbage", "k.txt": b"cap"}))
    with pytest.raises(DataError, match=r"s\.tar:k\.jpg"):
        data.images.load(0)


# --- image folders ----------------------------------------------------------------------------------------


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "pets"
    _image(root / "dog" / "c.png", (3, 3))
    _image(root / "cat" / "b.jpg")
    _image(root / "cat" / "a.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"en": {"cat": "cat", "dog": "dog"}, "de": {"cat": "Katze", "dog": "Hund"}}))
    return root, names


def test_imagefolder(tmp_path: Path) -> None:
    root, names = _folder(tmp_path)
    templates = tmp_path / "templates.json"
    templates.write_text(json.dumps({"en": ["a photo of a {}.", "a {}"], "de": ["ein Foto: {}."]}))
    data = open_eval_data(root, class_names=names, templates=templates)
    assert data.name == "pets" and data.pairs == {} and data.languages() == ["de", "en"]
    assert [data.images.key(i) for i in range(3)] == ["cat/a.png", "cat/b.jpg", "dog/c.png"]
    view = data.classification
    assert view is not None and view.labels == [0, 0, 1] and view.num_classes == 2
    assert view.class_names == {"en": ["cat", "dog"], "de": ["Katze", "Hund"]}
    assert view.prompts == {"en": [["a photo of a cat.", "a cat"], ["a photo of a dog.", "a dog"]],
                            "de": [["ein Foto: Katze."], ["ein Foto: Hund."]]}
    assert data.images.load(2).size == (3, 3)
    default = open_eval_data(root, class_names=names).classification
    assert default is not None and default.prompts["de"] == [["Katze"], ["Hund"]]


def test_imagefolder_errors(tmp_path: Path) -> None:
    root, names = _folder(tmp_path)
    names.write_text(json.dumps({"en": {"cat": "cat", "dog": "dog"}, "de": {"cat": "Katze"}}))
    message = _error(root, class_names=names)
    assert "language de" in message and "dog" in message and "names.json" in message
    names.write_text(json.dumps({"en": {"cat": "cat", "dog": "dog"}}))
    templates = tmp_path / "t.json"
    templates.write_text(json.dumps({"en": ["a photo of a cat"]}))
    message = _error(root, class_names=names, templates=templates)
    assert "'a photo of a cat'" in message and "{}" in message
    (root / "bird").mkdir()
    assert "bird" in _error(root, class_names=names) and "no images" in _error(root, class_names=names)
    (tmp_path / "void").mkdir()
    assert "empty" in _error(tmp_path / "void", class_names=names)
