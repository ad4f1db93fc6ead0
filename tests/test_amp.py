"""bf16 training autocast: the attention kernel it picks on the CPU, and that the pick does not change the maths."""

import pytest
import torch

from compact.utils import amp


@pytest.fixture
def fresh_probe(monkeypatch):
    monkeypatch.setattr(amp, "_CPU_BF16_ATTENTION", {})


@pytest.mark.parametrize("gain,choice", [(3.0, "math"), (1.05, None), (0.5, None)])
def test_math_attention_is_used_only_where_the_probe_measures_it_faster(fresh_probe, monkeypatch, gain, choice):
    monkeypatch.setattr(amp, "attention_speedup", lambda: gain)
    assert amp.cpu_bf16_attention() == choice
    assert torch.backends.cuda.flash_sdp_enabled()
    with amp.train_autocast("cpu", True):
        assert torch.is_autocast_enabled("cpu")
        # sdpa_kernel(MATH) turns the fused kernels off for the block (the flags are global, CPU included)
        assert torch.backends.cuda.flash_sdp_enabled() == (choice is None)
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()
    assert amp.training_precision("cpu", True) == {"bf16": True, "attention": choice or "default"}
    assert amp.training_precision("cpu", False) == {"bf16": False}


def test_disabled_autocast_changes_nothing(fresh_probe, monkeypatch):
    monkeypatch.setattr(amp, "attention_speedup", lambda: pytest.fail("no probe when bf16 is off"))
    with amp.train_autocast("cpu", False):
        assert not torch.is_autocast_enabled("cpu")
        assert torch.backends.cuda.flash_sdp_enabled()


def test_the_probe_times_both_kernels():
    gain = amp.attention_speedup(shape=(4, 2, 16, 8))
    assert 0.01 < gain < 100


def test_a_bf16_training_step_with_the_math_kernel_matches_the_default_kernel(fresh_probe, monkeypatch):
    """One reference-teacher step (forward, loss, backward) under bf16 autocast: the math backend and PyTorch's
    default CPU kernel give the same loss and gradients up to bf16 rounding."""
    from compact.reference.teacher import TeacherArch, build_model

    arch = TeacherArch(embed_dim=32, image_size=16, patch_size=8, vision_width=32, vision_layers=2,
                       vision_head_width=16, text_width=32, text_heads=2, text_layers=2, context_length=8)
    torch.manual_seed(0)
    model, _ = build_model(arch)
    x = torch.randn(8, 3, 16, 16)
    t = torch.randint(1, 400, (8, 8))

    def step(gain: float):
        amp._CPU_BF16_ATTENTION.clear()
        monkeypatch.setattr(amp, "attention_speedup", lambda: gain)
        model.zero_grad(set_to_none=True)
        with amp.train_autocast("cpu", True):
            img, txt, scale = model(x, t)[:3]
        logits = scale.float() * img.float() @ txt.float().T
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(8))
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (l_default, g_default), (l_math, g_math) = step(1.0), step(3.0)
    assert l_math == pytest.approx(l_default, rel=2e-2)
    cos = torch.nn.functional.cosine_similarity(g_default, g_math, dim=0).item()
    assert cos > 0.99


def test_adamw_decays_matrices_only_and_matches_the_unfused_optimizer():
    """The trainers' shared optimizer: weight decay on matrices only, fused, and the same step as torch's
    reference (for-loop) AdamW with the same groups."""
    from compact.utils.schedule import adamw

    torch.manual_seed(0)
    a = torch.nn.Linear(8, 4)
    b = torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    w0 = a.weight.detach().clone()
    opt = adamw(a.parameters(), 1e-2, 0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0] and opt.defaults["fused"]
    ref = torch.optim.AdamW([{"params": [b.weight], "weight_decay": 0.1}, {"params": [b.bias], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.98), eps=1e-6, foreach=False)
    x = torch.randn(16, 8)
    for _ in range(3):
        for m, o in ((a, opt), (b, ref)):
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)
    assert (a.weight - w0).abs().max() > 1e-3  # the steps moved the weights
