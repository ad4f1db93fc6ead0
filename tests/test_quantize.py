"""Quantization: every method through the registry, the gates (cosine, SQNR, per-language deltas), the fp16
overflow scan, auto choice, outputs that load, and bad inputs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from compact.cli.main import cli
from compact.errors import CompactError
from compact.quantize import METHODS, list_methods
from compact.quantize.gates import cosine_stats, eval_deltas, sqnr_db
from compact.quantize.overflow import overflow_scan
from compact.quantize.run import GateError, QuantizeConfig, run_quantize
from helpers import tiny_compact

FAST = dict(eval_data=None, timing_iters=5, calib_images=16, calib_texts_per_lang=8)
EAGER = {"method_options": {"compile": False}}  # torch methods: time eagerly (no torch.compile) in unit tests


def _usable(name):
    why = METHODS[name].missing()
    if why:
        pytest.skip(why)


# Cosine floors per method on the tiny random model (int8 of random weights is a harsh case).
FLOOR = {"fp16_cast": 0.9999, "bf16_cast": 0.999, "openvino_bf16": 0.999}


# Methods that train need training data: QAT distils on the quick reference for a few steps.
TRAINING = {"torchao_qat_int8": dict(qat_steps=10, qat_batch=32, qat_data="reference-quick")}


@pytest.mark.parametrize("name", list_methods())
def test_every_method(name, tmp_path, request):
    _usable(name)
    m = METHODS[name]
    if name in TRAINING:
        request.getfixturevalue("quick_reference")
    cfg = QuantizeConfig(runtime=m.runtime, methods=(name,), force=True, **FAST, **TRAINING.get(name, {}),
                         **(EAGER if "compile" in m.options else {}))
    rep = run_quantize(tiny_compact(), cfg, tmp_path / "q")
    rows = [r for r in rep["candidates"] if r["method"] == name]
    assert {r["tower"] for r in rows} == {"image", "text"}
    for r in rows:
        assert "error" not in r, r
        assert r["cosine_mean"] >= FLOOR.get(name, 0.98), r
        assert r["sqnr_db"] > (30 if name in FLOOR else 12), r
        assert r["latency"]["speedup"] > 0 and r["latency"]["iters"] == 5
    assert rep["choice"] == {"image": name, "text": name}
    _check_output(tmp_path / "q", m.runtime, rep)


def _check_output(out, runtime, rep):
    from compact.models.teachers import load_teacher

    model = tiny_compact()
    texts = ["a red star", "ein roter Stern", "赤い星"]
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.embed_texts(texts), dim=-1)
    path = out / ("model" if runtime == "torch" else "bundle")
    loaded = load_teacher(str(path))
    with torch.no_grad():
        got = torch.nn.functional.normalize(loaded.embed_texts(texts).float(), dim=-1)
    cos = (ref * got).sum(1)
    assert float(cos.min()) > 0.97
    if runtime == "torch":  # a torch-runtime result is not an export input: a clear error, not a traceback
        from export.bundle import ExportConfig, export_model

        with pytest.raises(CompactError, match="quantized for the torch runtime"):
            export_model(str(path), "onnx", out / "x", ExportConfig())
        assert not (out / "x").exists()
    if runtime != "torch":
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["quantization"] == rep["choice"]
        for f in manifest["files"]:
            assert (path / f["path"]).is_file()
            assert f["parity"]["against"] == "fp32"


def test_gate_stats_match_numpy():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((200, 16)).astype(np.float32)
    noise = 0.01 * rng.standard_normal((200, 16)).astype(np.float32)
    s = cosine_stats(ref, ref + noise)
    expected = 10 * np.log10((ref.astype(np.float64) ** 2).sum() / (noise.astype(np.float64) ** 2).sum())
    assert abs(s["sqnr_db"] - expected) < 1e-3 and 39 < s["sqnr_db"] < 41
    cos = (ref * (ref + noise)).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(ref + noise, axis=1)
    assert abs(s["cosine_mean"] - cos.mean()) < 1e-6
    assert abs(s["cosine_worst1pct"] - np.sort(cos)[:2].mean()) < 1e-6
    assert sqnr_db(ref, ref) == float("inf")


def test_eval_deltas_worst_language():
    base = {"langs": ["en", "de"], "zero_shot": {"en": 0.9, "de": 0.8},
            "retrieval": {"en": {"t2i_r1": 0.5, "i2t_r1": 0.5}, "de": {"t2i_r1": 0.4, "i2t_r1": 0.4}}}
    cand = {"langs": ["en", "de"], "zero_shot": {"en": 0.9, "de": 0.77},
            "retrieval": {"en": {"t2i_r1": 0.51, "i2t_r1": 0.5}, "de": {"t2i_r1": 0.4, "i2t_r1": 0.385}}}
    d = eval_deltas(base, cand)
    assert d["zero_shot"]["de"] == -3.0 and d["t2i_r1"]["en"] == 1.0 and d["max_drop"] == 3.0


def test_overflow_scan_keeps_the_overflowing_layer_fp32():
    from compact.quantize.methods.float_cast import cast_tower
    from export.towers import prepare, towers

    model = tiny_compact()
    with torch.no_grad():
        model.text.blocks[0].fc1.weight.mul_(3e5)  # its outputs reach ~1e5: inf in fp16 ...
        model.text.blocks[0].fc2.weight.mul_(1e-5)  # ... and the block's output is back in range
    text = next(t for t in towers(prepare(model)) if t.name == "text")
    ids = torch.randint(3, 250, (4, 10))
    args = [(ids, torch.ones_like(ids))]
    flagged = overflow_scan(text.module, args)
    assert "model.text.blocks.0.fc1" in [f["module"] for f in flagged]
    with torch.no_grad():
        ref = text.module(*args[0])
        mixed, _, islands = cast_tower(text.module, torch.float16, args, 65504.0)
        got = mixed(*args[0])
        bad = copy.deepcopy(text.module).half()(*args[0])
    assert islands == ["model.text.blocks.0"]  # the block whose output fits fp16 again
    assert torch.isfinite(got).all()
    assert float(torch.nn.functional.cosine_similarity(ref, got).min()) > 0.999
    assert not torch.isfinite(bad).all()  # what a plain cast gives


def test_gate_breach_writes_only_the_report(tmp_path):
    _usable("ort_dynamic_int8")
    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_dynamic_int8",), min_cosine=0.99999999, **FAST)
    with pytest.raises(GateError, match="--force"):
        run_quantize(tiny_compact(), cfg, tmp_path / "q")
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["report.json"]
    rep = json.loads((tmp_path / "q" / "report.json").read_text())
    assert rep["written"] is False and rep["gate"]["breaches"]


def test_auto_keeps_fp32_when_nothing_passes(tmp_path):
    _usable("ort_dynamic_int8")
    cfg = QuantizeConfig(runtime="onnxruntime", auto=True, methods=("ort_dynamic_int8",), min_cosine=0.99999999,
                         **FAST)
    rep = run_quantize(tiny_compact(), cfg, tmp_path / "q")
    assert rep["choice"] == {"image": "fp32", "text": "fp32"} and rep["written"]


@pytest.mark.slow
def test_per_language_gate_on_the_quick_reference(quick_reference, tmp_path):
    _usable("ort_static_qdq")
    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_static_qdq",), eval_data="reference-quick:val",
                         eval_limit=100, timing_iters=5, force=True, calib_images=32, calib_texts_per_lang=8)
    rep = run_quantize("reference-quick", cfg, tmp_path / "q")
    for r in rep["candidates"]:
        assert set(r["eval"]["zero_shot"]) == {"en", "de", "fr", "es", "ru", "zh", "ja", "ar"}
        assert r["cosine_mean"] > 0.99
    assert set(rep["fp32_eval"]["zero_shot"]) == set(r["eval"]["zero_shot"])


def test_bad_inputs(tmp_path):
    from compact.models.folder import save_model

    save_model(tiny_compact(), tmp_path / "m")
    run = CliRunner().invoke
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--method", "int3"])
    assert r.exit_code != 0 and "unknown quantization method 'int3'" in r.output and "Traceback" not in r.output
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--runtime", "openvino",
                  "--method", "ort_dynamic_int8"])
    assert r.exit_code != 0 and "another runtime" in r.output
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q")])
    assert r.exit_code != 0 and "--auto" in r.output
    with pytest.raises(CompactError, match="unknown runtime"):
        QuantizeConfig(runtime="tflite", auto=True)
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--auto", "--qat-steps", "100"])
    assert r.exit_code != 0 and "--runtime torch" in r.output and "Traceback" not in r.output
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--runtime", "torch", "--auto",
                  "--qat-steps", "0"])
    assert r.exit_code != 0 and "must be positive" in r.output
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--auto", "--timing-seconds", "0"])
    assert r.exit_code != 0 and "--timing-seconds must be positive, got 0.0" in r.output and "Traceback" not in r.output
    for opset in ("5", "99"):  # torch would silently write 18 for 5; the manifest would have said 5
        r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--auto", "--opset", opset])
        assert r.exit_code != 0 and f"--opset {opset} is not supported: use 18.." in r.output
        assert "Traceback" not in r.output
        r = run(cli, ["export", "onnx", str(tmp_path / "m"), "-o", str(tmp_path / "e"), "--opset", opset])
        assert r.exit_code != 0 and f"--opset {opset} is not supported" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "q").exists() and not (tmp_path / "e").exists()
    r = run(cli, ["quantize", "--list"])
    assert r.exit_code == 0 and "ort_static_qdq" in r.output and "torchao_qat_int8" in r.output
    assert "--method-option nbits=" in r.output
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--method", "ort_dynamic_int8",
                  "--method-option", "nbits=4"])
    assert r.exit_code != 0 and "method option(s) ['nbits'] are read by none of ['ort_dynamic_int8']" in r.output
    r = run(cli, ["quantize", str(tmp_path / "m"), "-o", str(tmp_path / "q"), "--auto", "--method-option", "nbits"])
    assert r.exit_code != 0 and "is not KEY=VALUE" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "q").exists()


def test_method_options_parse_and_reach_the_method(tmp_path):
    from compact.cli.quantize import parse_method_options

    assert parse_method_options(["nbits=4", "op_types=MatMul,Gemm", "compile=false", "high_precision=fp16"]) == {
        "nbits": 4, "op_types": ["MatMul", "Gemm"], "compile": False, "high_precision": "fp16"}
    _usable("ort_static_qdq")
    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_static_qdq",), force=True, towers=("image",),
                         method_options=parse_method_options(["op_types=MatMul"]), **FAST)
    (row,) = run_quantize(tiny_compact(), cfg, tmp_path / "q")["candidates"]
    assert row["details"]["op_types"] == ["MatMul"] and row["cosine_mean"] > 0.99


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "nncf" else real(n, *a))
    with pytest.raises(CompactError, match=r"compact-clip\[nncf\]"):
        run_quantize(tiny_compact(), QuantizeConfig(runtime="openvino", methods=("nncf_openvino",), **FAST),
                     tmp_path / "q")


def test_qat_recovery_retrains_the_tower_and_reloads(quick_reference, tmp_path):
    """torchao QAT: fake-quantized Linear layers are distilled (the loss falls), converted, and the written model
    carries the retrained text weights (the image tower untouched) with int8 re-applied at load."""
    _usable("torchao_qat_int8")
    from torchao.utils import TorchAOBaseTensor

    from compact.models.folder import load_model

    model = tiny_compact()
    cfg = QuantizeConfig(runtime="torch", methods=("torchao_qat_int8",), towers=("text",), force=True,
                         qat_steps=40, qat_batch=32, qat_lr=1e-3, qat_data="reference-quick", **FAST, **EAGER)
    rep = run_quantize(model, cfg, tmp_path / "q")
    (row,) = rep["candidates"]
    qat = row["details"]["qat"]
    assert qat["fake_quantized_linear"] == sum(isinstance(m, torch.nn.Linear) for m in model.text.modules())
    assert qat["loss_last"] < qat["loss_first"], qat
    assert row["cosine_mean"] > 0.9 and row["sqnr_db"] > 5, row
    loaded = load_model(tmp_path / "q" / "model")
    assert isinstance(loaded.text.blocks[0].fc1.weight, TorchAOBaseTensor)  # int8 re-applied from quantization.json
    assert not isinstance(loaded.visual.blocks[0].fc1.weight, TorchAOBaseTensor)
    for (n, a), b in zip(model.visual.state_dict().items(), loaded.visual.state_dict().values()):
        assert torch.equal(a, b), n
    from safetensors.torch import load_file

    saved = load_file(str(next((tmp_path / "q" / "model").glob("*.safetensors"))))
    linear = [n for n, m in model.text.named_modules() if isinstance(m, torch.nn.Linear)]
    changed = [n for n in linear if not torch.equal(model.text.get_submodule(n).weight, saved[f"text.{n}.weight"])]
    assert changed == linear, "QAT left some text weights untouched"
    texts = ["a red star", "ein roter Stern", "赤い星"]
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.embed_texts(texts), dim=-1)
        got = torch.nn.functional.normalize(loaded.embed_texts(texts).float(), dim=-1)
    assert float((ref * got).sum(1).min()) > 0.9


def test_trt_placement_is_symmetric_int8_on_gemm_inputs(tmp_path):
    """The TensorRT QDQ graph has zero points of 0 and Q/DQ on GEMM inputs; ORT's CPU QDQ (uint8, asymmetric)
    does not, which is why TensorRT gets its own methods."""
    _usable("trt_ort_qdq")
    from compact.quantize.trt import placement

    keep = dict(FAST)
    cfg = QuantizeConfig(runtime="tensorrt", methods=("trt_ort_qdq",), force=True, towers=("image",), **keep)
    rep = run_quantize(tiny_compact(), cfg, tmp_path / "trt")
    (row,) = rep["candidates"]
    p = row["details"]["placement"]
    assert p["trt_symmetric"] and p["asymmetric_zero_points"] == 0 and p["zero_point_dtypes"] == ["int8"]
    assert p["gemms_int8"] >= p["gemms"] - 2 > 0  # every weight GEMM; at most the two attention matmuls left
    assert "TensorRT" in row["details"]["latency_on"]
    manifest = json.loads((tmp_path / "trt" / "bundle" / "manifest.json").read_text())
    image = next(f for f in manifest["files"] if f["tower"] == "image")
    script = (tmp_path / "trt" / "bundle" / "build_engine.sh").read_text()
    assert f"--onnx={image['path']}" in script and "--stronglyTyped" in script  # the int8 graph, explicit QDQ
    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_static_qdq",), force=True, towers=("image",), **keep)
    run_quantize(tiny_compact(), cfg, tmp_path / "ort")
    ort_manifest = json.loads((tmp_path / "ort" / "bundle" / "manifest.json").read_text())
    ort_image = next(f for f in ort_manifest["files"] if f["tower"] == "image")
    assert not placement(tmp_path / "ort" / "bundle" / ort_image["path"])["trt_symmetric"]


def test_auto_joint_fallback_tries_other_combinations():
    """Both towers pass alone but not together: auto tries the next combinations, best product of speed-ups
    first, and keeps the first that passes jointly; fp32 when none does."""
    from compact.quantize.run import _joint_fallback

    def row(tower, method, speedup, passed=True, sqnr=30.0):
        return {"tower": tower, "method": method, "passed": passed, "sqnr_db": sqnr, "latency": {"speedup": speedup}}

    cands = [row("image", "a", 1.8), row("image", "b", 1.5), row("text", "a", 1.6), row("text", "c", 1.4),
             row("text", "slow", 0.9), row("text", "bad", 3.0, passed=False)]
    cfg = QuantizeConfig(runtime="onnxruntime", auto=True, max_drop=1.0)
    drops = {("a", "c"): 1.2, ("b", "a"): 0.7, ("a", "fp32"): 0.4}
    seen = []

    def joint_eval(choice):
        seen.append((choice["image"], choice["text"]))
        return {"max_drop": drops.get((choice["image"], choice["text"]), 5.0)}

    choice, ev, tried = _joint_fallback(cands, {"image": "a", "text": "a"}, cfg, joint_eval, by_sqnr=False)
    # products: a+c 2.52, b+a 2.40, a+fp32 1.8 ...: a+c fails jointly, b+a passes
    assert seen == [("a", "c"), ("b", "a")] and choice == {"image": "b", "text": "a"} and ev["max_drop"] == 0.7
    assert [t["max_drop"] for t in tried] == [1.2, 0.7]
    drops.clear()
    choice, ev, tried = _joint_fallback(cands, {"image": "a", "text": "a"}, cfg, joint_eval, by_sqnr=False, max_tries=3)
    assert choice == {"image": "fp32", "text": "fp32"} and ev is None and len(tried) == 3


def test_opset_20_exports_gelu_as_one_op(tmp_path):
    """--opset 20: the plain fp32 graph (and so the int8 one) carries ONNX Gelu instead of the Erf/Div/Mul/Add
    chain. (The ORT-fused graph has BiasGelu at any opset.)"""
    _usable("ort_dynamic_int8")
    import onnx

    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_dynamic_int8",), force=True, towers=("text",),
                         opset=20, ort_fusion=False, **FAST)
    rep = run_quantize(tiny_compact(), cfg, tmp_path / "q")
    assert rep["candidates"][0]["cosine_mean"] > 0.98
    bundle = tmp_path / "q" / "bundle"
    text = next(f for f in json.loads((bundle / "manifest.json").read_text())["files"] if f["tower"] == "text")
    ops = [n.op_type for n in onnx.load(str(bundle / text["path"])).graph.node]
    assert "Gelu" in ops and "Erf" not in ops and "MatMulInteger" in ops


def test_text_latency_workload_covers_every_language_and_the_longest_batch():
    from types import SimpleNamespace

    from compact.quantize.calibration import calibration_set
    from compact.quantize.run import _latency_feeds, _measure_latency

    model = tiny_compact()
    calib = calibration_set(model, None, n_images=4, texts_per_lang=16, batch=4)
    ctx = SimpleNamespace(calib=calib, cfg=QuantizeConfig(runtime="onnxruntime", auto=True, latency_batch=8,
                                                          timing_iters=3))
    work = _latency_feeds(ctx, "text")
    assert len(work["mix"]) == len(calib.langs) == len(set(calib.feed_langs))
    assert all(len(f["input_ids"]) == 8 for f in work["mix"])  # repeated up to the latency batch
    longest = max(f["input_ids"].shape[1] for f in calib.text_feeds)
    assert work["longest"][0]["input_ids"].shape == (8, longest)
    seen = []
    lat = _measure_latency(ctx, "text", lambda f: seen.append(f["input_ids"].shape[1]), lambda f: None)
    assert lat["longest_batch"]["tokens"] == longest and lat["iters"] == 3
    lengths = {f["input_ids"].shape[1] for f in work["mix"]}
    assert lengths <= set(seen) and longest in seen
    assert list(_latency_feeds(ctx, "image")) == ["mix"]


@pytest.mark.parametrize("fusion", [True, False])
def test_onnxruntime_quantizes_the_fused_graph_unless_told_not_to(tmp_path, fusion):
    """ORT methods start from the graph with ORT's fused Attention (fp32 is timed on it too); dynamic int8 then
    turns it into QAttention. --no-ort-fusion keeps plain ONNX ops any runtime reads."""
    _usable("ort_dynamic_int8")
    import onnx

    from export.bundle import read_manifest

    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_dynamic_int8",), force=True, ort_fusion=fusion, **FAST)
    rep = run_quantize(tiny_compact(), cfg, tmp_path / "q")
    bundle = tmp_path / "q" / "bundle"
    files = read_manifest(bundle)["files"]
    assert sorted(f["tower"] for f in files) == ["image", "text"] and not any(f.get("optimized") for f in files)
    assert sorted(p.name for p in bundle.glob("*.onnx")) == sorted(f["path"] for f in files)
    for f in files:
        ops = {(n.domain, n.op_type) for n in onnx.load(str(bundle / f["path"])).graph.node}
        assert (("com.microsoft", "QAttention") in ops) == fusion, ops
        assert all(d in ("", "ai.onnx") for d, _ in ops) != fusion
        assert ("runtime_only" in f) == fusion
    assert all(r["cosine_mean"] > 0.98 for r in rep["candidates"] if "cosine_mean" in r)
    _check_output(tmp_path / "q", "onnxruntime", rep)
    # the bench (and `compact run`'s bench stage) skips runtimes that cannot read com.microsoft ops, with a reason
    from bench.runtimes import get_runtime

    manifest = read_manifest(bundle)
    assert get_runtime("onnxruntime").accepts(manifest) is None
    why = get_runtime("openvino").accepts(manifest)
    assert (why is not None and "onnxruntime only" in why) == fusion


def test_bench_names_a_bundle_whose_towers_differ_in_precision(tmp_path):
    """Auto mode may quantize one tower and keep the other fp32; the bench reports each tower's precision and
    names the pair after both (it used to take the last tower's, listing an int8 image tower as fp32)."""
    _usable("ort_dynamic_int8")
    from bench.harness import TimingConfig
    from bench.report import rows
    from bench.run import BenchConfig, bench_pair
    from bench.runtimes import get_runtime
    from export.bundle import read_manifest

    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_dynamic_int8",), towers=("image",), force=True, **FAST)
    run_quantize(tiny_compact(), cfg, tmp_path / "q")
    bundle = tmp_path / "q" / "bundle"
    bcfg = BenchConfig(batch_sizes=(1,), timing=TimingConfig(warmup=1, iters=3), end_to_end=False)
    res = bench_pair(bundle, read_manifest(bundle), get_runtime("onnxruntime"), bcfg)
    assert res["precision"] == "image-int8.text-fp32"
    assert {r["tower"]: r["precision"] for r in rows([res])} == {"image": "int8", "text": "fp32"}


def _conv_input_quantized(xml) -> bool:
    import openvino as ov

    conv = next(op for op in ov.Core().read_model(str(xml)).get_ordered_ops() if op.get_type_name() == "Convolution")
    return conv.input_value(0).get_node().get_type_name() == "FakeQuantize"


def test_nncf_openvino_tries_the_cnn_type_on_a_convolutional_tower(tmp_path):
    """A MobileNetV4 image tower (dozens of convolutions) is also quantized as NNCF's CNN type, and the variant
    closest to fp32 on held-out inputs is kept; model_type=transformer forces one variant pair."""
    _usable("nncf_openvino")
    from test_deploy import timm_student

    from compact.cli.quantize import parse_method_options

    model = timm_student("mobilenetv4_conv_small", 64)
    cfg = QuantizeConfig(runtime="openvino", methods=("nncf_openvino",), force=True, towers=("image",), **FAST)
    (row,) = run_quantize(model, cfg, tmp_path / "a")["candidates"]
    d = row["details"]
    assert d["convolutions"] >= 8
    cos = d["smooth_quant"]["held_out_cosine"]
    assert set(cos) == {"nncf_default", "off", "cnn"}
    assert d["smooth_quant"]["chosen"] == max(cos, key=cos.get)
    assert d["model_type"] == ("default (CNN)" if d["smooth_quant"]["chosen"] == "cnn" else "TRANSFORMER")
    assert row["cosine_mean"] == pytest.approx(cos[d["smooth_quant"]["chosen"]], abs=0.02)

    cfg = QuantizeConfig(runtime="openvino", methods=("nncf_openvino",), force=True, towers=("image",),
                         method_options=parse_method_options(["model_type=transformer"]), **FAST)
    (row,) = run_quantize(model, cfg, tmp_path / "b")["candidates"]
    assert set(row["details"]["smooth_quant"]["held_out_cosine"]) == {"nncf_default", "off"}
    cfg = QuantizeConfig(runtime="openvino", methods=("nncf_openvino",), towers=("image",),
                         method_options=parse_method_options(["model_type=rnn"]), **FAST)
    with pytest.raises(CompactError, match="transformer or cnn"):
        run_quantize(model, cfg, tmp_path / "c")


def test_ort_static_qdq_keeps_int8_between_the_convolutions_of_a_convolutional_tower(tmp_path):
    """On a MobileNetV4 tower ort_static_qdq also quantizes the data path between convolutions (every residual Add
    reads int8 through DequantizeLinear), within the gate; a ViT tower keeps the MatMul/Gemm/Conv allow-list."""
    _usable("ort_static_qdq")
    import onnx
    from test_deploy import timm_student

    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_static_qdq",), force=True, towers=("image",), **FAST)
    report = run_quantize(timm_student("mobilenetv4_conv_small", 64), cfg, tmp_path / "a")
    (row,) = report["candidates"]
    d = row["details"]
    assert d["convolutions"] >= 8 and {"Add", "Concat", "Relu"} <= set(d["op_types"])
    # 7-bit weights (on x86 without VNNI, compact/quantize/saturation.py) cost this random-init tower ~2 dB: 0.989
    assert row["cosine_mean"] > (0.985 if d["reduce_range"] else 0.99)
    graph = onnx.load(str(next((tmp_path / "a").rglob("image*.onnx")))).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    adds = [n for n in graph.node if n.op_type == "Add"]
    assert adds and all(made_by.get(i) == "DequantizeLinear" for n in adds for i in n.input)

    (row,) = run_quantize(tiny_compact(), cfg, tmp_path / "b")["candidates"]
    assert row["details"]["op_types"] == ["MatMul", "Gemm", "Conv"] and row["details"]["convolutions"] < 8


def test_nncf_openvino_chooses_smooth_quant_on_held_out_inputs_and_takes_nncf_options(tmp_path):
    """By default NNCF quantizes with and without SmoothQuant and keeps the variant closer to fp32 on inputs
    calibration did not see; the options reach nncf.quantize (the ignored patch embedding stays float)."""
    _usable("nncf_openvino")
    from compact.cli.quantize import parse_method_options

    cfg = QuantizeConfig(runtime="openvino", methods=("nncf_openvino",), force=True, towers=("image",), **FAST)
    (row,) = run_quantize(tiny_compact(), cfg, tmp_path / "a")["candidates"]
    sq = row["details"]["smooth_quant"]
    assert set(sq["held_out_cosine"]) == {"nncf_default", "off"}
    assert sq["chosen"] == max(sq["held_out_cosine"], key=sq["held_out_cosine"].get)
    assert row["cosine_mean"] > 0.98
    (xml,) = (tmp_path / "a" / "bundle").glob("image*.xml")
    assert _conv_input_quantized(xml)

    opts = parse_method_options(["ignored_types=Convolution", "smooth_quant_alpha=-1", "fast_bias_correction=false"])
    cfg = QuantizeConfig(runtime="openvino", methods=("nncf_openvino",), force=True, towers=("image",),
                         method_options=opts, **FAST)
    (row,) = run_quantize(tiny_compact(), cfg, tmp_path / "b")["candidates"]
    d = row["details"]
    assert "smooth_quant" not in d and d["smooth_quant_alpha"] == -1.0 and d["fast_bias_correction"] is False
    assert d["ignored_scope"]["types"] == ["Convolution"] and row["cosine_mean"] > 0.98
    (xml,) = (tmp_path / "b" / "bundle").glob("image*.xml")
    assert not _conv_input_quantized(xml)

    for bad, msg in (("smooth_quant_alpha=strong", "must be a number"), ("fast_bias_correction=maybe", "true or false")):
        cfg = QuantizeConfig(runtime="openvino", methods=("nncf_openvino",), towers=("image",),
                             method_options=parse_method_options([bad]), **FAST)
        with pytest.raises(CompactError, match=msg):
            run_quantize(tiny_compact(), cfg, tmp_path / bad.split("=")[0])
        assert not (tmp_path / bad.split("=")[0]).exists()


def test_runner_encoder_runs_a_tower_without_a_runner_in_torch_fp32():
    """`--towers image` quantizes one tower; the per-language eval runs the other in the fp32 torch model."""
    from compact.quantize.run import RunnerEncoder

    model = tiny_compact().eval()
    enc = RunnerEncoder(model, {"image": lambda f: np.full((len(f["pixel_values"]), model.embed_dim), 2.0, np.float32)})
    tb = model.tokenize(["a red star", "ein roter Stern"])
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.encode_text(tb.ids, tb.mask), dim=-1)
    torch.testing.assert_close(enc.encode_text(tb.ids, tb.mask), ref)
    assert float(enc.encode_image(torch.zeros(3, 3, 32, 32)).sum()) == 2.0 * 3 * model.embed_dim


