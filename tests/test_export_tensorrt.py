"""The tensorrt export target: TRT-ready ONNX, optimization profiles, build_engine.sh, and (where TensorRT and a
GPU exist) engines built, cached and run.

TensorRT cannot be installed on the dev/CI machines, so the always-run tests check everything up to the engine:
the ONNX (checker, polygraphy, numerics on ONNX Runtime), the profiles and the trtexec lines. `build_engine`'s
control flow is also run against a small fake `tensorrt` module: that checks our plumbing (profiles, flags, the
timing cache file), not TensorRT. The real-TensorRT tests skip unless `tensorrt` imports and CUDA is present.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from compact.errors import CompactError
from export.bundle import ExportConfig, export_model
from export.targets import get_target, list_targets
from export.towers import prepare, towers
from export.trt_engine import build_engine, engine_support, trtexec_available
from helpers import tiny_compact

CTX = 24  # tiny_compact's context length
TRT_SKIP = "TensorRT is not installed here (it installs only from NVIDIA's index)"


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def _input_dims(path: Path) -> dict[str, list]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "bundle"
    manifest = export_model(tiny_compact(), "tensorrt", out, ExportConfig())
    return out, manifest


def _entry(manifest: dict, path: str) -> dict:
    return next(f for f in manifest["files"] if f["path"] == path)


def test_registry_lists_tensorrt():
    assert "tensorrt" in list_targets()
    target = get_target("tensorrt")
    assert target.packages == ("onnx", "onnxscript", "onnxruntime") and target.extra == "onnx"
    assert target.missing() is None  # usable without TensorRT: the engine build is optional


def test_trt_onnx_passes_full_checker(bundle):
    import onnx

    out, manifest = bundle
    for tower in ("image", "text"):
        path = out / f"{tower}.trt.onnx"
        onnx.checker.check_model(str(path), full_check=True)
        entry = _entry(manifest, path.name)
        assert entry["checker"] == "onnx.checker full_check passed"
        if importlib.util.find_spec("onnx_graphsurgeon") is not None:  # in the trt-tools extra
            assert entry["constant_folding"].startswith("onnx-graphsurgeon")
        else:
            assert "not installed" in entry["constant_folding"]
        graph = onnx.load(str(path))
        meta = {p.key: p.value for p in graph.metadata_props}
        assert json.loads(meta["compact.trt_profiles"]) == manifest["tensorrt"]["profiles"][tower]
        # TensorRT keeps opset 18 by default (the onnx target moved to 20): GELU stays Erf-based
        assert entry["opset"] == 18 and "Gelu" not in {n.op_type for n in graph.graph.node}
    assert _input_dims(out / "text.trt.onnx") == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"]}
    assert _entry(manifest, "text.trt.onnx")["int64_inputs"] == ["input_ids", "attention_mask"]


def test_profiles_match_the_towers_dynamic_axes(bundle):
    _, manifest = bundle
    profiles = manifest["tensorrt"]["profiles"]
    opt = {"batch": 8, "seq": min(32, CTX)}
    for tower in ("image", "text"):
        entry = _entry(manifest, f"{tower}.trt.onnx")
        assert set(profiles[tower]) == {i["name"] for i in entry["inputs"]}
        for spec in entry["inputs"]:
            prof = profiles[tower][spec["name"]]
            for axis, dim in enumerate(spec["shape"]):
                dyn = spec["dynamic_axes"].get(str(axis))
                if dyn is None:
                    assert prof["min"][axis] == prof["opt"][axis] == prof["max"][axis] == dim
                else:
                    assert (prof["min"][axis], prof["opt"][axis], prof["max"][axis]) == \
                        (dyn["min"], opt[dyn["name"]], dyn["max"])
    assert profiles["image"]["pixel_values"] == {"min": [1, 3, 32, 32], "opt": [8, 3, 32, 32],
                                                 "max": [64, 3, 32, 32]}
    assert profiles["text"]["input_ids"] == {"min": [1, 2], "opt": [8, CTX], "max": [64, CTX]}


def test_build_script_has_the_profiles(bundle):
    out, manifest = bundle
    script = out / manifest["tensorrt"]["build_script"]
    text = script.read_text()
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    lines = {ln.split("--onnx=")[1].split()[0]: ln for ln in text.splitlines() if "--onnx=" in ln}
    assert set(lines) == {"image.trt.onnx", "text.trt.onnx"}
    img, txt = lines["image.trt.onnx"], lines["text.trt.onnx"]
    assert "--minShapes=pixel_values:1x3x32x32" in img and "--optShapes=pixel_values:8x3x32x32" in img
    assert "--maxShapes=pixel_values:64x3x32x32" in img and "--saveEngine=image.fp16.plan" in img
    assert "--minShapes=input_ids:1x2,attention_mask:1x2" in txt
    assert f"--optShapes=input_ids:8x{CTX},attention_mask:8x{CTX}" in txt
    assert f"--maxShapes=input_ids:64x{CTX},attention_mask:64x{CTX}" in txt
    for line in (img, txt):
        assert "--fp16" in line and "--timingCacheFile=timing.cache" in line
        assert "--int8" not in line and "--stronglyTyped" not in line  # no QDQ nodes: no int8 engine


def test_manifest_says_no_engine_and_why(bundle):
    if engine_support()[0]:
        pytest.skip("TensorRT and a GPU are here: engines were built")
    out, manifest = bundle
    trt = manifest["tensorrt"]
    assert trt["engine_built"] is False and trt["engines"] == []
    assert "not built" in trt["note"] and "build_engine.sh" in trt["note"]
    assert not list(out.glob("*.plan"))
    for tower in ("image", "text"):
        parity = _entry(manifest, f"{tower}.trt.onnx")["parity"]
        assert parity["runtime"].startswith("onnxruntime CPU on the TRT-ready ONNX")
        assert "engine parity unverified" in parity["runtime"]


def test_ort_parity_on_the_trt_ready_onnx(bundle):
    _, manifest = bundle
    for tower in ("image", "text"):
        parity = _entry(manifest, f"{tower}.trt.onnx")["parity"]
        assert parity["verified"] and parity["passed"]
        assert parity["cosine_min"] >= 0.999


def test_polygraphy_inspect_passed(bundle):
    pytest.importorskip("polygraphy", reason="polygraphy is not installed")
    _, manifest = bundle
    for tower in ("image", "text"):
        entry = _entry(manifest, f"{tower}.trt.onnx")
        assert entry["polygraphy"]["passed"] is True
        assert entry["polygraphy"]["nodes"] == entry["ops"]


def test_static_shapes_have_no_profiles(tmp_path):
    """fixed_batch=1, fixed_seq=16: static inputs, no profiles, no shape flags; ORT matches torch at that shape.
    (Tower level: the bundle's fixed-length parity is not what is under test here.)"""
    from export.targets.onnx import ort_session

    cfg = ExportConfig(fixed_batch=1, fixed_seq=16)
    target = get_target("tensorrt")
    arts = []
    for tower in towers(prepare(tiny_compact()), cfg.normalize, cfg.fixed_batch, cfg.fixed_seq, cfg.max_batch):
        got = target.export(tower, tmp_path, cfg)
        assert [a.path for a in got if a.path.endswith(".onnx")] == [f"{tower.name}.trt.onnx"]
        art = got[0]
        assert art.details["static_shapes"] is True and art.details["profiles"] == {}
        feeds = {n: x.numpy() for n, x in zip(tower.input_names, tower.example)}
        with torch.no_grad():
            ref = tower.module(*tower.example).numpy()
        out = ort_session(tmp_path / art.path).run(None, feeds)[0]
        assert _cos(out, ref).min() >= 0.999
        arts += got
    assert _input_dims(tmp_path / "image.trt.onnx") == {"pixel_values": [1, 3, 32, 32]}
    assert _input_dims(tmp_path / "text.trt.onnx") == {"input_ids": [1, 16], "attention_mask": [1, 16]}
    facts = target.finalize(tmp_path, arts, cfg)["tensorrt"]
    assert facts["profiles"] == {}
    script = (tmp_path / "build_engine.sh").read_text()
    assert "--saveEngine=text.fp16.plan" in script and "Shapes=" not in script


def test_int8_only_for_explicitly_quantized_onnx():
    from export.targets.tensorrt import engine_precisions
    from export.trt_engine import trtexec_args

    assert engine_precisions(ExportConfig(), has_qdq=False) == ["fp16"]
    assert engine_precisions(ExportConfig(), has_qdq=True) == ["int8"]
    with pytest.raises(CompactError, match="no QDQ nodes"):
        engine_precisions(ExportConfig(target_options={"trt_precisions": ["fp16", "int8"]}), has_qdq=False)
    args = trtexec_args("image.trt.onnx", "image.int8.plan", {}, "int8", "timing.cache")
    assert "--stronglyTyped" in args and "--fp16" not in args and not any("Shapes" in a for a in args)


def _onnx_with(nodes, inputs, outputs, domains=(("", 18),)):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains])


