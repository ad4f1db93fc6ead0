"""open_clip / Hugging Face CLIP -> CompactCLIP conversion: the converted model gives the same embeddings."""

import pytest
import torch

from compact.errors import CompactError
from compact.models.convert import to_compact
from compact.models.folder import load_model, save_model
from compact.models.teachers import load_teacher

TEXTS = ["a photo of a red circle", "zwei große rote Kreise", "两个红色的圆形", "Справа маленький белый ромб"]


def _check(teacher, tol_text=1e-5, tol_img=1e-5):
    student = to_compact(teacher)
    px = torch.randn(2, 3, teacher.preprocess_cfg.image_size, teacher.preprocess_cfg.image_size,
                     generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tb = teacher.tokenize(TEXTS)
        sb = student.tokenize(TEXTS)
        assert torch.equal(sb.ids[sb.mask.bool()], tb.ids[tb.mask.bool()])  # same tokens, same ids
        assert torch.allclose(student.encode_text(sb.ids, sb.mask), teacher.encode_text(tb.ids, tb.mask),
                              atol=tol_text)
        assert torch.allclose(student.encode_image(px), teacher.encode_image(px), atol=tol_img)
    assert abs(student.logit_scale - teacher.logit_scale) < 1e-4
    return student


def test_open_clip_vit_b32_converts_exactly():
    teacher = load_teacher("open_clip:ViT-B-32")
    s = _check(teacher, 1e-4, 1e-4)
    assert s.cfg.vision.width == 768 and s.cfg.vision.depth == 12 and s.cfg.text.context_length == 77


def test_reference_arch_converts_and_round_trips(tmp_path):
    import open_clip

    from compact.models.teachers.openclip import OpenCLIPEncoder
    from compact.reference.teacher import TeacherArch, build_model, preprocess_cfg

    torch.manual_seed(0)
    model, tok = build_model(TeacherArch())
    teacher = OpenCLIPEncoder(model.eval(), tok, preprocess_cfg(TeacherArch()), "ref")
    s = _check(teacher)
    save_model(s, tmp_path / "m")
    back = load_model(tmp_path / "m")
    with torch.no_grad():
        tb = back.tokenize(TEXTS)
        assert torch.allclose(back.encode_text(tb.ids, tb.mask), s.encode_text(tb.ids, tb.mask), atol=1e-6)
    del open_clip


def test_hf_tiny_converts_exactly(tmp_path):
    from helpers import hf_tiny_clip

    hf_tiny_clip(tmp_path / "hf")
    s = _check(load_teacher(f"hf:{tmp_path / 'hf'}"), 1e-5, 1e-5)
    assert s.cfg.text.act == "quick_gelu"


def test_unsupported_tower_names_it():
    import open_clip

    from compact.models.teachers.openclip import OpenCLIPEncoder
    from compact.models.preprocess import PreprocessConfig

    m = open_clip.create_model("RN50", pretrained=None)
    with pytest.raises(CompactError, match="ModifiedResNet"):
        to_compact(OpenCLIPEncoder(m, open_clip.get_tokenizer("RN50"), PreprocessConfig(image_size=224), "RN50"))
