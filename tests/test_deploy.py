"""Deploy transforms (export.deploy): found through the registry, function-preserving, run before every target,
recorded in the manifest, and the model as loaded is left as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compact.errors import CompactError
from compact.models.compact_clip import CompactCLIP
from compact.models.config import ModelConfig, TextConfig, VisionConfig
from compact.models.tokenizer import ByteTokenizer
from export.deploy import DEPLOY_TRANSFORMS, apply_deploy_transforms, get_transform, list_transforms
from tests.helpers import tiny_compact


def timm_student(name: str = "fastvit_t8", size: int = 64) -> CompactCLIP:
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=32, vision=VisionConfig(type="timm", timm_name=name, image_size=size),
                      text=TextConfig(vocab_size=259, context_length=24, width=32, depth=2, heads=2, mlp_dim=64))
    model = CompactCLIP(cfg, ByteTokenizer(context_length=24), languages=("en", "de"))
    # Non-trivial BatchNorm statistics, so folding them is actually tested (fresh BN is the identity).
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.encode_image(torch.randn(4, 3, size, size))
    return model.eval()


# Every registered transform names a model it rewrites; a new transform without one fails here.
APPLIES_TO = {"reparameterize": ["fastvit_t8", "mobileone_s0", "repvit_m0_9"]}


@pytest.mark.parametrize("name", list_transforms())
def test_every_registered_transform_preserves_the_function(name):
    assert name in APPLIES_TO, f"deploy transform {name} has no test model in APPLIES_TO"
    for arch in APPLIES_TO[name]:
        model = timm_student(arch)
        t = get_transform(name)
        n = t.count(model)
        assert n > 0
        out, records = apply_deploy_transforms(model, skip=[k for k in DEPLOY_TRANSFORMS if k != name])
        assert [r["name"] for r in records] == [name] and records[0]["modules"] == n
        assert out is not model and t.count(model) == n  # the original keeps its train-time form
        x = torch.randn(3, 3, 64, 64)
        with torch.no_grad():
            a, b = model.encode_image(x), out.encode_image(x)
        assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99999, arch
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), (arch, (a - b).abs().max())


def test_a_transformed_model_is_not_transformed_again():
    """`compact quantize` exports the prepared (already folded) model again: FastViT's RepMixer cannot be folded
    twice, so the second pass must skip it and keep the first pass's records."""
    model = timm_student()
    once, first = apply_deploy_transforms(model)
    twice, second = apply_deploy_transforms(once)
    assert twice is once and second == first and first[0]["modules"] > 0


def test_quantize_on_a_reparameterizable_student(tmp_path):
    pytest.importorskip("onnxruntime")
    from compact.quantize.run import QuantizeConfig, run_quantize

    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_dynamic_int8",), force=True, eval_data=None,
                         timing_iters=5, calib_images=8, calib_texts_per_lang=4)
    rep = run_quantize(timm_student(), cfg, tmp_path / "q")
    assert all("error" not in r and r["cosine_mean"] > 0.98 for r in rep["candidates"])
    man = json.loads((tmp_path / "q" / "bundle" / "manifest.json").read_text())
    assert man["deploy_transforms"][0]["name"] == "reparameterize"


def test_nothing_to_do_returns_the_same_object():
    model = tiny_compact()
    out, records = apply_deploy_transforms(model)
    assert out is model and records == []


def test_unknown_transform_is_a_one_line_error():
    with pytest.raises(CompactError, match="unknown deploy transform 'nope'.*reparameterize"):
        apply_deploy_transforms(tiny_compact(), skip=["nope"])


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_export_reparameterizes_and_checks_parity(target, tmp_path):
    pytest.importorskip({"onnx": "onnxruntime", "openvino": "openvino"}[target])
    import onnx

    from export import ExportConfig, export_model

    model = timm_student()
    before = get_transform("reparameterize").count(model)
    man = export_model(model, target, tmp_path / "rep", ExportConfig())
    assert get_transform("reparameterize").count(model) == before  # export never rewrites the caller's model
    (rec,) = man["deploy_transforms"]
    assert rec["name"] == "reparameterize" and rec["modules"] == before
    assert rec["parameters_after"] < rec["parameters_before"]
    for f in man["files"]:  # parity is against the model before the transform
        assert f["parity"]["verified"] and f["parity"]["cosine_min"] > 0.9999
    on_disk = json.loads((tmp_path / "rep" / "manifest.json").read_text())
    assert on_disk["deploy_transforms"] == man["deploy_transforms"]
    if target == "onnx":
        raw = export_model(model, target, tmp_path / "raw", ExportConfig(skip_transforms=("reparameterize",)))
        assert raw["deploy_transforms"] == []
        assert raw["source"]["sha256"] == man["source"]["sha256"]  # the hash names the source, not the rewrite
        n_rep = len(onnx.load(str(tmp_path / "rep" / "image.onnx")).graph.node)
        n_raw = len(onnx.load(str(tmp_path / "raw" / "image.onnx")).graph.node)
        assert n_rep < 0.7 * n_raw, (n_rep, n_raw)  # the branches are gone from the graph


def test_cli_skip_transform(tmp_path):
    from click.testing import CliRunner

    from compact.cli.main import cli

    bad = CliRunner().invoke(cli, ["export", "onnx", "reference", "-o", str(tmp_path / "x"),
                                   "--skip-transform", "nope"])
    assert bad.exit_code != 0 and "unknown deploy transform 'nope'" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_open_clip_mobileclip2_teacher_is_reparameterized():
    """open_clip's MobileCLIP2-S0 (timm FastViT-MCi image tower) at random init: folded, same embeddings."""
    from compact.models.teachers import load_teacher

    model = load_teacher("open_clip:MobileCLIP2-S0").eval()
    out, records = apply_deploy_transforms(model)
    assert records and records[0]["name"] == "reparameterize" and records[0]["modules"] > 50
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        a, b = model.encode_image(x), out.encode_image(x)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99999
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
