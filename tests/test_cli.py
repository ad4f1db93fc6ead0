"""The CLI as a user meets it: help, one-line errors for bad input, and the reference build end to end."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from compact.cli.main import cli
from compact.models.folder import save_model
from helpers import tiny_compact


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_user_error(result, *words):
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    err = [ln for ln in lines if ln.startswith("Error:")]
    assert len(err) == 1, result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in err[0], err[0]
    return err[0]


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_groups(flag):
    r = run(flag)
    assert r.exit_code == 0
    for cmd in ("reference", "eval", "teachers", "run", "distill", "prune", "quantize", "export", "bench"):
        assert cmd in r.output
    assert "compact run" in r.output and "Not built" not in r.output
    assert run("reference", flag).exit_code == 0 and "build" in run("reference", flag).output
    assert "--langs" in run("eval", flag).output


def test_teachers_lists_adapters():
    r = run("teachers")
    assert r.exit_code == 0
    for name in ("open_clip", "hf", "folder", "entrypoint", "reference"):
        assert name in r.output


@pytest.fixture
def model_dir(tmp_path):
    return save_model(tiny_compact(languages=("en", "de")), tmp_path / "model")


def _png(path, size=(40, 30), mode="RGB"):
    arr = np.random.default_rng(0).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").convert(mode).save(path)
    return path


@pytest.fixture
def table(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    p = tmp_path / "pairs.csv"
    p.write_text("image,caption,lang\na.png,a red circle,en\nb.png,a blue star,en\na.png,ein roter Kreis,de\n"
                 "b.png,ein blauer Stern,de\n")
    return p


def test_eval_csv_writes_report(model_dir, table, tmp_path):
    out = tmp_path / "out"
    r = run("eval", str(model_dir), "--data", str(table), "-o", str(out))
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_samples"] == 2 and rep["langs"] == ["de", "en"]
    assert set(rep["retrieval"]["en"]) == {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"}
    assert rep["retrieval"]["en"]["t2i_r5"] == 1.0  # only 2 images: R@5 is always a hit
    # agreement with itself is exact
    out2 = tmp_path / "out2"
    r = run("eval", str(model_dir), "--data", str(table), "--teacher", str(model_dir), "--langs", "de", "-o", str(out2))
    rep = json.loads((out2 / "report.json").read_text())
    assert rep["agreement"]["image_cos"] == pytest.approx(1.0, abs=1e-5)
    assert rep["agreement"]["text_cos"]["de"] == pytest.approx(1.0, abs=1e-5)


def test_eval_refuses_existing_output(model_dir, table, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert_user_error(run("eval", str(model_dir), "--data", str(table), "-o", str(out)), "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"


def test_missing_weights(model_dir, table):
    (model_dir / "model.safetensors").unlink()
    assert_user_error(run("eval", str(model_dir), "--data", str(table)), "model.safetensors is missing")


def test_corrupt_weights(model_dir, table):
    (model_dir / "model.safetensors").write_bytes(b"not a safetensors file at all")
    assert_user_error(run("eval", str(model_dir), "--data", str(table)), "corrupt")


def test_config_unknown_key_and_newer_version(model_dir, table):
    cfg = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**cfg, "colour": "blue"}))
    assert_user_error(run("eval", str(model_dir), "--data", str(table)), "unknown keys", "colour")
    (model_dir / "config.json").write_text(json.dumps({**cfg, "version": 7}))
    assert_user_error(run("eval", str(model_dir), "--data", str(table)), "version 7", "upgrade")


def test_unknown_language(model_dir, table):
    assert_user_error(run("eval", str(model_dir), "--data", str(table), "--langs", "en,xx"), "xx", "not in the data")


def test_language_model_lacks(tmp_path, table):
    m = save_model(tiny_compact(languages=("en",)), tmp_path / "en-only")
    assert_user_error(run("eval", str(m), "--data", str(table), "--langs", "de"), "not trained for", "de")


def test_csv_missing_columns(model_dir, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("path,text\na.png,hello\n")
    assert_user_error(run("eval", str(model_dir), "--data", str(p)), "missing", "image", "caption")


def test_empty_caption(model_dir, tmp_path):
    _png(tmp_path / "a.png")
    p = tmp_path / "empty.csv"
    p.write_text("image,caption\na.png,   \n")
    assert_user_error(run("eval", str(model_dir), "--data", str(p)), "empty")


def _cmyk(path):
    Image.new("CMYK", (20, 20), (10, 20, 30, 40)).save(path, "JPEG")


def _sixteen(path):
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(path)


def _zero(path):
    path.write_bytes(b"")


def _garbage(path):
    path.write_bytes(b"\x89PNG but not really" * 10)


@pytest.mark.parametrize("maker,word", [(_cmyk, "CMYK"), (_sixteen, "16-bit"), (_zero, "empty"),
                                        (_garbage, "not a recognised image")])
def test_bad_images(model_dir, tmp_path, maker, word):
    name = "bad.jpg" if maker is _cmyk else "bad.png"
    maker(tmp_path / name)
    p = tmp_path / "t.csv"
    p.write_text(f"image,caption\n{name},a caption\n")
    msg = assert_user_error(run("eval", str(model_dir), "--data", str(p)), name)
    assert word.lower() in msg.lower()


def test_huge_image(model_dir, tmp_path, monkeypatch):
    _png(tmp_path / "big.png", size=(400, 300))
    monkeypatch.setenv("COMPACT_MAX_IMAGE_PIXELS", "10000")
    p = tmp_path / "t.csv"
    p.write_text("image,caption\nbig.png,a caption\n")
    assert_user_error(run("eval", str(model_dir), "--data", str(p)), "big.png", "pixels")


@pytest.mark.slow
def test_reference_build_and_eval(quick_reference, tmp_path):
    r = run("reference", "build", "--quick")  # cached: reuses the session's build
    assert r.exit_code == 0, r.output
    assert "reused from cache" in r.output and "parameters" in r.output
    out = tmp_path / "ref-eval"
    r = run("reference", "eval", "--quick", "--langs", "en,de,zh", "-o", str(out))
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["langs"] == ["en", "de", "zh"]
    assert rep["n_samples"] == 600 and set(rep["zero_shot"]) == {"en", "de", "zh"}
    assert rep["retrieval"]["en"]["t2i_r10"] > 2 * max(rep["retrieval"]["de"]["t2i_r10"],
                                                       rep["retrieval"]["zh"]["t2i_r10"])
    r = run("eval", "reference-quick", "--data", "reference-quick:val", "--langs", "en")
    assert r.exit_code == 0 and "en" in r.output


def test_reference_eval_before_build(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPACT_CACHE", str(tmp_path / "empty-cache"))
    assert_user_error(run("reference", "eval", "--quick"), "compact reference build --size quick")
    assert_user_error(run("eval", "reference", "--data", "reference"), "compact reference build")
