"""The reference benchmark: deterministic, aligned across languages, and not solvable by mean colour."""

import json
import random

import numpy as np
import pytest

from compact.data.reference import captions
from compact.data.reference.captions import class_prompts
from compact.data.reference.dataset import ReferenceDataConfig, build_reference_data, load_split, reference_eval_data
from compact.data.reference.render import render
from compact.data.reference.scene import CLASSES, sample_scene

TINY = ReferenceDataConfig(seed=3, n_train=120, n_val=20, n_test=60)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return build_reference_data(TINY, tmp_path_factory.mktemp("ref") / "data")


def test_same_seed_same_bytes(tiny_data, tmp_path):
    again = build_reference_data(TINY, tmp_path / "again")
    a = json.loads((tiny_data / "meta.json").read_text())["content_hash"]
    b = json.loads((again / "meta.json").read_text())["content_hash"]
    assert a == b
    other = build_reference_data(ReferenceDataConfig(seed=4, n_train=120, n_val=20, n_test=60), tmp_path / "other")
    assert json.loads((other / "meta.json").read_text())["content_hash"] != a


def test_splits_and_views(tiny_data):
    data = reference_eval_data(tiny_data, "test")
    assert len(data.images) == 60
    assert data.languages() == sorted(captions.LANGS) and len(captions.LANGS) >= 8
    for lang in captions.LANGS:
        assert [i for i, _ in data.pairs[lang]] == list(range(60))  # parallel: one caption per image per language
        assert len(data.classification.class_names[lang]) == len(CLASSES) == 36
        assert len(set(data.classification.class_names[lang])) == 36
    assert data.parallel == "en"
    imgs, records = load_split(tiny_data, "train")
    assert imgs.shape == (120, 64, 64, 3) and imgs.dtype == np.uint8
    assert {r["label"] for r in records} <= set(range(36))


def test_quick_test_split_is_prefix_of_full():
    from compact.data.reference.dataset import DATA_SIZES, scenes_for_split

    full = scenes_for_split(DATA_SIZES["full"], "test")
    quick = scenes_for_split(DATA_SIZES["quick"], "test")
    assert full[: len(quick)] == quick


def test_scene_renders_deterministically():
    scene = sample_scene(random.Random(7))
    assert np.array_equal(render(scene), render(scene))


def test_prompts_are_grammatical_captions_of_the_class():
    p = class_prompts("red", "star", "de")
    assert "Zu sehen ist ein kleiner roter Stern." in p and "Ein großer roter Stern." in p
    assert any("drei" in x and "rote Sterne" in x for x in p)
    assert len(p) >= 12 and len(set(p)) == len(p)


def test_not_separable_by_mean_colour():
    """A nearest-centroid classifier on mean RGB (and its spread) stays far from what the teacher must reach."""
    rng = random.Random(11)
    scenes = [sample_scene(rng) for _ in range(1800)]
    pixels = [render(s, 32).reshape(-1, 3).astype(np.float32) for s in scenes]
    feats = np.stack([np.concatenate([p.mean(0), p.std(0)]) for p in pixels])
    labels = np.array([s.label for s in scenes])
    train, test = slice(0, 1200), slice(1200, None)
    cents = np.stack([feats[train][labels[train] == c].mean(0) if (labels[train] == c).any() else np.full(6, 1e9)
                      for c in range(36)])
    pred = ((feats[test][:, None] - cents[None]) ** 2).sum(-1).argmin(1)
    acc = (pred == labels[test]).mean()
    assert acc < 0.2, acc  # chance is 1/36; the teacher must reach 0.9


@pytest.mark.slow
def test_quick_reference_build(quick_reference):
    s = quick_reference
    assert s["training"]["parameters"]["total"] > 5_000_000
    # The quick teacher sees 60 batches: weak, but it must already read English and nothing else.
    ev = s["eval"]
    assert ev["zero_shot"]["en"] > 1 / 36
    non_en = [r["t2i_r10"] for lang, r in ev["retrieval"].items() if lang != "en"]
    assert ev["retrieval"]["en"]["t2i_r10"] > 2 * max(non_en)


