"""Every teacher adapter, found through the registry, must reproduce its library's own forward pass."""

import time

import numpy as np
import pytest
import torch
from PIL import Image

from compact.errors import TeacherError
from compact.models.folder import save_model
from compact.models.teachers import TeacherOptions, list_teachers, load_teacher
from helpers import clip_bpe_hf_tokenizer, tiny_compact

TEXTS = ["a photo of a red circle", "zwei große rote Kreise", "两个红色的圆形"]


def _image(seed=0, size=(80, 60)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="module")
def open_clip_vitb32():
    from compact.models.teachers.openclip import OpenCLIPEncoder

    model = load_teacher("open_clip:ViT-B-32")
    assert isinstance(model, OpenCLIPEncoder)
    return model


def test_open_clip_vit_b32_matches_library(open_clip_vitb32):
    import open_clip

    m = open_clip_vitb32
    oc_model, _, oc_pre = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    oc_model.load_state_dict(m.model.state_dict())
    oc_model.eval()
    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        want_t = oc_model.encode_text(tok(TEXTS))
        got_t = m.embed_texts(TEXTS)
        img = _image()
        want_i = oc_model.encode_image(oc_pre(img).unsqueeze(0))
        got_i = m.embed_images([img])
    assert torch.allclose(got_t, want_t, atol=1e-5)
    # Our PIL/numpy preprocessing against open_clip's torchvision transform, end to end.
    assert torch.nn.functional.cosine_similarity(got_i, want_i).item() > 0.9999
    assert m.embed_dim == 512 and m.preprocess_cfg.image_size == 224


@pytest.fixture(scope="module")
def hf_tiny_folder(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=77, vocab_size=49408),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    model = CLIPModel(cfg).eval()
    path = tmp_path_factory.mktemp("hf") / "tiny-clip"
    model.save_pretrained(path)
    clip_bpe_hf_tokenizer().save_pretrained(path)
    return path, model


@pytest.mark.parametrize("prefix", ["hf:", ""])
def test_hf_tiny_matches_library(hf_tiny_folder, prefix):
    path, ref = hf_tiny_folder
    m = load_teacher(f"{prefix}{path}")
    assert type(m).__name__ == "HFCLIPEncoder"
    tb = m.tokenize(TEXTS)
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want_t = ref.get_text_features(input_ids=tb.ids, attention_mask=tb.mask).pooler_output
        want_i = ref.get_image_features(pixel_values=px).pooler_output
        assert torch.allclose(m.encode_text(tb.ids, tb.mask), want_t, atol=1e-6)
        assert torch.allclose(m.encode_image(px), want_i, atol=1e-6)
    assert m.embed_dim == 16 and m.preprocess_cfg.image_size == 32


def test_compact_folder_teacher(tmp_path):
    model = tiny_compact()
    save_model(model, tmp_path / "student")
    loaded = load_teacher(str(tmp_path / "student"))
    assert torch.equal(loaded.embed_texts(TEXTS), model.embed_texts(TEXTS))


ENTRY = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    img = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8))
    emb = nn.EmbeddingBag(300, 8, mode="mean")
    def tokenize(texts):
        ids = torch.zeros(len(texts), 12, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, t in enumerate(texts):
            b = list(t.encode())[:12]
            ids[i, :len(b)] = torch.tensor(b)
            mask[i, :len(b)] = 1
        return ids, mask
    def text(ids, mask):
        return emb(ids, per_sample_weights=None, offsets=None) if False else (emb.weight[ids] * mask[..., None]).sum(1)
    return {"image_encoder": img, "text_encoder": text, "tokenize": tokenize, "embed_dim": 8,
            "preprocess": {"image_size": 16}}
'''


def test_entrypoint_teacher(tmp_path):
    f = tmp_path / "my_clip.py"
    f.write_text(ENTRY)
    m = load_teacher(f"py:{f}:build")
    px = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    assert torch.allclose(m.encode_image(px), ref(px))
    assert m.embed_texts(["ab"]).shape == (1, 8)
    assert m.preprocess_cfg.image_size == 16


def test_entrypoint_bad_return(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def build():\n    return {'tokenize': None}\n")
    with pytest.raises(TeacherError, match="missing \\['image_encoder'"):
        load_teacher(f"py:{f}:build")


@pytest.mark.slow
def test_reference_teacher(quick_reference):
    m = load_teacher("reference-quick")
    assert type(m).__name__ == "OpenCLIPEncoder"
    assert m.preprocess_cfg.image_size == 64
    e = m.embed_texts(["There are two large red circles."])
    assert e.shape == (1, 128) and torch.isfinite(e).all()


def test_every_adapter_is_tested():
    tested = {"open_clip", "open_clip_dir", "hf", "hf_folder", "folder", "entrypoint", "reference", "bundle"}
    assert set(list_teachers()) == tested, "a new teacher adapter needs a test here"


def test_open_clip_local_dir(tmp_path, open_clip_vitb32):
    """open_clip's own local-dir layout, as the reference teacher is saved."""
    import json

    from safetensors.torch import save_file

    import open_clip

    cfg = open_clip.get_model_config("ViT-B-32")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in open_clip_vitb32.model.state_dict().items()},
              str(tmp_path / "open_clip_model.safetensors"))
    m = load_teacher(str(tmp_path))
    assert torch.allclose(m.embed_texts(TEXTS), open_clip_vitb32.embed_texts(TEXTS), atol=1e-6)


def test_offline_hub_id_fails_fast_with_help():
    t0 = time.perf_counter()
    with pytest.raises(TeacherError, match="local-dir|folder path|HF_HOME"):
        load_teacher("hf:openai/clip-vit-base-patch32")
    with pytest.raises(TeacherError, match="not in the local cache.*network is off"):
        load_teacher("open_clip:ViT-B-32@laion2b_s34b_b79k")
    assert time.perf_counter() - t0 < 30  # no retry loops against an unreachable hub


def test_unknown_spec():
    with pytest.raises(TeacherError, match="cannot resolve teacher 'nope'"):
        load_teacher("nope")


def test_unknown_open_clip_name():
    with pytest.raises(TeacherError, match="open_clip could not load"):
        load_teacher("open_clip:ViT-Nope-99")


def test_trust_remote_code_default_off():
    assert TeacherOptions().trust_remote_code is False


def test_bundle_adapter_runs_the_exported_graphs(tmp_path):
    """An export bundle loads as a model: its ONNX graphs give the torch model's embeddings."""
    pytest.importorskip("onnxruntime")
    from export import ExportConfig, export_model
    from helpers import tiny_compact

    m = tiny_compact()
    export_model(m, "onnx", tmp_path / "b", ExportConfig())
    b = load_teacher(str(tmp_path / "b"))
    assert type(b).__name__ == "BundleEncoder" and b.embed_dim == 32
    texts = ["a red star", "ein roter Stern", "赤い星"]
    with torch.no_grad():
        ref = torch.nn.functional.normalize(m.embed_texts(texts), dim=-1)
        got = b.embed_texts(texts)
    assert torch.allclose(ref, got, atol=1e-5)