def test_a_method_that_crashes_is_a_failed_candidate_not_the_end(tmp_path, monkeypatch):
    """A quantizer or runtime raising its own exception type (ORT's Fail on a graph it cannot run) fails that
    candidate; the other method still runs and is chosen."""
    _usable("ort_dynamic_int8")
    _usable("ort_static_qdq")

    class Fail(Exception):  # onnxruntime's pybind errors derive from Exception, not RuntimeError
        pass

    def broken(self, ctx, tower):
        raise Fail("QLinearConv : input zero point must be a scalar or 1D tensor of size 1")

    monkeypatch.setattr(type(METHODS["ort_static_qdq"]), "quantize", broken)
    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_static_qdq", "ort_dynamic_int8"), force=True, **FAST)
    rep = run_quantize(tiny_compact(), cfg, tmp_path / "q")
    bad = [r for r in rep["candidates"] if r["method"] == "ort_static_qdq"]
    assert len(bad) == 2 and all(not r["passed"] and r["error"].startswith("Fail: QLinearConv") for r in bad)
    good = [r for r in rep["candidates"] if r["method"] == "ort_dynamic_int8"]
    assert all("error" not in r and r["cosine_mean"] > 0.98 for r in good)
    assert set(rep["choice"].values()) <= {"ort_dynamic_int8", "fp32"}


