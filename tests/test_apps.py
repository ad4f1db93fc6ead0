"""apps/: the photo search (CLI, index, web UI in headless Chromium) and the in-browser app (onnxruntime-web and
tokenizer.js in headless Chromium), against the Python side (`compact_bundle` + numpy) on the same inputs.

The browser tests need Debian's chromium + chromium-driver, apps/browser/node_modules and selenium (all from
apps/setup.sh); they skip, saying which is missing, only when one is. tokenizer.js is also checked through Node
against the bundles' Python tokenizer, id for id, on a few hundred strings in many scripts.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # apps/ is not an installed package: it runs from the repository root
    sys.path.insert(0, str(ROOT))

from apps.photo_search.__main__ import main as photo_search
from export.standalone.compact_bundle import Bundle
from export.standalone.compact_tokenizer import BundleTokenizer

BROWSER_APP = ROOT / "apps" / "browser"
TOKENIZER_JS = BROWSER_APP / "tokenizer.js"
ORT_JS = BROWSER_APP / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.js"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _browser_missing() -> str | None:
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        return "Debian's chromium and chromium-driver are not installed (run apps/setup.sh as root)"
    if not ORT_JS.is_file():
        return "apps/browser/node_modules has no onnxruntime-web (run apps/setup.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (run apps/setup.sh)"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (Node 18+ runs tokenizer.js)")


# ----------------------------------------------------------------------------------------------------------------
# Bundles and images
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_bundle(tmp_path_factory) -> Path:
    """A tiny random CLIP with the real (multilingual) CLIP BPE tokenizer, exported to ONNX."""
    from helpers import hf_tiny_clip

    from export.bundle import ExportConfig, export_model

    tmp = tmp_path_factory.mktemp("clip")
    out = tmp / "bundle"
    export_model(f"hf:{hf_tiny_clip(tmp / 'hf')}", "onnx", out, ExportConfig())
    return out


@pytest.fixture(scope="module")
def bytes_bundle(tmp_path_factory) -> Path:
    """A tiny random compact model with the byte tokenizer, exported to ONNX."""
    from helpers import tiny_compact

    from export.bundle import ExportConfig, export_model

    out = tmp_path_factory.mktemp("bytes") / "bundle"
    export_model(tiny_compact(), "onnx", out, ExportConfig())
    return out


# 12 distinct (colour, shape) classes of the reference benchmark
CLASSES = [(("red", "green", "blue", "yellow", "purple", "white")[i % 6],
            ("circle", "square", "triangle", "star", "cross", "diamond")[(i + i // 6) % 6]) for i in range(12)]


def render_scenes(folder: Path, size: int, classes=CLASSES) -> list[Path]:
    """One bare reference scene per class, as PNG files named NN_colour_shape.png."""
    from PIL import Image

    from compact.data.reference.render import render
    from compact.data.reference.scene import ObjectGroup, Scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (colour, shape) in enumerate(classes):
        scene = Scene(main=ObjectGroup(shape, colour, 1, "large"), position="center", pattern="plain",
                      background="grey", distractor=None, mention_background=False, mention_position=False,
                      style=0, seed=i)
        path = folder / f"{i:02d}_{colour}_{shape}.png"
        Image.fromarray(render(scene, size)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    render_scenes(folder / "scenes", 64)
    (folder / "notes.txt").write_text("not an image")
    return folder


@functools.cache
def _python_bundle(folder: Path) -> Bundle:
    return Bundle(str(folder))


def reference_ranking(bundle: Path, images: list[Path], query: str, dim: int | None = None) -> list[tuple[str, float]]:
    """Top images for `query` computed directly with compact_bundle + numpy: the ground truth for the apps."""
    b = _python_bundle(bundle)
    v, q = b.embed_images([str(p) for p in images]), b.embed_texts([query])[0]
    if dim is not None:
        v, q = v[:, :dim], q[:dim]
        v, q = v / np.linalg.norm(v, axis=1, keepdims=True), q / np.linalg.norm(q)
    scores = v @ q
    return [(images[i].name, float(scores[i])) for i in np.argsort(-scores, kind="stable")]


# ----------------------------------------------------------------------------------------------------------------
# Photo search: CLI and index
# ----------------------------------------------------------------------------------------------------------------


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = photo_search([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_index_and_search_cli(clip_bundle, photos, tmp_path, capsys):
    index = tmp_path / "index"
    code, out, err = _run(capsys, "index", photos, "--bundle", clip_bundle, "-o", index)
    assert code == 0, err
    assert "indexed 12 images" in out and "bytes/image" in out
    meta = json.loads((index / "index.json").read_text())
    assert meta["dim"] == meta["embed_dim"] == 16 and len(meta["paths"]) == 12
    assert all(p.startswith("scenes/") for p in meta["paths"])  # relative to the folder; notes.txt skipped
    vectors = np.load(index / "vectors.npy", allow_pickle=False)
    assert vectors.shape == (12, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert "64 bytes/image of vectors" in out  # 16 float32

    images = sorted((photos / "scenes").glob("*.png"))
    for query in ["a large red star", "ein großer roter Stern", "大きな赤い星"]:
        code, out, err = _run(capsys, "search", query, "--index", index, "-k", "5", "--json")
        assert code == 0, err
        got = [(r["name"], r["score"]) for r in json.loads(out)["results"]]
        want = reference_ranking(clip_bundle, images, query)[:5]
        assert [n for n, _ in got] == [n for n, _ in want], query
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    code, out, _ = _run(capsys, "search", "a blue circle", "--index", index, "-k", "3")
    assert code == 0 and len(out.strip().splitlines()) == 3 and "scenes/" in out

    code, _, err = _run(capsys, "index", photos, "--bundle", clip_bundle, "-o", index)
    assert code == 2 and "--overwrite" in err
    code, _, err = _run(capsys, "index", photos, "--bundle", clip_bundle, "-o", index, "--overwrite", "--dtype", "float16")
    assert code == 0 and np.load(index / "vectors.npy").dtype == np.float16


def test_matryoshka_dims(clip_bundle, photos, tmp_path, capsys):
    images = sorted((photos / "scenes").glob("*.png"))
    # no matryoshka_dims in the manifest: any dim up to embed_dim, with a warning
    code, out, err = _run(capsys, "index", photos, "--bundle", clip_bundle, "-o", tmp_path / "i8", "--dim", "8")
    assert code == 0 and "not trained for --dim 8" in err and "32 bytes/image of vectors" in out
    code, out, _ = _run(capsys, "search", "ein roter Stern", "--index", tmp_path / "i8", "-k", "4", "--json")
    got = [r["name"] for r in json.loads(out)["results"]]
    assert got == [n for n, _ in reference_ranking(clip_bundle, images, "ein roter Stern", dim=8)[:4]]
    code, _, err = _run(capsys, "index", photos, "--bundle", clip_bundle, "-o", tmp_path / "i99", "--dim", "99")
    assert code == 2 and "out of range" in err and "16 dims" in err

    # a manifest that lists its trained dims: only those (and the full dim) are allowed, silently
    trained = tmp_path / "trained-bundle"
    shutil.copytree(clip_bundle, trained)
    manifest = json.loads((trained / "manifest.json").read_text())
    (trained / "manifest.json").write_text(json.dumps({**manifest, "matryoshka_dims": [4, 8]}))
    code, _, err = _run(capsys, "index", photos, "--bundle", trained, "-o", tmp_path / "t12", "--dim", "12")
    assert code == 2 and "not one of the dims this model was trained for: 4, 8, 16" in err
    code, _, err = _run(capsys, "index", photos, "--bundle", trained, "-o", tmp_path / "t4", "--dim", "4")
    assert code == 0 and "warning" not in err


def test_clear_errors(clip_bundle, photos, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-bundle").mkdir()
    cases = [
        (["index", photos, "--bundle", tmp_path / "not-a-bundle", "-o", tmp_path / "x"], "has no manifest.json"),
        (["index", photos, "--bundle", tmp_path / "missing", "-o", tmp_path / "x"], "does not exist"),
        (["index", tmp_path / "empty", "--bundle", clip_bundle, "-o", tmp_path / "x"], "has no images"),
        (["index", tmp_path / "nowhere", "--bundle", clip_bundle, "-o", tmp_path / "x"], "does not exist"),
        (["index", photos, "--bundle", clip_bundle, "-o", tmp_path / "x", "--dim", "0"], "out of range"),
        (["index", photos, "--bundle", clip_bundle, "-o", photos], "holds no photo index"),
        (["search", "red", "--index", tmp_path / "empty"], "is not a photo index"),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------------------------
# tokenizer.js against compact_tokenizer.py, through Node
# ----------------------------------------------------------------------------------------------------------------

HAND_WRITTEN = [
    "a photo of a dog", "A Photo Of TWO Dogs.", "ViT-B/32 costs $3.50!!", "don't, I'll, we've, she's, they'd, I'M",
    "Über die Brücke läuft ein Mädchen mit großem Hund", "une fenêtre à côté de l'église, où l'œuvre est née",
    "el niño pequeño señala la montaña", "Съешь же ещё этих мягких французских булок", "我爱北京天安门，天安门上太阳升。",
    "日本語のテキストとカタカナ、ひらがな、漢字が混ざった文", "مرحبا بالعالم، هذه صورة لقطة سوداء", "नमस्ते दुनिया, यह एक लाल गोला है",
    "สวัสดีครับ นี่คือภาพแมวสีดำ", "안녕하세요 세계, 빨간 원이 하나 있습니다", "Ελληνικά: ΟΔΟΣ και οδός ΣΑΣ", "emoji 😀👍🏽🇩🇪❤️‍🔥 ok",
    "a\tb\t\tc\nd\n\ne\r\nf", "   leading and trailing   ", " ", "", "\u00a0non\u2003breaking\u3000spaces\u2028\u0085x\ufeffy",
    "x1y2z3 1234567890 ١٢٣ ४५६ 3.14159 1,000,000", "C++ & C# (the *best*) [languages] {ok}? #1 @home ~50% ^_^",
    "e\u0301 vs é, ﬁ ligature, ① ㍿ Ⅻ İstanbul", "'s 't 're 've 'm 'll 'd ''' \"quoted\"",
    "<|endoftext|> in the text <|startoftext|>", "a<|endoftext|>b", "word " * 60, "長" * 90,
    "supercalifragilisticexpialidocious" * 3, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 𐍈 𠜎𠜱", "עברית ושפות אחרות", "Türkçe ığüşöç ĞÜŞİÖÇ",
]
ALPHABET = "aZq09 \t\n'!?.,-_/éßñçœ漢字カナひらЖжλΩΣ한글ไทยعربيहिंदी😀\u00a0\u2003\u0301²<|>"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    out = list(HAND_WRITTEN)
    try:
        import wordfreq
    except ImportError:  # a dev dependency; the rest still covers every script
        wordfreq = None
    if wordfreq is not None:
        for lang in ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "ko", "hi", "el", "tr"):
            words = wordfreq.top_n_list(lang, 120)
            out += words[:25] + [" ".join(words[i:i + 8]) for i in range(0, len(words), 8)]
    from compact.data.reference.captions import LANGS, class_name, class_prompts

    for i, (colour, shape) in enumerate(CLASSES[:6]):
        for lang in LANGS:
            out += [class_name(colour, shape, lang)] + class_prompts(colour, shape, lang)[i % 3::9]
    rng = random.Random(0)
    out += ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 30))) for _ in range(150)]
    return out


NODE_RUNNER = """
import { readFileSync } from "node:fs";
import { BundleTokenizer } from "%s";
const job = JSON.parse(readFileSync(0, "utf8"));
const out = {};
for (const folder of job.folders) {
  try {
    const config = JSON.parse(readFileSync(`${folder}/tokenizer_config.json`, "utf8"));
    const json = config.type === "hf" ? JSON.parse(readFileSync(`${folder}/${config.file}`, "utf8")) : null;
    const tok = BundleTokenizer.fromConfig(config, json);
    out[folder] = { longest: tok.call(job.texts, "longest"), max_length: tok.call(job.texts, "max_length") };
  } catch (e) {
    out[folder] = { error: e.message };
  }
}
process.stdout.write(JSON.stringify(out));
"""


def run_tokenizer_js(tmp_path: Path, folders: list[Path], texts: list[str]) -> dict:
    runner = tmp_path / "runner.mjs"
    runner.write_text(NODE_RUNNER % TOKENIZER_JS.as_uri())
    job = json.dumps({"folders": [str(f) for f in folders], "texts": texts})
    res = subprocess.run(["node", str(runner)], input=job, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@needs_node
def test_tokenizer_js_matches_python(texts, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from compact.distill.tokenizers import TokenizerConfig
    from compact.distill.tokenizers.trained import build as build_trained
    from compact.distill.tokenizers.trimmed import build as build_trimmed
    from compact.models.hf_tokenizers import clip_bpe_tokenizer
    from compact.models.tokenizer import ByteTokenizer, HFTokenizer

    clip = clip_bpe_tokenizer()
    bos, eos = clip.token_to_id("<|startoftext|>"), clip.token_to_id("<|endoftext|>")
    corpus = [t for t in texts if len(t) > 3][:300]
    teacher = type("Teacher", (), {"tokenizer": HFTokenizer(clip, 77, bos, eos, 0)})()
    tokenizers = {
        "clip77": HFTokenizer(clip, 77, bos, eos, 0),
        "clip12": HFTokenizer(clip, 12, bos, eos, 0),  # most texts truncate
        "trimmed": build_trimmed(TokenizerConfig(kind="trimmed", context_length=40), corpus, teacher).tokenizer,
        "trained": build_trained(TokenizerConfig(kind="trained", context_length=24, vocab_size=600), corpus).tokenizer,
        "bytes": ByteTokenizer(context_length=40),
    }
    folders = {}
    for name, tok in tokenizers.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        tok.save(folders[name])
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    wordpiece.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]"],
                                                                    show_progress=False))
    folders["wordpiece"] = tmp_path / "wordpiece"
    folders["wordpiece"].mkdir()
    HFTokenizer(wordpiece, 16, None, 0, 0).save(folders["wordpiece"])

    assert len(texts) >= 300
    got = run_tokenizer_js(tmp_path, list(folders.values()), texts)
    for name in tokenizers:
        py = BundleTokenizer.from_folder(folders[name])
        js = got[str(folders[name])]
        assert "error" not in js, (name, js)
        for pad_to in ("longest", "max_length"):
            ids, mask = py(texts, pad_to=pad_to)
            for text, want, have in zip(texts, ids, js[pad_to]["ids"]):
                assert have == want, (name, text)
            assert js[pad_to]["mask"] == mask, name
    error = got[str(folders["wordpiece"])]["error"]
    assert error.startswith('tokenizer.json uses pre_tokenizer "Whitespace", which tokenizer.js does not implement')


# ----------------------------------------------------------------------------------------------------------------
# Headless Chromium
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@needs_browser
def test_photo_search_web_ui(browser, clip_bundle, photos, tmp_path):
    """Queries typed into the page, in English, German and Japanese, list the very top-k that compact_bundle +
    numpy give for the same folder (order and file names), with each image served."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    index = tmp_path / "index"
    assert photo_search(["index", str(photos), "--bundle", str(clip_bundle), "-o", str(index)]) == 0
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "apps.photo_search", "serve", "--index", str(index),
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc)
        browser.get(f"http://127.0.0.1:{port}/")
        images = sorted((photos / "scenes").glob("*.png"))
        for query in ["a large red star", "ein großer roter Stern", "大きな赤い星"]:
            box = browser.find_element(By.ID, "q")
            box.clear()
            box.send_keys(query)
            box.send_keys(Keys.ENTER)
            WebDriverWait(browser, 20).until(
                lambda d, q=query: d.find_element(By.ID, "results").get_attribute("data-query") == q)
            assert browser.find_element(By.ID, "error").text == ""
            items = browser.find_elements(By.CSS_SELECTOR, "#results li")
            shown = [li.find_element(By.CLASS_NAME, "name").text for li in items]
            scores = [float(li.get_attribute("data-score")) for li in items]
            want = reference_ranking(clip_bundle, images, query)[:5]
            assert shown == [n for n, _ in want], query
            assert np.allclose(scores, [s for _, s in want], atol=1e-5)
            WebDriverWait(browser, 10).until(lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll('#results img'))"
                ".every((i) => i.complete && i.naturalWidth === 64)"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=" + "%E8%B5%A4&k=3") as r:
            assert len(json.load(r)["results"]) == 3
    finally:
        proc.terminate()
        proc.wait(10)


