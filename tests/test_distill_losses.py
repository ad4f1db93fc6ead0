"""Every registered distillation loss, found through the registry: known values on hand-built cases."""

import math

import pytest
import torch

from compact.distill.losses import LossInputs, build_loss, list_losses
from compact.errors import CompactError

B, D = 8, 16


def _pairs(seed=0, dim=D):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(B, dim, generator=g)
    txt = img + 0.05 * torch.randn(B, dim, generator=g)  # matched pairs, nearly equal
    return img, txt


def _inputs(s_img, s_txt, t_img, t_txt, **kw):
    return LossInputs(s_img=s_img, s_txt=s_txt, t_img=t_img, t_txt=t_txt, logit_scale=torch.tensor(20.0),
                      teacher_scale=20.0, **kw)


def test_feature_cosine_and_mse_known_values():
    t_img, t_txt = _pairs()
    for name in ("feature_cosine", "feature_mse"):
        loss = build_loss(name, D, D)
        assert loss(_inputs(t_img * 3, t_txt * 0.5, t_img, t_txt)).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
        # Orthogonal student: cosine loss 1, normalised MSE 2.
        s = torch.zeros(B, D); s[:, 0] = 1; t = torch.zeros(B, D); t[:, 1] = 1
        want = 1.0 if name == "feature_cosine" else 2.0
        assert loss(_inputs(s, s, t, t)).item() == pytest.approx(want, abs=1e-6)


def test_feature_projection_when_dims_differ():
    loss = build_loss("feature_cosine", 8, D)
    t_img, t_txt = _pairs()
    out = loss(_inputs(torch.randn(B, 8), torch.randn(B, 8), t_img, t_txt))
    out.backward()
    assert loss.proj.proj.weight.shape == (D, 8) and loss.proj.proj.weight.grad is not None


def test_affinity_zero_iff_same_distribution():
    t_img, t_txt = _pairs()
    loss = build_loss("affinity", D, D)
    assert loss(_inputs(t_img, t_txt, t_img, t_txt)).item() == pytest.approx(0.0, abs=1e-6)
    shuffled = loss(_inputs(t_img, t_txt[torch.randperm(B, generator=torch.Generator().manual_seed(1))], t_img, t_txt))
    assert shuffled.item() > 1.0


def test_contrastive_matches_closed_form():
    # Orthonormal pairs: logits are scale on the diagonal and 0 elsewhere.
    e = torch.eye(B, D)
    loss = build_loss("contrastive", D, D)
    got = loss(LossInputs(s_img=e, s_txt=e, logit_scale=torch.tensor(2.0))).item()
    want = -math.log(math.exp(2) / (math.exp(2) + (B - 1)))
    assert got == pytest.approx(want, rel=1e-5)


def test_contrastive_repeated_pairs_are_positives():
    e = torch.eye(B, D)
    t = e.clone(); t[1] = t[0]  # rows 0 and 1 share the same English caption
    loss = build_loss("contrastive", D, D)
    s = e.clone(); s[1] = s[0]
    with_dups = loss(_inputs(s, s, t, t)).item()
    # Two identical positives split the mass evenly: the loss is log 2-ish for those rows, not a huge penalty.
    assert with_dups < 0.5


def test_dclip_is_nce_plus_cosine_term():
    t_img, t_txt = _pairs()
    nce = build_loss("contrastive", D, D)(_inputs(t_img, t_txt, t_img, t_txt)).item()
    d = build_loss("dclip", D, D, {"alpha": 2.0})
    assert d(_inputs(t_img, t_txt, t_img, t_txt)).item() == pytest.approx(nce, abs=1e-5)  # cosine term is 0
    neg = d(_inputs(-t_img, -t_txt, t_img, t_txt)).item()
    assert neg == pytest.approx(nce + 2.0 * 2.0, abs=1e-4)  # cosine -1 -> alpha * 2


def test_soft_negatives_blend_grows():
    t_img, t_txt = _pairs()
    loss = build_loss("soft_negatives", D, D, {"start": 0.0, "end": 0.8})
    assert loss.blend(0.0) == 0.0 and loss.blend(0.5) == pytest.approx(0.4) and loss.blend(1.0) == pytest.approx(0.8)
    s_img, s_txt = torch.randn(B, D), torch.randn(B, D)
    early = loss(_inputs(s_img, s_txt, t_img, t_txt, progress=0.0)).item()
    plain = build_loss("contrastive", D, D)(_inputs(s_img, s_txt, t_img, t_txt)).item()
    assert early == pytest.approx(plain, abs=1e-5)
    # At the end the targets are 0.2 * one-hot + 0.8 * the teacher's softmax: check against the formula.
    late = loss(_inputs(s_img, s_txt, t_img, t_txt, progress=1.0)).item()
    n = torch.nn.functional.normalize
    tgt = 0.2 * torch.eye(B) + 0.8 * (20 * n(t_img, dim=-1) @ n(t_txt, dim=-1).T).softmax(1)
    logits = 20 * n(s_img, dim=-1) @ n(s_txt, dim=-1).T
    want = 0.5 * (-(tgt * logits.log_softmax(1)).sum(1).mean() - (tgt.T * logits.T.log_softmax(1)).sum(1).mean())
    assert late == pytest.approx(want.item(), rel=1e-5)


def test_matryoshka_truncates():
    t_img, t_txt = _pairs()
    loss = build_loss("matryoshka", D, D, {"base": "feature_cosine", "dims": [4, 8]})
    assert loss.dims == [4, 8, 16]
    # A student that equals the teacher only in its first 4 dims: zero at d=4, positive at 8 and 16.
    s = t_img.clone(); s[:, 4:] = torch.randn(B, D - 4)
    per_dim = [b(_inputs(s[:, :d], s[:, :d], t_img, t_txt)).item() for d, b in zip(loss.dims, loss.bases)]
    assert per_dim[0] > 0  # projection from 4 dims is random at init, so not zero, but the loss runs per dim
    assert loss(_inputs(s, s, t_img, t_txt)).item() == pytest.approx(sum(per_dim) / 3, abs=1e-6)
    with pytest.raises(CompactError, match="must lie in"):
        build_loss("matryoshka", D, D, {"dims": [64]})


def test_missing_inputs_are_named():
    with pytest.raises(CompactError, match="needs s_img"):
        build_loss("affinity", D, D)(LossInputs(s_txt=torch.randn(B, D), t_txt=torch.randn(B, D)))


def test_unknown_loss_and_params():
    with pytest.raises(CompactError, match="unknown loss"):
        build_loss("nope", D, D)
    with pytest.raises(CompactError, match="bad parameters"):
        build_loss("affinity", D, D, {"alpha": 1})


TESTED = {"feature_cosine", "feature_mse", "affinity", "contrastive", "dclip", "soft_negatives", "matryoshka"}


def test_every_registered_loss_is_tested():
    assert set(list_losses()) == TESTED
    for name in list_losses():  # and each builds and back-propagates
        loss = build_loss(name, D, D)
        s_img, s_txt = (t.requires_grad_() for t in _pairs(5))
        t_img, t_txt = _pairs()
        out = loss(_inputs(s_img, s_txt, t_img, t_txt, progress=0.5))
        out.backward()
        assert torch.isfinite(out) and s_img.grad is not None