def test_ops_tensorrt_rejects_are_named():
    from onnx import TensorProto, helper

    from export.targets.tensorrt import trt_blockers

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    seq_out = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    model = _onnx_with([helper.make_node("SequenceConstruct", ["x"], ["s"], name="pack")], [x], [seq_out])
    problems = trt_blockers(model)
    assert any("SequenceConstruct node 'pack'" in p for p in problems)
    assert any("sequence-typed" in p for p in problems)

    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    contrib = _onnx_with([helper.make_node("FastGelu", ["x"], ["y"], name="gelu0", domain="com.microsoft")],
                         [x], [y], domains=(("", 18), ("com.microsoft", 1)))
    assert trt_blockers(contrib) == [("FastGelu node 'gelu0': custom domain 'com.microsoft' (ONNX Runtime contrib "
                                      "ops need a TensorRT plugin)")]
    ok = _onnx_with([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y])
    assert trt_blockers(ok) == []


def test_make_trt_ready_raises_compact_error_naming_the_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from export.targets.tensorrt import make_trt_ready
    from export.towers import Tower

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _onnx_with([helper.make_node("Unique", ["x"], ["y"], name="uniq")], [x], [y])
    onnx.save(model, str(tmp_path / "raw.onnx"))
    tower = Tower("image", torch.nn.Identity(), ("x",), "y", (torch.zeros(2, 3),))
    with pytest.raises(CompactError, match=r"TensorRT 10 cannot parse the image tower: Unique node 'uniq'"):
        make_trt_ready(tmp_path / "raw.onnx", tmp_path / "image.trt.onnx", tower, {})


