"""Metrics on hand-built embeddings whose answers are known."""

import math

import pytest
import torch

from compact.data.types import ClassificationView, EvalData, ListImageSource
from compact.eval import metrics
from compact.eval.runner import EvalConfig, evaluate, resolve_langs
from compact.errors import CompactError
from compact.models.dual_encoder import DualEncoder, TokenBatch
from compact.models.preprocess import PreprocessConfig
from helpers import tiny_compact


def e(*vals):
    return torch.tensor(vals, dtype=torch.float32)


def test_retrieval_known_ranks():
    # 3 images along the axes; 4 texts: t0->i0 (exact), t1->i1 (exact), t2->i2 but closest to i0, t3->i2 (2nd best).
    img = e([1, 0, 0], [0, 1, 0], [0, 0, 1])
    txt = e([1, 0, 0], [0, 1, 0], [0.9, 0.1, 0.3], [0.5, 0.6, 0.55])
    r = metrics.retrieval_metrics(img, txt, [0, 1, 2, 2], ks=(1, 2, 3))
    # t2i ranks: t0:0, t1:0, t2:1 (i0 above), t3:1 (i1 above) -> R@1 = 2/4, R@2 = 4/4
    assert r["t2i_r1"] == pytest.approx(0.5) and r["t2i_r2"] == pytest.approx(1.0)
    # i2t: i0 best wrong caption? its positive t0 scores 1.0 -> rank 0; i1 positive t1 -> rank 0;
    # i2 positives t2 (0.3/|t2|) and t3 (0.55/|t3|): best is t3 ~0.6; wrong captions t0 (0), t1 (0) -> rank 0
    assert r["i2t_r1"] == pytest.approx(1.0)


def test_retrieval_ties_are_pessimistic():
    img = e([1, 0], [1, 0], [1, 0])
    txt = e([1, 0], [1, 0], [1, 0])
    r = metrics.retrieval_metrics(img, txt, [0, 1, 2], ks=(1, 3))
    assert r["t2i_r1"] == 0.0 and r["i2t_r1"] == 0.0  # a collapsed model does not get perfect recall
    assert r["t2i_r3"] == 1.0


def test_zero_shot_known_accuracy():
    img = e([1, 0], [0, 1], [1, 0.2], [0.1, 1], [1, 1])
    classes = metrics.class_embeddings([e([2, 0], [1, 0.1]), e([0, 3])])
    # labels: 0, 1, 1 (wrong: closer to class 0), 1, -1 (unlabelled, skipped)
    acc = metrics.zero_shot_accuracy(img, classes, [0, 1, 1, 1, -1])
    assert acc == pytest.approx(3 / 4)


def test_mean_cosine():
    assert metrics.mean_cosine(e([1, 0], [0, 2]), e([1, 0], [2, 0])) == pytest.approx(0.5)


class StubModel(DualEncoder):
    """Images embed by their red value (the image index), texts by a lookup table: answers are known."""

    def __init__(self, img_vecs, txt_map):
        super().__init__()
        self.embed_dim = 2
        self.preprocess_cfg = PreprocessConfig(image_size=4, mean=(0, 0, 0), std=(1, 1, 1))
        self.img_vecs = img_vecs
        self.txt_map = txt_map
        self.vocab = {t: i for i, t in enumerate(txt_map)}
        self.inverse = list(txt_map)

    def tokenize(self, texts):
        ids = torch.tensor([[self.vocab[t]] for t in texts])
        return TokenBatch(ids, torch.ones_like(ids))

    def encode_image(self, pixels):
        return self.img_vecs[(pixels[:, 0, 0, 0] * 255).round().long()]

    def encode_text(self, ids, mask):
        return torch.stack([self.txt_map[self.inverse[i]] for i in ids[:, 0].tolist()])

    @property
    def logit_scale(self):
        return 100.0


def _data():
    from PIL import Image

    imgs = [Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(3)]
    pairs = {"en": [(0, "zero"), (1, "one"), (2, "two")], "de": [(0, "null"), (1, "eins"), (2, "zwei")]}
    view = ClassificationView(labels=[0, 1, 1], class_names={"en": ["a", "b"], "de": ["a", "b"]},
                              prompts={"en": [["class a"], ["class b"]], "de": [["Klasse a"], ["Klasse b"]]})
    return EvalData("toy", ListImageSource([str(i) for i in range(3)], lambda k: imgs[int(k)]), pairs, view,
                    parallel="en")


def test_evaluate_end_to_end_known_numbers():
    img_vecs = e([1, 0], [0, 1], [0.6, 0.8])
    txt = {"zero": e(1, 0), "one": e(0, 1), "two": e(0.6, 0.8), "null": e(1, 0), "eins": e(1, 0.1),
           "zwei": e(0.6, 0.8), "class a": e(1, 0), "class b": e(0, 1), "Klasse a": e(0, 1), "Klasse b": e(1, 0)}
    model = StubModel(img_vecs, txt)
    rep = evaluate(model, _data(), EvalConfig(ks=(1,)), teacher=model)
    assert rep["n_samples"] == 3
    assert rep["retrieval"]["en"]["t2i_r1"] == 1.0
    # de: "eins" is closest to image 0, so 2 of 3 texts find their image.
    assert rep["retrieval"]["de"]["t2i_r1"] == pytest.approx(2 / 3)
    # en classes match the images; de class prompts are swapped, so every de prediction is wrong.
    assert rep["zero_shot"]["en"] == pytest.approx(1.0)
    assert rep["zero_shot"]["de"] == pytest.approx(0.0)
    assert rep["agreement"]["image_cos"] == pytest.approx(1.0)
    # the teacher is compared on the English pivot: de caption j against the teacher's en caption j
    want = (1 + 0.1 / math.hypot(1, 0.1) + 1) / 3
    assert rep["agreement"]["text_cos"]["de"] == pytest.approx(want, abs=1e-6)
    assert rep["agreement"]["text_pivot"] == "en"


def test_language_not_in_data():
    model = tiny_compact(languages=None)
    with pytest.raises(CompactError, match="\\['xx'\\] are not in the data"):
        resolve_langs(model, _data(), ["en", "xx"])


def test_language_not_in_model():
    model = tiny_compact(languages=("en",))
    with pytest.raises(CompactError, match="not trained for \\['de'\\]"):
        resolve_langs(model, _data(), ["de"])