def test_a_cached_build_is_reused_only_for_its_own_config(tmp_path, monkeypatch, caplog):
    """The cache is keyed by size and seed: a changed teacher config retrains the teacher on the same data, a changed
    data config rebuilds both, and an unchanged one reuses everything."""
    import json
    import logging

    from compact.data.reference.dataset import DATA_SIZES, ReferenceDataConfig
    from compact.reference.build import TRAIN_SIZES, ReferenceBuildConfig, build_reference
    from compact.reference.teacher import TeacherTrainConfig

    monkeypatch.setitem(DATA_SIZES, "tiny", ReferenceDataConfig(n_train=48, n_val=8, n_test=8))
    monkeypatch.setitem(TRAIN_SIZES, "tiny", TeacherTrainConfig(max_steps=2, batch_size=8, val_every=2,
                                                                target_val_zero_shot=1.01))
    # The evaluations are not what this test is about (test_quick_reference_build runs them): counted, not run.
    evals = []
    monkeypatch.setattr("compact.reference.teacher._val_zero_shot", lambda *a, **k: 0.0)
    monkeypatch.setattr("compact.reference.build.evaluate_reference", lambda paths, *a, **k: evals.append(1) or
                        {"zero_shot": {"en": len(evals)}})
    cfg = ReferenceBuildConfig(size="tiny", cache=tmp_path)
    first = build_reference(cfg)
    teacher = tmp_path / "tiny-seed0" / "teacher"
    assert first["train_seconds"] > 0 and json.loads((teacher / "training.json").read_text())["steps"] == 2
    again = build_reference(cfg)
    assert again["data_seconds"] == again["train_seconds"] == 0.0 and again["eval"] == first["eval"]
    assert len(evals) == 1  # the teacher's test-split report is reused with it

    # An interrupted training of another config left a checkpoint (here: not even the same model): not resumed.
    import torch

    from compact.utils.checkpoint import save_checkpoint

    save_checkpoint(teacher.parent / ".teacher.work" / "checkpoint", torch.nn.Linear(2, 2), None, 1,
                    {"config": {"max_steps": 99}})
    monkeypatch.setitem(TRAIN_SIZES, "tiny", TeacherTrainConfig(max_steps=3, batch_size=8, val_every=3,
                                                                target_val_zero_shot=1.01))
    with caplog.at_level(logging.INFO):
        retrained = build_reference(cfg)
    assert ".teacher.work belongs to another model or configuration; starting afresh" in caplog.text
    assert retrained["data_seconds"] == 0.0 and retrained["train_seconds"] > 0
    assert json.loads((teacher / "training.json").read_text())["steps"] == 3
    assert "trained with another config" in caplog.text and len(evals) == 2

    monkeypatch.setitem(DATA_SIZES, "tiny", ReferenceDataConfig(n_train=56, n_val=8, n_test=8))
    rebuilt = build_reference(cfg)
    assert rebuilt["data_seconds"] > 0 and rebuilt["train_seconds"] > 0
    assert json.loads((teacher / "training.json").read_text())["train_images"] == 56


def test_teacher_training_resumes_from_a_checkpoint_of_its_own_config(tmp_path, monkeypatch, caplog):
    """Killed after its step-2 checkpoint, the same build resumes at step 2 (the checkpoint records its config)."""
    import logging

    import compact.reference.teacher as teacher_mod
    from compact.data.reference.dataset import DATA_SIZES, ReferenceDataConfig
    from compact.reference.build import TRAIN_SIZES, ReferenceBuildConfig, build_reference
    from compact.reference.teacher import TeacherTrainConfig

    monkeypatch.setitem(DATA_SIZES, "tiny", ReferenceDataConfig(n_train=48, n_val=8, n_test=8))
    monkeypatch.setitem(TRAIN_SIZES, "tiny", TeacherTrainConfig(max_steps=3, batch_size=8, val_every=10,
                                                                checkpoint_every=2, target_val_zero_shot=1.01))
    monkeypatch.setattr("compact.reference.teacher._val_zero_shot", lambda *a, **k: 0.0)
    monkeypatch.setattr("compact.reference.build.evaluate_reference", lambda *a, **k: {"zero_shot": {}})

    class Killed(Exception):
        pass

    real_save = teacher_mod.save_checkpoint

    def save_then_die(*a, **k):
        real_save(*a, **k)
        raise Killed

    monkeypatch.setattr(teacher_mod, "save_checkpoint", save_then_die)
    cfg = ReferenceBuildConfig(size="tiny", cache=tmp_path)
    with pytest.raises(Killed):
        build_reference(cfg)
    monkeypatch.setattr(teacher_mod, "save_checkpoint", real_save)
    with caplog.at_level(logging.INFO, logger="compact.reference"):
        s = build_reference(cfg)
    assert "resuming reference teacher training at step 2/3" in caplog.text, caplog.text
    assert s["training"]["steps"] == 3
