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