BROWSER_TEXTS = ["a large red star", "ein großer roter Stern", "красная звезда", "赤い星", "红色的圆形", "نجمة حمراء",
                 "Ünïcödé  spaces\tand CAPS!"]


@needs_browser
@pytest.mark.parametrize("which", ["clip", "bytes"])
def test_browser_app_matches_python(which, browser, request, tmp_path):
    """index.html with onnxruntime-web and tokenizer.js: the same ids and (cosine >= 0.99) the same embeddings as
    compact_bundle in Python, for texts in 6 scripts and images at the model's size."""
    from selenium.webdriver.support.ui import WebDriverWait

    from apps.browser.serve import make_server

    bundle = request.getfixturevalue(f"{which}_bundle")
    size = json.loads((bundle / "manifest.json").read_text())["preprocess"]["image_size"]
    images = render_scenes(tmp_path / "files", size, CLASSES[:3])
    server = make_server(bundle, 0, files=tmp_path / "files")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        query = urlencode([("bundle", "/bundle/"), *[("text", t) for t in BROWSER_TEXTS],
                           *[("image", f"/files/{p.name}") for p in images]])
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/?{query}")
        WebDriverWait(browser, 60).until(lambda d: d.execute_script("return !!(window.results || window.appError)"))
        assert browser.execute_script("return window.appError || null") is None
        res = browser.execute_script("return window.results")
    finally:
        server.shutdown()
        server.server_close()

    py = _python_bundle(bundle)
    feeds = py.tokenize(BROWSER_TEXTS)
    assert res["ids"] == feeds["input_ids"].tolist()
    for got, want in [(res["text"], py.run_text(feeds)), (res["image"], py.embed_images([str(p) for p in images]))]:
        got = np.asarray(got, dtype=np.float32)
        assert got.shape == want.shape
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.min() >= 0.99, cos
