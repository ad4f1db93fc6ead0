"""Distillation end to end on the --quick reference: students, tokenizers, cache, resume, DDP, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from compact.cli.main import cli
from compact.distill.recipe import DistillRecipe, StageConfig, StudentSpec, TextSpec, TokenizerSpec, VisionSpec, \
    load_recipe
from compact.distill.trainer import DistillOptions, run_distill
from compact.errors import CompactError, DataError
from compact.models.folder import load_model
from helpers import killed_at

pytestmark = pytest.mark.slow


def tiny_recipe(**kw) -> DistillRecipe:
    base = DistillRecipe(
        teacher="reference-quick", data="reference-quick", langs=["en", "de", "zh", "ar"],
        student=StudentSpec(vision=VisionSpec(width=64, depth=2, heads=2, mlp_dim=128),
                            text=TextSpec(width=64, depth=2, heads=2, mlp_dim=128),
                            tokenizer=TokenizerSpec(kind="trimmed")),
        stages=[StageConfig(name="text", steps=12, batch_size=32, losses={"feature_cosine": 1.0}),
                StageConfig(name="align", steps=6, batch_size=32, lr=5e-4,
                            losses={"affinity": 1.0, "contrastive": 0.5, "feature_cosine": 1.0})],
        val_every=0, val_limit=50, checkpoint_every=5, bf16=False)
    return replace(base, **kw)


def _recipe_file(tmp_path: Path, langs: str, stages: str, checkpoint_every: int) -> Path:
    """A fp32 tiny-student recipe on the quick reference, for the subprocess tests."""
    f = tmp_path / "r.yaml"
    f.write_text(f"""
teacher: reference-quick
data: reference-quick
langs: {langs}
bf16: false
student:
  vision: {{width: 64, depth: 2, heads: 2, mlp_dim: 128}}
  text: {{width: 64, depth: 2, heads: 2, mlp_dim: 128}}
  tokenizer: {{kind: trimmed}}
stages:{stages}
val_every: 0
checkpoint_every: {checkpoint_every}
""")
    return f


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_shipped_recipes_validate():
    from compact.distill.recipe import shipped_recipes

    names = shipped_recipes()
    assert {"reference", "reference-quick", "reference-w128"} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert r.stages and r.langs


def test_quick_recipe_trains_a_fifth_size_student(quick_reference, tmp_path):
    rep = run_distill(load_recipe("reference-quick"), DistillOptions(out=tmp_path / "s"))
    p, tp = rep["student"]["parameters"], rep["teacher"]["parameters"]
    assert p["total"] <= tp["total"] / 5 and rep["param_ratio"] <= 0.2
    assert p["image"] + p["text"] < p["total"] + 2  # logit scale is the only other parameter
    tok = rep["student"]["tokenizer"]
    assert tok["vocab_before"] == 49408 and tok["vocab_after"] < 2000
    assert set(rep["eval"]["student"]["zero_shot"]) == {"en", "de", "zh", "ar"}
    assert 0 <= rep["eval"]["student"]["agreement"]["image_cos"] <= 1
    assert set(rep["loss_curves"]) == {"text", "vision", "align"}
    # The text stage learns: its loss falls.
    curve = rep["loss_curves"]["text"]
    assert curve[-1][1] < curve[0][1]
    m = load_model(tmp_path / "s")
    assert m.languages == ("en", "de", "zh", "ar")
    assert json.loads((tmp_path / "s" / "report.json").read_text())["param_ratio"] == rep["param_ratio"]


@pytest.mark.parametrize("kind", ["trimmed", "trained", "bytes"])
def test_each_tokenizer_gives_a_working_student(quick_reference, tmp_path, kind):
    """After a short text stage, every language's translation lands nearer the teacher's English embedding."""
    from compact.distill.trainer import Distiller

    r = tiny_recipe(student=replace(tiny_recipe().student, tokenizer=TokenizerSpec(kind=kind, vocab_size=800)),
                    stages=[StageConfig(name="text", steps=40, batch_size=64, lr=3e-3,
                                        losses={"feature_cosine": 1.0})])
    d = Distiller(r, DistillOptions(out=tmp_path / kind))
    d.setup()

    def text_cos():
        par = d.parallel
        idx = list(range(0, len(par), max(1, len(par) // 256)))
        with torch.no_grad():
            s = d.student.embed_texts([par.text[i] for i in idx])
            t = d.targets.text([par.en[i] for i in idx])
        return torch.nn.functional.cosine_similarity(s, t).mean().item()

    before = text_cos()
    d.train()
    after = text_cos()
    assert after > before + 0.2, (kind, before, after)
    assert after > 0.5
    rep = d.tok.report
    assert rep["kind"] == kind
    if kind == "bytes":
        assert rep["vocab_after"] == 259
    elif kind == "trained":
        assert rep["vocab_after"] <= 800
    else:
        assert rep["vocab_before"] == 49408 and rep["vocab_after"] < 2000
    assert rep["truncated_share"] == 0.0 and rep["context_length"] >= rep["max_tokens"]
    if kind == "bytes":
        assert rep["context_length"] > 100  # CJK/Arabic captions are 2-3 bytes per character


def test_trim_keeps_every_token_real_multilingual_text():
    """wordfreq's real word lists in 10 languages/scripts: the trimmed tokenizer gives the very same tokens."""
    wordfreq = pytest.importorskip("wordfreq")
    from compact.models.hf_tokenizers import clip_bpe_tokenizer, trim_tokenizer

    tok = clip_bpe_tokenizer()
    corpus = []
    for lang in ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "ko", "hi"):
        words = wordfreq.top_n_list(lang, 400)
        corpus += words + [" ".join(words[i:i + 8]) for i in range(0, len(words), 8)]
    res = trim_tokenizer(tok, corpus)
    assert res.vocab_after < res.vocab_before
    for text in corpus:
        got = [res.old_ids[i] for i in res.tokenizer.encode(text, add_special_tokens=False).ids]
        assert got == tok.encode(text, add_special_tokens=False).ids, text
    # Unseen text still encodes (byte fallback), never to an unknown token.
    ids = res.tokenizer.encode("xylophone quokka Ωμέγα", add_special_tokens=False).ids
    assert ids and all(0 <= i < res.vocab_after for i in ids)