def test_remembering_runner_runs_each_distinct_input_once():
    """The candidate search's fp32 towers: the same feeds (same bytes, dtype and shape) run once, any change
    runs again, and the outputs are the runner's own."""
    from compact.quantize.run import RememberingRunner

    calls = []

    def runner(feeds):
        calls.append(1)
        return feeds["x"].astype(np.float32) * 2

    r = RememberingRunner(runner)
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.testing.assert_array_equal(r({"x": a}), a * 2)
    np.testing.assert_array_equal(r({"x": a.copy()}), a * 2)
    assert len(calls) == 1
    r({"x": a.reshape(4, 3)})  # same bytes, other shape
    r({"x": a.astype(np.int32)})  # same values, other dtype
    b = a.copy()
    b[2, 3] = 0
    np.testing.assert_array_equal(r({"x": b}), b * 2)
    assert len(calls) == 4


def test_int8_saturation_is_detected_from_the_cpu_flags():
    from compact.quantize.saturation import int8_saturates, resolve_reduce_range

    avx2 = {"avx2": True, "avx512_vnni": False, "avx_vnni": False, "amx_int8": False}
    assert int8_saturates(avx2, "x86_64") and int8_saturates({}, "AMD64")  # unknown flags: the safe side
    assert not int8_saturates({**avx2, "avx512_vnni": True}, "x86_64")
    assert not int8_saturates({**avx2, "avx_vnni": True}, "x86_64")
    assert not int8_saturates({**avx2, "amx_int8": True}, "x86_64")
    assert not int8_saturates({}, "aarch64") and not int8_saturates({}, "arm64")
    assert resolve_reduce_range("auto", avx2, "x86_64")["reduce_range"] is True
    assert resolve_reduce_range("auto", {"avx512_vnni": True}, "x86_64")["reduce_range"] is False
    assert resolve_reduce_range("on", {"avx512_vnni": True}, "x86_64") == {"reduce_range": True,
                                                                          "why": "asked (--reduce-range on)"}
    assert resolve_reduce_range("off", avx2, "x86_64")["reduce_range"] is False
    assert resolve_reduce_range("on", avx2, "x86_64", runtime="tensorrt")["reduce_range"] is None
    with pytest.raises(CompactError, match="--reduce-range must be one of auto, on, off"):
        QuantizeConfig(runtime="onnxruntime", auto=True, reduce_range="yes")
    from compact.pipeline.recipe import QuantizeStageConfig

    with pytest.raises(CompactError, match="--reduce-range must be one of auto, on, off, got 'yes'"):
        QuantizeStageConfig(reduce_range="yes")