def _fake_tensorrt(parse_ok: bool = True) -> types.ModuleType:
    """Just enough of `tensorrt`'s API for `build_engine`'s control flow; records what it was asked."""
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0.0-fake"
    trt.calls = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        def __init__(self):
            self.inputs = []
            self.num_inputs = 0

        def get_input(self, i):
            return self.inputs[i]

    class Error:
        def node(self):
            return 3

        def node_name(self):
            return "uniq"

        def node_operator(self):
            return "Unique"

        def desc(self):
            return "No importer registered for op: Unique"

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path):
            if not parse_ok:
                self.num_errors = 1
                return False
            for i in onnx.load(path).graph.input:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim]
                self.network.inputs.append(Tensor(i.name, dims))
            self.network.num_inputs = len(self.network.inputs)
            return True

        def get_error(self, i):
            return Error()

    class Cache:
        def __init__(self, payload):
            self.payload = bytes(payload)

        def serialize(self):
            return self.payload + b"entry;"

        def combine(self, other, ignore_mismatch):
            return True

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            trt.calls.append(("set_shape", name, mn, opt, mx))

    class Config:
        def set_memory_pool_limit(self, pool, size):
            trt.calls.append(("workspace", size))

        def set_flag(self, flag):
            trt.calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            trt.calls.append(("profile",))

        def create_timing_cache(self, payload):
            return Cache(payload)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            trt.calls.append(("flags", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"fake-engine"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, Parser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5, EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    return trt


def test_build_engine_plumbing_with_fake_tensorrt(bundle, tmp_path, monkeypatch):
    """Our build code against a fake `tensorrt`: profiles per dynamic input, FP16 flag, the timing cache file
    created on the first build and loaded on the second, parser errors naming the node. Not TensorRT itself."""
    out, manifest = bundle
    profiles = manifest["tensorrt"]["profiles"]["text"]
    fake = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    cache = tmp_path / "timing.cache"
    first = build_engine(out / "text.trt.onnx", tmp_path / "text.fp16.plan", profiles, "fp16", timing_cache=cache)
    assert (tmp_path / "text.fp16.plan").read_bytes() == b"fake-engine"
    assert ("flag", "fp16") in fake.calls and ("flags", 0) in fake.calls
    shapes = [c for c in fake.calls if c[0] == "set_shape"]
    assert {c[1] for c in shapes} == {"input_ids", "attention_mask"}
    assert ("set_shape", "input_ids", (1, 2), (8, CTX), (64, CTX)) in shapes
    assert first["timing_cache"]["loaded"] is False and cache.is_file()
    second = build_engine(out / "text.trt.onnx", tmp_path / "text.fp16.plan", profiles, "fp16", timing_cache=cache)
    assert second["timing_cache"]["loaded"] is True
    assert second["timing_cache"]["bytes_loaded"] == first["timing_cache"]["bytes_saved"]
    with pytest.raises(CompactError, match="no QuantizeLinear/DequantizeLinear"):
        build_engine(out / "text.trt.onnx", tmp_path / "x.plan", profiles, "int8")
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(parse_ok=False))
    with pytest.raises(CompactError, match=r"Unique node 'uniq': No importer registered"):
        build_engine(out / "text.trt.onnx", tmp_path / "x.plan", profiles, "fp16")


FAKE_TRTEXEC = """#!{python}
import sys
from pathlib import Path

args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
with open({log!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
if "{fail}" and "{fail}" in args["onnx"]:
    print("[E] [TRT] ModelImporter.cpp:829: While parsing node number 3 [Unique -> 'y']: unsupported")
    sys.exit(1)
assert Path(args["onnx"]).is_file(), args["onnx"]
Path(args["saveEngine"]).write_bytes(b"plan")
cache = Path(args["timingCacheFile"])
cache.write_bytes((cache.read_bytes() if cache.is_file() else b"") + b"entry;")
"""


def _fake_trtexec(tmp_path: Path, fail: str = "") -> tuple[Path, Path]:
    exe, log = tmp_path / "trtexec", tmp_path / "trtexec.log"
    exe.write_text(FAKE_TRTEXEC.format(python=sys.executable, log=str(log), fail=fail))
    exe.chmod(0o755)
    return exe, log


def test_build_script_runs_with_a_fake_trtexec(bundle, tmp_path, monkeypatch):
    """build_engine.sh runs as written (TRTEXEC override, paths relative to the bundle), and
    build_with_trtexec reports the cache and trtexec's [E] lines. The fake stands in for trtexec: it checks
    the arguments' form, not what TensorRT would do with them."""
    from export.trt_engine import build_with_trtexec

    out, manifest = bundle
    copy = tmp_path / "bundle"
    copy.mkdir()
    for name in ("build_engine.sh", "image.trt.onnx", "text.trt.onnx"):
        (copy / name).write_bytes((out / name).read_bytes())
    (copy / "build_engine.sh").chmod(0o755)
    exe, log = _fake_trtexec(tmp_path)
    env = {**os.environ, "TRTEXEC": str(exe)}
    proc = subprocess.run([str(copy / "build_engine.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert (copy / "image.fp16.plan").is_file() and (copy / "text.fp16.plan").is_file()
    assert (copy / "timing.cache").read_bytes() == b"entry;entry;"  # one cache shared by both builds
    assert len(log.read_text().splitlines()) == 2

    monkeypatch.setenv("TRTEXEC", str(exe))
    assert trtexec_available()
    profiles = manifest["tensorrt"]["profiles"]["image"]
    cache = tmp_path / "timing.cache"
    first = build_with_trtexec(copy / "image.trt.onnx", tmp_path / "a.plan", profiles, timing_cache=cache)
    second = build_with_trtexec(copy / "image.trt.onnx", tmp_path / "b.plan", profiles, timing_cache=cache)
    assert first["timing_cache"]["loaded"] is False and second["timing_cache"]["loaded"] is True
    assert "--minShapes=pixel_values:1x3x32x32" in log.read_text().splitlines()[-1]
    (tmp_path / "failing").mkdir()
    bad, _ = _fake_trtexec(tmp_path / "failing", fail="text")
    monkeypatch.setenv("TRTEXEC", str(bad))
    with pytest.raises(CompactError, match=r"trtexec failed to build c.plan from text.trt.onnx: .*Unique"):
        build_with_trtexec(copy / "text.trt.onnx", tmp_path / "c.plan", {}, timing_cache=cache)


# ---- where TensorRT and a GPU exist ---------------------------------------------------------------------------


def _need_tensorrt():
    pytest.importorskip("tensorrt", reason=TRT_SKIP)
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA GPU")


def _torch_reference(tower_name: str, batch: int = 3, seq: int = 10):
    tw = {t.name: t for t in towers(prepare(tiny_compact()))}[tower_name]
    if tower_name == "image":
        feeds = {"pixel_values": torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))}
    else:
        ids = torch.randint(3, 250, (batch, seq), generator=torch.Generator().manual_seed(1))
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[0, seq // 2:] = 0
        feeds = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        ref = tw.module(*feeds.values()).numpy()
    return {k: v.numpy() for k, v in feeds.items()}, ref


def test_engines_built_cached_and_match_torch(bundle, tmp_path):
    _need_tensorrt()
    from export.trt_engine import TrtRunner

    out, manifest = bundle
    assert manifest["tensorrt"]["engine_built"] is True
    for tower in ("image", "text"):
        parity = _entry(manifest, f"{tower}.fp16.plan")["parity"]
        assert parity["verified"] and parity["runtime"].startswith("TensorRT")
    cache = tmp_path / "timing.cache"
    for tower in ("image", "text"):
        profiles = manifest["tensorrt"]["profiles"][tower]
        plan = tmp_path / f"{tower}.fp16.plan"
        first = build_engine(out / f"{tower}.trt.onnx", plan, profiles, "fp16", timing_cache=cache)
        second = build_engine(out / f"{tower}.trt.onnx", plan, profiles, "fp16", timing_cache=cache)
        assert second["timing_cache"]["loaded"] is True and second["timing_cache"]["bytes_loaded"] > 0
        if tower == "image":  # a fresh cache file on the first build
            assert first["timing_cache"]["loaded"] is False
        feeds, ref = _torch_reference(tower)
        got = TrtRunner(plan)(feeds)
        assert _cos(got, ref).min() >= 0.99


def test_trtexec_builds_an_engine(bundle, tmp_path):
    if not trtexec_available():
        pytest.skip("trtexec is not on PATH")
    from export.trt_engine import build_with_trtexec

    out, manifest = bundle
    plan = tmp_path / "image.fp16.plan"
    info = build_with_trtexec(out / "image.trt.onnx", plan, manifest["tensorrt"]["profiles"]["image"], "fp16",
                              timing_cache=tmp_path / "timing.cache")
    assert plan.is_file() and info["engine_bytes"] > 0 and (tmp_path / "timing.cache").is_file()
    if engine_support()[0]:  # the engine trtexec wrote also runs through our runner
        from export.trt_engine import TrtRunner

        feeds, ref = _torch_reference("image")
        assert _cos(TrtRunner(plan)(feeds), ref).min() >= 0.99