def test_cache_matches_online_teacher_and_is_checked(quick_reference, tmp_path):
    from compact.distill.cache import CacheConfig, TeacherCache, build_cache, data_fingerprint
    from compact.distill.trainer import open_recipe_data, _parallel
    from compact.models.teachers import load_teacher

    r = tiny_recipe()
    teacher = load_teacher(r.teacher)
    train, _ = open_recipe_data(r)
    par = _parallel(r, train).only(r.langs)
    texts = list(dict.fromkeys(par.en + [c for _, c in train.pairs["en"]]))
    m = build_cache(teacher, train, texts, tmp_path / "cache", CacheConfig(shard_size=1024))
    assert m["n_images"] == len(train.images) and len(m["done"]["img"]) == 3
    cache = TeacherCache(tmp_path / "cache")
    idx = torch.tensor([0, 5, 2999])
    want = teacher.embed_images([train.images.load(int(i)) for i in idx])
    assert torch.allclose(cache.image(idx), want, atol=1e-5)
    # Training with the cache gives the same student as with the online teacher.
    # (No test-split evaluation: the weights are compared; test_quick_recipe_trains_a_fifth_size_student checks it.)
    a = run_distill(r, DistillOptions(out=tmp_path / "online", evaluate=False))
    b = run_distill(r, DistillOptions(out=tmp_path / "cached", cache=tmp_path / "cache", evaluate=False))
    wa, wb = _weights(tmp_path / "online"), _weights(tmp_path / "cached")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    assert a["param_ratio"] == b["param_ratio"]
    # A cache from another teacher is refused by hash.
    with pytest.raises(DataError, match="different teacher"):
        cache.check("0000000000000000", data_fingerprint(train, texts))
    other = tmp_path / "other"
    from compact.models.folder import save_model

    save_model(load_model(tmp_path / "online"), other)  # a different "teacher": the student itself
    with pytest.raises(DataError, match="different teacher"):
        run_distill(replace(r, teacher=str(other)), DistillOptions(out=tmp_path / "x", cache=tmp_path / "cache",
                                                                   evaluate=False))


def test_cache_resumes_after_interruption(quick_reference, tmp_path):
    from compact.distill.cache import CacheConfig, build_cache
    from compact.distill.trainer import open_recipe_data
    from compact.models.teachers import load_teacher

    teacher = load_teacher("reference-quick")
    train, _ = open_recipe_data(tiny_recipe())
    calls = []

    def boom(what, done, total):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(teacher, train, ["a red circle"], tmp_path / "c", CacheConfig(shard_size=1024), progress=boom)
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["done"]["img"] == [0, 1]
    seen = []
    build_cache(teacher, train, ["a red circle"], tmp_path / "c", CacheConfig(shard_size=1024),
                progress=lambda w, d, t: seen.append(d))
    assert seen == [3, 4]  # only the missing image shard and the text shard