@pytest.mark.parametrize("name", ["ort_dynamic_int8", "ort_static_qdq", "nncf_openvino", "nncf_onnx"])
def test_reduce_range_keeps_int8_weights_within_7_bits_and_the_manifest_says_so(name, tmp_path):
    """--reduce-range on: the int8 weights of every quantized MatMul use at most 7 bits (|w| <= 64 around the zero
    point), the text tower stays within cosine 0.999 of fp32 on any CPU, and report + manifest record it. Where this
    CPU saturates (x86 without VNNI) full-range weights measurably lose: that is what auto guards against."""
    _usable(name)
    from compact.quantize.saturation import int8_saturates

    m = METHODS[name]
    cfg = QuantizeConfig(runtime=m.runtime, methods=(name,), force=True, towers=("text",), reduce_range="on", **FAST)
    rep = run_quantize(tiny_compact(), cfg, tmp_path / "on")
    (row,) = rep["candidates"]
    assert rep["int8_weights"]["reduce_range"] is True and row["details"]["reduce_range"] is True
    assert row["cosine_mean"] > 0.999, row
    entry = next(f for f in json.loads((tmp_path / "on" / "bundle" / "manifest.json").read_text())["files"]
                 if f["tower"] == "text")
    assert entry["reduce_range"] is True and entry["quantization"] == name
    weights = _int8_weights(tmp_path / "on" / "bundle" / entry["path"], tiny_compact().cfg.text.vocab_size)
    assert weights and all(np.abs(w).max() <= 64 for w in weights), [int(np.abs(w).max()) for w in weights]
    if int8_saturates():
        cfg = QuantizeConfig(runtime=m.runtime, methods=(name,), force=True, towers=("text",), reduce_range="off",
                             **FAST)
        (full,) = run_quantize(tiny_compact(), cfg, tmp_path / "off")["candidates"]
        assert full["sqnr_db"] < row["sqnr_db"] - 10, (full["sqnr_db"], row["sqnr_db"])


def _int8_weights(path, vocab: int) -> list[np.ndarray]:
    """The int8 weight tensors of a quantized graph (ONNX int8 initializers, not the zero points that
    DequantizeLinear reads; OpenVINO's i8 Constants), except the token table: a Gather reads it, no int8 product
    does, so it may keep the full range."""
    if str(path).endswith(".xml"):
        import openvino as ov

        consts = [op for op in ov.Core().read_model(str(path)).get_ops()
                  if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
        weights = [op.get_data().astype(np.int32) for op in consts]
    else:
        import onnx
        from onnx import numpy_helper

        g = onnx.load(str(path)).graph
        params = {i for n in g.node if n.op_type == "DequantizeLinear" for i in n.input[1:]}
        weights = [numpy_helper.to_array(t).astype(np.int32) for t in g.initializer
                   if t.data_type == onnx.TensorProto.INT8 and t.name not in params]
    return [w for w in weights if w.ndim == 2 and w.shape[0] != vocab]