KILL_STAGES = """
  - {name: text, steps: 60, batch_size: 32, losses: {feature_cosine: 1.0}}
  - {name: align, steps: 20, batch_size: 32, losses: {affinity: 1.0, feature_cosine: 1.0}}"""


@pytest.fixture(scope="module")
def uninterrupted(quick_reference, tmp_path_factory):
    """The kill tests' recipe run once without interruption: (recipe file, its weights)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    recipe = _recipe_file(tmp, "[en, de]", KILL_STAGES, checkpoint_every=10)
    subprocess.run([sys.executable, "-m", "compact.cli.main", "distill", "run", str(recipe), "--no-eval", "-o",
                    str(tmp / "full")],
                   check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True)
    return recipe, _weights(tmp / "full")


def _assert_same_weights(wa: dict, wb: dict) -> None:
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k


def test_resume_after_kill9_gives_same_weights(uninterrupted, tmp_path):
    recipe, full = uninterrupted
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "compact.cli.main", "distill", "run", str(recipe), "--no-eval"]
    proc = subprocess.Popen(base + ["-o", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / ".killed.work" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if state.is_file() and json.loads(state.read_text())["step"] >= 30:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed").exists()  # nothing half-written
    r = subprocess.run(base + ["-o", str(tmp_path / "killed"), "--resume"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _assert_same_weights(full, _weights(tmp_path / "killed"))


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint.write:3", "atomic_dir.swap:2"])
def test_kill_mid_checkpoint_write_keeps_the_previous_one_and_resumes_to_the_same_weights(uninterrupted, tmp_path,
                                                                                          point):
    """Killed (COMPACT_FAILPOINT) while writing the step-30 checkpoint: with its weights half written, or between
    the two renames (the step-20 one moved aside, the new one not in place). The step-20 checkpoint survives and
    the resumed run ends on the uninterrupted run's weights."""
    from compact.utils.checkpoint import STATE

    recipe, full = uninterrupted
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "compact.cli.main", "distill", "run", str(recipe), "--no-eval", "-o",
            str(tmp_path / "killed")]
    killed_at(base, point)
    work = tmp_path / ".killed.work"
    assert not (tmp_path / "killed").exists()
    if point.startswith("checkpoint.write"):
        assert json.loads((work / "checkpoint" / STATE).read_text())["step"] == 20  # intact
        partial = list(work.glob(".checkpoint.tmp-*"))
        assert len(partial) == 1 and not (partial[0] / STATE).exists()  # the half-written one, not under its name
    else:
        assert not (work / "checkpoint").exists()
        (aside,) = work.glob(".checkpoint.old-*")
        assert json.loads((aside / STATE).read_text())["step"] == 20
    verbose = [sys.executable, "-m", "compact.cli.main", "-v", *base[3:], "--resume"]
    r = subprocess.run(verbose, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming at stage 0 step 20" in r.stderr, r.stderr[-2000:]
    _assert_same_weights(full, _weights(tmp_path / "killed"))
    assert not work.exists()


def test_torchrun_two_ranks_matches_single_process(quick_reference, tmp_path):
    recipe = _recipe_file(tmp_path, "[en, zh]", """
  - {name: text, steps: 8, batch_size: 32, losses: {feature_cosine: 1.0}}
  - {name: align, steps: 6, batch_size: 32, losses: {contrastive: 1.0, affinity: 1.0, feature_cosine: 1.0}}""",
                          checkpoint_every=100)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # --no-eval: the weights are compared, not the test split (run_distill's evaluation has its own tests).
    single = subprocess.run([sys.executable, "-m", "compact.cli.main", "distill", "run", str(recipe), "--no-eval", "-o",
                             str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    assert "test split" not in single.stderr and "parameters" in single.stderr  # rich writes to stderr
    assert json.loads((tmp_path / "one" / "report.json").read_text())["eval"] is None
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "compact.cli.main", "distill", "run", str(recipe), "--no-eval", "-o",
                          str(tmp_path / "two")],
                         env=env, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    wa, wb = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst < 1e-4, worst
    assert json.loads((tmp_path / "two" / "report.json").read_text())["world_size"] == 2


# ---- bad input -------------------------------------------------------------------------------------------------

def test_parallel_row_missing_translation(tmp_path):
    from compact.distill.data import parallel_from_tsv

    f = tmp_path / "p.tsv"
    f.write_text("en\ttext\tlang\na red circle\tein roter Kreis\tde\ntwo stars\t\tde\n")
    with pytest.raises(DataError, match=r"line 3: the translation is missing"):
        parallel_from_tsv(f)
    r = CliRunner().invoke(cli, ["distill", "run", "reference-quick", "-o", str(tmp_path / "o"), "--parallel", str(f)])
    assert r.exit_code != 0


def test_language_without_data(quick_reference, tmp_path):
    r = CliRunner().invoke(cli, ["distill", "run", "reference-quick", "-o", str(tmp_path / "o"), "--langs", "en,sw"])
    assert r.exit_code == 1
    assert "sw" in r.output and "no parallel text" in r.output and "Traceback" not in r.output


def test_student_dims_that_cannot_inherit(quick_reference, tmp_path):
    rec = tiny_recipe(student=replace(tiny_recipe().student, vision=VisionSpec(width=192, depth=2, heads=4,
                                                                                mlp_dim=128, patch_size=16)))
    with pytest.raises(CompactError) as e:
        run_distill(rec, DistillOptions(out=tmp_path / "o"))
    msg = str(e.value)
    assert "vision.patch_size 16 != teacher 8" in msg and "vision.width 192 > teacher" in msg
    assert "head dim 48" in msg


def test_recipe_unknown_key_names_line(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("teacher: reference\nstudent:\n  vision:\n    widht: 64\n")
    r = CliRunner().invoke(cli, ["distill", "run", str(f), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "unknown key" in r.output and "widht" in r.output and "line 4" in r.output


def test_output_exists_needs_overwrite(quick_reference, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("keep me")
    r = CliRunner().invoke(cli, ["distill", "run", "reference-quick", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert (tmp_path / "o" / "x").read_text() == "keep me"


def test_captions_plus_translations_files(tmp_path):
    from compact.distill.data import parallel_from_files

    caps = tmp_path / "caps.csv"
    caps.write_text("id,caption\n1,a red circle\n2,two blue stars\n")
    tr = tmp_path / "tr.jsonl"
    tr.write_text('{"id": 1, "lang": "de", "text": "ein roter Kreis"}\n{"id": 2, "lang": "zh", "text": "两颗蓝色的星"}\n')
    par = parallel_from_files(caps, tr)
    assert par.en == ["a red circle", "two blue stars"] and par.lang == ["de", "zh"]
    tr.write_text('{"id": 1, "lang": "de", "text": ""}\n')
    with pytest.raises(DataError, match="line 1: the translation is missing"):
        parallel_from_files(caps, tr)
    tr.write_text('{"id": 9, "lang": "de", "text": "x"}\n')
    with pytest.raises(DataError, match="no English caption"):
        parallel_from_files(caps, tr)


def test_timm_student_and_epochs(tmp_path):
    """A timm image tower with a projection head; the text tower still inherits; --epochs sets the steps."""
    from compact.distill.student import build_student
    from compact.distill.tokenizers import TokenizerConfig, build_student_tokenizer
    from helpers import tiny_compact

    teacher = tiny_compact()
    tok = build_student_tokenizer(TokenizerConfig(kind="bytes"), ["a red circle", "两个红色的圆形"])
    spec = StudentSpec(vision=VisionSpec(type="timm", timm_name="mobilenetv4_conv_small", image_size=32),
                       text=TextSpec(width=32, depth=1, heads=2, mlp_dim=32), tokenizer=TokenizerSpec(kind="bytes"))
    student, rep = build_student(spec, tok, teacher, ["en", "zh"])
    assert rep["inherited"] == ["text"]
    with torch.no_grad():
        assert student.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 32)
        # Inherited text weights: the one kept layer is the teacher's last (uniform spacing of 1 over 2).
        assert torch.equal(student.text.blocks[0].fc2.bias, teacher.text.blocks[1].fc2.bias)
    from compact.distill.trainer import Distiller

    d = Distiller.__new__(Distiller)
    d.opts = DistillOptions(out=tmp_path / "x", epochs=2.0)
    d.parallel = type("P", (), {"__len__": lambda self: 1000})()
    assert d.stage_steps(StageConfig(name="text", batch_size=256)) == 8


def test_cli_cache_and_recipes(quick_reference, tmp_path):
    r = CliRunner().invoke(cli, ["distill", "cache", "reference-quick", "-o", str(tmp_path / "c"), "--langs", "en,de"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["n_images"] == 3000 and m["done"]["img"] == [0]
    again = CliRunner().invoke(cli, ["distill", "cache", "reference-quick", "-o", str(tmp_path / "c"), "--langs",
                                     "en,de"])
    assert again.exit_code == 0  # complete: nothing to redo
    # A shard size change makes it another cache: refused without --overwrite.
    other = CliRunner().invoke(cli, ["distill", "cache", "reference-quick", "-o", str(tmp_path / "c"), "--langs",
                                     "en,de", "--shard-size", "1000"])
    assert other.exit_code == 1 and "--overwrite" in other.output
    lst = CliRunner().invoke(cli, ["distill", "recipes"])
    assert "reference-quick" in lst.output and "reference " in lst.output


def test_bf16_autocast_only_where_it_is_measured_faster(monkeypatch):
    """oneDNN emulates bf16 on AVX-512 CPUs without native support (slower than fp32): the probe must say no."""
    import compact.utils.amp as amp

    probe = amp.bf16_speedup
    assert probe(rows=256, width=32) > 0
    monkeypatch.setattr(amp, "_BF16_PAYS", None)
    monkeypatch.setattr(amp, "bf16_speedup", lambda: 0.4)
    assert amp.cpu_has_bf16() is False
    monkeypatch.setattr(amp, "_BF16_PAYS", None)
    monkeypatch.setattr(amp, "bf16_speedup", lambda: 3.0)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert amp.cpu_has_bf16() is True


def test_architecture_only_drops_the_pretrained_tag():
    from compact.distill.student import architecture_only

    assert architecture_only("open_clip:ViT-B-16@datacomp_xl_s13b_b90k") == "open_clip:ViT-B-16"
    assert architecture_only("reference-small") == "reference-small"
    with pytest.raises(CompactError, match="--teacher open_clip:ViT-B-32"):
        architecture_only("hf:openai/clip-vit-base-patch32")


@pytest.mark.slow
def test_cpu_fast_recipe_builds_its_student_at_random_init():
    """recipes/distill-cpu-fast.yaml: MobileNetV4-Conv-Medium (timm) + 4 x 384 text inheriting from the ViT-B-32
    teacher's text tower, built offline; embeddings in the teacher's 512-d space."""
    import timm

    from compact.distill.recipe import load_recipe
    from compact.distill.student import random_init_student

    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / "distill-cpu-fast.yaml")
    student, report = random_init_student(recipe)
    backbone = timm.create_model("mobilenetv4_conv_medium", pretrained=False, num_classes=0)
    width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    assert report["parameters"]["image"] == sum(p.numel() for p in backbone.parameters()) + width * 512
    assert report["inherited"] == ["text"] and report["inherited_parameters"] > 4 * 384 * 384 * 4
    t = student.cfg.text
    assert (t.width, t.depth, t.heads, t.mlp_dim) == (384, 4, 6, 1536)
    assert student.text.tok.weight.shape == (report["tokenizer"]["vocab_after"], 384)
    assert student.preprocess_cfg.image_size == 224 and student.embed_dim == 512
    with torch.no_grad():
        img = student.encode_image(torch.randn(2, 3, 224, 224))
        txt = student.embed_texts(["a red star", "ein roter Stern", "赤い星"])
    assert img.shape == (2, 512) and txt.shape == (3, 512) and torch.isfinite(txt).all()


def test_length_groups_give_the_one_batch_embeddings_and_gradients():
    """Training encodes a text batch in groups of similar length, each cut to its own longest text: the
    embeddings and the gradients equal those of the one padded batch, and each group is shorter than the batch."""
    from compact.distill.trainer import encode_text_by_length
    from helpers import tiny_compact

    model = tiny_compact().train()
    texts = ["a", "red star", "ein blauer Kreis links", "x" * 20, "ok", "a green square on a white background",
             "zz", "one two three", "hi", "the end"]
    tb = model.tokenize(texts).trimmed()
    lengths = tb.mask.sum(1)
    assert int(lengths.max()) > 3 * int(lengths.min())  # a real mix of lengths
    calls = []
    orig = model.encode_text
    model.encode_text = lambda ids, mask: calls.append(ids.shape[1]) or orig(ids, mask)

    def embed_and_grad(groups):
        model.zero_grad()
        out = encode_text_by_length(model, tb.ids, tb.mask, groups)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        return out.detach(), torch.cat([p.grad.flatten() for p in model.text.parameters() if p.grad is not None])

    one, g_one = embed_and_grad(1)
    four, g_four = embed_and_grad(4)
    assert torch.allclose(one, four, atol=1e-5)
    assert torch.nn.functional.cosine_similarity(g_one, g_four, dim=0) > 0.99999
    assert calls[0] == tb.ids.shape[1] and len(calls) == 5 and min(calls[1:]) < tb.ids.shape[1] / 3
    with pytest.raises(CompactError, match="length_groups"):
        tiny_recipe(length_groups=0)
