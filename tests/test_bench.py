"""compact bench: the runtimes (through the registry), the timing statistics, the on-device runner and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.harness import TimingConfig, compare_callables, median_ci, percentile, time_callable
from bench.runtimes import RuntimeConfig, get_runtime, list_runtimes
from compact.errors import CompactError
from helpers import only_packages_env, tiny_compact

QUICK = TimingConfig(warmup=1, min_iters=5, max_iters=20, max_seconds=0.2)


# Tiny bundles, exported once per module from a saved tiny model folder (so torch runtimes can load the source).

@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from helpers import tiny_compact

    from compact.models.folder import save_model

    path = tmp_path_factory.mktemp("bench") / "tiny"
    save_model(tiny_compact(), path)
    return path


_BUNDLES: dict[str, Path] = {}


def _bundle(target: str, folder: Path, tmp: Path) -> Path:
    """An export bundle of the tiny model for `target`, exported once per module."""
    from export import ExportConfig, export_model

    if target not in _BUNDLES:
        export_model(str(folder), target, tmp / target, ExportConfig())
        _BUNDLES[target] = tmp / target
    return _BUNDLES[target]


@pytest.fixture(scope="module")
def bundles(tiny_folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundles")
    _BUNDLES.clear()
    return lambda target: _bundle(target, tiny_folder, tmp)


def _runtime_params():
    out = []
    for name in list_runtimes():
        # inductor compiles take ~30 s per tower here; the ExecuTorch export ~20 s
        marks = [pytest.mark.slow] if name in ("torch.compile", "executorch") else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _runtime_params())
def test_runtime_matches_torch(name, bundles, tiny_folder):
    from bench.inputs import InputConfig, tower_feeds

    rt = get_runtime(name)
    why = rt.missing()
    if why:
        pytest.skip(f"{name}: {why}")
    target = rt.targets[0] if rt.targets else "onnx"
    if target not in ("onnx", "openvino", "executorch"):
        pytest.skip(f"no {target} bundle can be built for the test here")
    from export.bundle import read_manifest

    bundle = bundles(target)
    manifest = read_manifest(bundle)
    assert rt.accepts(manifest) is None
    ref_rt = get_runtime("torch")
    for tower in ("image", "text"):
        feeds = tower_feeds(bundle, manifest, tower, 3, InputConfig())
        h = rt.load(bundle, manifest, tower, RuntimeConfig(threads=1))
        got = rt.run(h, rt.prepare(h, feeds))
        rt.synchronize(h)
        got = rt.to_numpy(got)
        rt.close(h)
        href = ref_rt.load(bundle, manifest, tower, RuntimeConfig(threads=1))
        ref = ref_rt.to_numpy(ref_rt.run(href, ref_rt.prepare(href, feeds)))
        assert got.shape == ref.shape == (3, manifest["embed_dim"])
        assert np.abs(got - ref).max() < 1e-4, f"{name} {tower}"


def test_every_runtime_says_why_it_is_missing():
    for name in list_runtimes():
        rt = get_runtime(name)
        why = rt.missing()
        assert why is None or isinstance(why, str) and why


# Statistics.

def test_percentiles_and_summary_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 0.5, 501)
    from bench.harness import summarize

    s = summarize(list(x), True, "fixed", 1.0, 0, None)
    for q, got in ((50, s.p50_s), (90, s.p90_s), (99, s.p99_s)):
        assert got == pytest.approx(np.percentile(x, q))
        assert percentile(x, q) == pytest.approx(np.percentile(x, q))
    assert s.mean_s == pytest.approx(x.mean()) and s.std_s == pytest.approx(x.std(ddof=1))
    assert s.ci_low_s <= s.median_s <= s.ci_high_s


def test_median_ci_covers_the_true_median():
    rng = np.random.default_rng(1)
    true = np.log(2)  # median of Exp(1)
    hits = sum(lo <= true <= hi for lo, hi in (median_ci(rng.exponential(1, 101)) for _ in range(1000)))
    assert 0.93 <= hits / 1000 <= 0.99


def _busy(seconds: float):
    def fn():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            pass

    return fn


def _noisy(rng, base=2e-4, sigma=0.3):
    def fn():
        _busy(base * rng.lognormal(0, sigma))()

    return fn


def test_ci_stopping_rule_on_a_noisy_callable():
    rng = np.random.default_rng(0)
    s = time_callable(_noisy(rng), TimingConfig(warmup=2, min_iters=20, max_iters=5000, target_ci=0.02, max_seconds=5))
    assert s.stop_reason == "ci" and s.converged
    assert s.ci_rel <= 0.02 and 20 <= s.n < 5000
    # Too noisy for the cap: stops at max_iters, not converged, and says so.
    s = time_callable(_noisy(rng, 1e-5, 1.5), TimingConfig(warmup=0, min_iters=5, max_iters=12, target_ci=0.001))
    assert s.stop_reason == "max_iters" and not s.converged and s.n == 12
    s = time_callable(lambda: None, TimingConfig(iters=7))
    assert s.n == 7 and s.stop_reason == "fixed"


def test_harness_overhead_is_below_two_percent_of_a_1ms_call():
    n = 20000
    t0 = time.perf_counter()
    time_callable(lambda: None, TimingConfig(warmup=0, iters=n))
    overhead = (time.perf_counter() - t0) / n  # the harness's own cost per timed call (no-op callable)
    one_ms = _busy(1e-3)
    direct = []
    for _ in range(50):
        t = time.perf_counter()
        one_ms()
        direct.append(time.perf_counter() - t)
    assert overhead / np.median(direct) < 0.02
    through = time_callable(one_ms, TimingConfig(warmup=2, iters=50))
    assert through.median_s / np.median(direct) == pytest.approx(1.0, abs=0.02)


def test_compare_callables_reports_b_relative_to_a():
    r = compare_callables(_busy(4e-4), _busy(2e-4), TimingConfig(warmup=2, min_iters=20, max_iters=400, max_seconds=3))
    assert r.ratio_b_over_a == pytest.approx(0.5, rel=0.1)
    assert r.speedup_b_over_a == pytest.approx(1 / r.ratio_b_over_a)
    assert r.speedup_ci_low <= r.speedup_b_over_a <= r.speedup_ci_high
    assert r.a.n == r.b.n
    d = r.to_dict()
    assert {"ratio_b_over_a", "speedup_b_over_a", "speedup_ci_low", "speedup_ci_high"} <= set(d)


def test_compare_callables_excludes_cross_talk_between_runtimes():
    """A runtime whose idle worker threads keep spinning slows whatever runs right after it (onnxruntime, TBB,
    OpenMP on few cores). Simulated here: the first call after a switch pays a 1 ms penalty. Alternating call by
    call would put that penalty into every sample; the block order times each callable in its steady state."""
    last = {"who": None}
    order = []

    def make(name, seconds):
        busy = _busy(seconds)

        def fn():
            if last["who"] not in (None, name):
                busy_penalty()
            last["who"] = name
            order.append(name)
            busy()
        return fn

    busy_penalty = _busy(1e-3)
    cfg = TimingConfig(warmup=0, iters=32, block=8, settle=2, settle_s=0)
    r = compare_callables(make("a", 4e-4), make("b", 2e-4), cfg)
    assert r.ratio_b_over_a == pytest.approx(0.5, rel=0.15)
    assert r.a.n == r.b.n == 32
    # blocks of settle + block calls, AB then BA
    assert "".join(order[:40]) == "a" * 10 + "b" * 10 + "b" * 10 + "a" * 10


def test_compare_callables_settles_for_a_time_after_each_switch():
    """onnxruntime's idle pool slowed the other session for 35-60 ms after a switch here, i.e. 10-15 calls of a
    3 ms graph: a settle counted in calls left whole blocks contaminated. Simulated: every call within 40 ms of a
    switch pays 1 ms. The default settle (0.15 s) times both in steady state; two calls of settle do not."""
    state = {"who": None, "since": 0.0}

    def make(name, seconds):
        busy, penalty = _busy(seconds), _busy(1e-3)

        def fn():
            now = time.perf_counter()
            if state["who"] != name:
                state["who"], state["since"] = name, now
            if now - state["since"] < 0.04:
                penalty()
            busy()
        return fn

    settled = compare_callables(make("a", 4e-4), make("b", 2e-4), TimingConfig(warmup=0, iters=32))
    assert settled.ratio_b_over_a == pytest.approx(0.5, rel=0.15)
    state["who"] = None
    counted = compare_callables(make("a", 4e-4), make("b", 2e-4),
                                TimingConfig(warmup=0, iters=32, settle=2, settle_s=0))
    assert counted.ratio_b_over_a > 0.75  # (0.2 + 1) / (0.4 + 1) = 0.86 when every timed call pays


def test_timing_config_rejects_bad_counts():
    for kw in ({"iters": 0}, {"min_iters": 0}, {"max_iters": -1}, {"threads": 0}, {"target_ci": 0}, {"block": 0},
               {"settle": -1}, {"settle_s": -0.1}):
        with pytest.raises(CompactError):
            TimingConfig(**kw)


def test_pareto_frontier_and_accuracy(tmp_path):
    from bench.report import accuracy_of, frontier, read_accuracy

    assert frontier([(1, 0.5), (2, 0.4), (3, 0.7), (0.5, 0.1)]) == [3, 0, 2]
    rep = {"zero_shot": {"en": 0.5, "de": 0.3}, "retrieval": {"en": {"i2t_r1": 0.9, "t2i_r1": 0.9}}}
    assert accuracy_of(rep) == pytest.approx(0.4)
    assert accuracy_of({"zero_shot": {}, "retrieval": {"en": {"i2t_r1": 0.2, "t2i_r1": 0.4}}}) == pytest.approx(0.3)
    (tmp_path / "report.json").write_text(json.dumps(rep))
    assert read_accuracy([f"Tiny={tmp_path}"]) == {"tiny": pytest.approx(0.4)}
    with pytest.raises(CompactError, match="name=path"):
        read_accuracy(["nonsense"])




# CLI.

def _cli():
    from compact.cli.bench import bench
    from compact.cli.main import cli

    if "bench" not in cli.commands:
        cli.add_command(bench)
    return cli


def _invoke(*args):
    return CliRunner().invoke(_cli(), ["bench", *[str(a) for a in args]])


def test_cli_run_writes_every_report_file(bundles, tmp_path):
    onnx, ov = bundles("onnx"), bundles("openvino")
    out = tmp_path / "out"
    res = _invoke("run", onnx, ov, "--runtime", "onnxruntime", "--runtime", "openvino", "--runtime", "torch",
                  "--batch", "1,2", "--max-seconds", "0.2", "--threads", "1", "-o", out)
    assert res.exit_code == 0, res.output
    for name in ("report.json", "report.csv", "report.md", "latency.png", "pareto.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    labels = {r["runtime_label"] for r in report["results"]}
    assert labels == {"onnxruntime", "openvino", "openvino-onnx", "torch"}
    assert any("onnxruntime" in s["runtime"] and "openvino" in s["reason"] for s in report["skipped"])
    files = sorted(p.name for p in out.glob("latency-*.json"))
    assert len(files) == 4 and all(f.startswith("latency-tiny-") and "-fp32-" in f for f in files)
    r = report["results"][0]
    img = r["towers"]["image"]
    assert [b["batch"] for b in img["batches"]] == [1, 2]
    assert img["load_s"] > 0 and img["first_inference_ms"] > 0 and img["peak_rss_mb"] > 0 and img["size_bytes"] > 0
    assert img["end_to_end"]["name"] == "embed one photo" and r["tokenizer"]["ms_per_text"] > 0
    assert r["threads"] == 1 and r["profile"]["cpu_flags"] and r["profile"]["runtimes"]
    md = (out / "report.md").read_text()
    assert "| tiny | openvino-onnx | fp32 | text | 2 |" in md


def test_cli_bad_input_is_one_line(bundles, tmp_path, monkeypatch):
    onnx = bundles("onnx")
    (tmp_path / "empty").mkdir()
    cases = [
        (("run", tmp_path / "empty", "-o", tmp_path / "o"), "no manifest.json"),
        (("run", onnx, "--runtime", "tflite", "-o", tmp_path / "o"), "unknown runtime 'tflite'; choose from: torch"),
        (("run", onnx, "--batch", "1,0", "-o", tmp_path / "o"), "batch sizes must be positive"),
        (("run", onnx, "--batch", "a", "-o", tmp_path / "o"), "comma-separated positive integers"),
        (("run", onnx, "--iters", "0", "-o", tmp_path / "o"), "--iters must be positive"),
        (("compare", onnx, onnx, "--batch", "0"), "--batch must be positive"),
        (("bundle", onnx, "--batch", "-1", "-o", tmp_path / "d"), "batch sizes must be positive"),
    ]
    for args, msg in cases:
        res = _invoke(*args)
        assert res.exit_code != 0 and msg in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    res = _invoke("compare", onnx, onnx, "--runtime", "openvino")
    assert res.exit_code != 0 and "pip install 'compact-clip[openvino]'" in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_cli_compare_two_runtimes(bundles, tmp_path):
    onnx = bundles("onnx")
    res = _invoke("compare", onnx, onnx, "--runtime-b", "openvino", "--iters", "10", "-o", tmp_path / "c.json")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["image"]["b_facts"]["runtime"] == "openvino" and data["image"]["a"]["n"] == 10
    assert data["text"]["speedup_b_over_a"] > 0


def test_device_bundle_runs_with_only_onnxruntime_and_numpy_and_merges(bundles, tmp_path):
    onnx = bundles("onnx")
    dev = tmp_path / "dev"
    res = _invoke("bundle", onnx, "-o", dev, "--batch", "1,2")
    assert res.exit_code == 0, res.output
    assert (dev / "README.md").read_text().count("python bench_runner.py --runtime onnxruntime") >= 1
    py = only_packages_env(tmp_path, ["onnxruntime", "numpy", "flatbuffers", "packaging", "google", "coloredlogs",
                                       "humanfriendly", "sympy", "mpmath"])
    check = "import importlib.util as u; assert not any(u.find_spec(m) for m in ('torch', 'compact', 'bench'))"
    subprocess.run([str(py), "-c", check], check=True, env={"PATH": os.environ["PATH"]}, cwd=tmp_path)
    out = tmp_path / "device.json"
    subprocess.run([str(py), str(dev / "bench_runner.py"), "--iters", "5", "--threads", "1", "-o", str(out)],
                   check=True, env={"PATH": os.environ["PATH"]}, cwd=tmp_path, capture_output=True)
    result = json.loads(out.read_text())
    assert result["kind"] == "compact-bench" and result["on_device_runner"]
    assert [b["batch"] for b in result["towers"]["text"]["batches"]] == [1, 2]
    # Merge with a local run: one table, one plot.
    local = tmp_path / "local"
    res = _invoke("run", onnx, "--runtime", "openvino", "--batch", "1", "--iters", "3", "-o", local)
    assert res.exit_code == 0, res.output
    merged = tmp_path / "merged"
    res = _invoke("report", local / "report.json", out, "-o", merged)
    assert res.exit_code == 0, res.output
    rep = json.loads((merged / "report.json").read_text())
    assert {r["runtime_label"] for r in rep["results"]} == {"onnxruntime", "openvino-onnx"}
    assert (merged / "latency.png").stat().st_size > 0 and "onnxruntime" in (merged / "report.md").read_text()
    res = _invoke("report", tmp_path / "nothing.json", "-o", merged)
    assert res.exit_code != 0 and "does not exist" in res.output


def test_quantize_width_shapes_and_students():
    from bench.quantize_width import parse_shapes, student_at
    from compact.models.compact_clip import count_parameters

    assert parse_shapes("96x3, 128X2") == [(96, 3), (128, 2)]
    for bad in ("96", "100x3", "96x0", "", "axb"):
        with pytest.raises(CompactError, match="WIDTHxDEPTH|empty"):
            parse_shapes(bad)
    base = tiny_compact()
    s = student_at(base, 64, 2)
    assert s.cfg.vision.width == s.cfg.text.width == 64 and s.cfg.text.depth == s.cfg.vision.depth == 2
    assert s.cfg.text.heads == 2 and s.cfg.text.mlp_dim == 256 and s.cfg.text.vocab_size == base.cfg.text.vocab_size
    assert count_parameters(s) > count_parameters(student_at(base, 32, 2))
    from bench.quantize_width import main

    with pytest.raises(SystemExit) as e:
        main(["--threads", "0"])
    assert e.value.code == 2


def test_publish_prints_the_table_and_writes_it_with_the_payload(tmp_path, capsys):
    from bench.report import publish

    path = publish("| a |\n|---|\n| 1.50x |", tmp_path / "runs" / "bench", "demo", {"rows": [{"speedup": 1.5}]})
    assert capsys.readouterr().out.strip().endswith("| 1.50x |")
    data = json.loads(path.read_text())
    assert path.name == "demo.json" and data["rows"][0]["speedup"] == 1.5 and data["table"].startswith("| a |")
    assert [p.name for p in path.parent.iterdir()] == ["demo.json"]  # no temp file left behind


def test_quantize_vs_fp32_runs_auto_once_per_thread_count(tmp_path, monkeypatch, capsys):
    """`--threads 1 --threads 2`: one auto run per runtime and thread count, fp32 and int8 timed at that count."""
    import compact.quantize.run as qrun
    from bench import quantize_vs_fp32

    seen = []

    def fake(model, cfg, out):
        seen.append((cfg.runtime, cfg.threads, cfg.auto))
        lat = {"speedup": 1.0 + cfg.threads / 10, "speedup_ci95": [1.0, 2.0]}
        return {"choice": {"image": "m"}, "candidates": [
            {"method": "m", "tower": "image", "latency": lat, "cosine_mean": 0.9999, "passed": True,
             "eval": {"max_drop": 0.2}}]}

    monkeypatch.setattr(qrun, "run_quantize", fake)
    quantize_vs_fp32.main(["--model", "reference", "--runtime", "onnxruntime", "--threads", "1", "--threads", "2",
                           "--out", str(tmp_path)])
    assert seen == [("onnxruntime", 1, True), ("onnxruntime", 2, True)]
    data = json.loads((tmp_path / "quantize_vs_fp32-reference.json").read_text())
    assert list(data["reports"]) == ["onnxruntime@1t", "onnxruntime@2t"]
    out = capsys.readouterr().out
    assert "| onnxruntime@1t | image | m | 1.10x" in out and "| onnxruntime@2t | image | m | 1.20x" in out
    with pytest.raises(SystemExit) as e:
        quantize_vs_fp32.main(["--threads", "0", "--out", str(tmp_path)])
    assert e.value.code == 2


def test_photo_then_query_times_spin_against_no_spin(bundles, tmp_path):
    pytest.importorskip("onnxruntime")
    from bench.photo_then_query import main

    out = tmp_path / "ptq.json"
    main(["--bundle", str(bundles("onnx")), "--max-seconds", "0.3", "--threads", "1", "--out", str(out)])
    r = json.loads(out.read_text())
    assert set(r["rows"]) == {"image", "text", "image+text", "photo->query"}
    for row in r["rows"].values():
        assert row["spin_ms"] > 0 and row["no_spin_ms"] > 0
        assert row["speedup_ci_low"] <= row["speedup_b_over_a"] <= row["speedup_ci_high"]
    for label in ("spin", "no spin"):
        want = r["rows"]["image+text"]["spin_ms" if label == "spin" else "no_spin_ms"] / (
            r["rows"]["image"]["spin_ms" if label == "spin" else "no_spin_ms"]
            + r["rows"]["text"]["spin_ms" if label == "spin" else "no_spin_ms"])
        assert r["back_to_back_over_alone"][label] == pytest.approx(want)


def test_gpu_check_says_plainly_when_there_is_no_gpu(capsys, monkeypatch):
    import torch

    from bench.gpu_check import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["-o", "/nonexistent/x.json"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_no_spin_reaches_the_onnxruntime_session_and_the_result(bundles, tmp_path):
    pytest.importorskip("onnxruntime")
    from bench.runtimes import RuntimeConfig, get_runtime
    from export.bundle import read_manifest

    onnx = bundles("onnx")
    rt, manifest = get_runtime("onnxruntime"), read_manifest(onnx)
    for spin, want in ((True, ""), (False, "0")):
        h = rt.load(onnx, manifest, "image", RuntimeConfig(threads=1, spin=spin))
        got = h.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") \
            if want else ""
        assert got == want
    out = tmp_path / "out"
    res = _invoke("run", onnx, "--batch", "1", "--max-seconds", "0.2", "--threads", "1", "--no-spin", "-o", out)
    assert res.exit_code == 0, res.output
    (r,) = json.loads((out / "report.json").read_text())["results"]
    assert r["spin"] is False and r["towers"]["image"]["batches"][0]["p50_ms"] > 0


def test_vs_optimum_times_every_compact_form_against_one_graph(tmp_path):
    """bench.vs_optimum's measuring half on a tiny HF CLIP: the one-graph side is the HF model exported whole (what
    Optimum's zero-shot-image-classification export is), compact's side each deploy form; parity, ratios, FLOPs."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    import torch
    from transformers import CLIPModel

    from bench.vs_optimum import VARIANTS, hf_flops, measure
    from export import ExportConfig, export_model
    from helpers import hf_tiny_clip

    hf = hf_tiny_clip(tmp_path / "hf")
    model = CLIPModel.from_pretrained(str(hf)).eval()

    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = model

        def forward(self, input_ids, pixel_values, attention_mask):
            out = self.clip(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
            return out.logits_per_image, out.text_embeds, out.image_embeds

    one = tmp_path / "one.onnx"
    ids, px = torch.ones(2, 9, dtype=torch.long), torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        torch.onnx.export(Whole(), (ids, px, torch.ones_like(ids)), str(one), dynamo=False,
                          input_names=["input_ids", "pixel_values", "attention_mask"],
                          output_names=["logits_per_image", "text_embeds", "image_embeds"],
                          dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                                        "pixel_values": {0: "b"}})
    for target in ("onnx", "openvino"):
        export_model(f"hf:{hf}", target, tmp_path / target, ExportConfig(optimize=target == "onnx"))
    bundles = {v: tmp_path / ("onnx" if v == "onnx" else "openvino") for v in VARIANTS}
    bundles["openvino-fixed"] = {}
    for b in (1, 2):  # the fixed-batch form: one export per timed batch, its batch axis frozen
        export_model(f"hf:{hf}", "openvino", tmp_path / f"ov-b{b}", ExportConfig(fixed_batch=b))
        bundles["openvino-fixed"][b] = tmp_path / f"ov-b{b}"
    import openvino as ov

    assert ov.Core().read_model(str(tmp_path / "ov-b2" / "image.xml")).inputs[0].get_partial_shape()[0] == 2
    rows = measure(one, bundles, hf, [1, 2], 1, QUICK, peak_gflops=100.0)
    assert [(r["batch"], r["compact"]) for r in rows] == [(b, v) for b in (1, 2) for v in VARIANTS]
    for r in rows:
        floor = 0.999 if r["compact"] == "openvino-bf16" else 0.99999
        assert min(r["parity_cosine_min"].values()) > floor, r
        assert r["compact_ms"] > 0 and r["optimum_ms"] > 0
        assert r["compact_over_optimum"] == pytest.approx(r["compact_ms"] / r["optimum_ms"], rel=1e-3)
        f = r["fp32_floor"]
        assert f["floor_ms"] == pytest.approx((f["flops_per_item"]["image"] + f["flops_per_item"]["text"])
                                             * r["batch"] / 100e9 * 1e3)
    # FLOPs per item against the tiny config by hand: patch conv, 2 blocks of (4 w^2 + 2 w mlp) MACs per token plus
    # attention's 2 T^2 w MACs, and the projection; 17 image tokens (16 patches + class)
    w, mlp, t, proj = 32, 64, 17, 16
    image = 2 * 16 * 3 * 8 * 8 * w + 2 * 2 * (4 * w * w * t + 2 * w * mlp * t + 2 * t * t * w) + 2 * w * proj
    assert hf_flops(hf, 9)["image"] == image


def test_teacher_vs_student_times_int8_text_against_fp32_at_each_length(bundles, tiny_folder, tmp_path):
    """--text-lengths: the student's int8 text tower against its fp32 one, one row per token length, on the
    synthetic ids of exactly that length (the fp32 and int8 towers must agree on them)."""
    pytest.importorskip("onnxruntime")
    from bench.compare import side_callable
    from bench.inputs import InputConfig
    from bench.teacher_vs_student import int8_text_by_length, main
    from compact.quantize.run import QuantizeConfig, run_quantize

    cfg = QuantizeConfig(runtime="onnxruntime", methods=("ort_dynamic_int8",), towers=("text",), eval_data=None,
                         timing_iters=5, calib_images=8, calib_texts_per_lang=4, force=True)
    run_quantize(str(tiny_folder), cfg, tmp_path / "q")
    fp32, int8 = bundles("onnx"), tmp_path / "q" / "bundle"
    rows = int8_text_by_length(fp32, int8, "onnxruntime", [5, 12], QUICK, threads=1)
    assert [r["tokens"] for r in rows] == [5, 12] and {r["precision"] for r in rows} == {"int8"}
    for r in rows:
        assert r["fp32_p50_ms"] > 0 and r["int8_p50_ms"] > 0
        assert r["speedup_b_over_a"] == pytest.approx(r["fp32_p50_ms"] / r["int8_p50_ms"], rel=1e-3)
    outs = {}
    for side, bundle in (("fp32", fp32), ("int8", int8)):
        call, close, _ = side_callable(bundle, "onnxruntime", "text", 1, InputConfig(source="synthetic", seq=12), 1)
        outs[side] = np.asarray(call()).reshape(1, -1)
        close()
    assert outs["fp32"].shape == outs["int8"].shape
    cos = float((outs["fp32"] * outs["int8"]).sum() / np.linalg.norm(outs["fp32"]) / np.linalg.norm(outs["int8"]))
    assert cos > 0.98
    with pytest.raises(SystemExit):
        main(["--student-recipe", "recipes/distill-cpu-fast.yaml", "--text-lengths", "8"])  # needs --quantize


def test_openvino_runners_run_a_bundle_in_the_precision_its_manifest_records(bundles, tmp_path):
    """`compact quantize` writes inference_precision=bf16 for its bf16 OpenVINO methods: `compact bench` and the
    device runner must time the file in bf16 (not silently in f32); an explicit hint still overrides."""
    ov = pytest.importorskip("openvino")
    import shutil

    from bench.device_runner import load_openvino
    from bench.runtimes import RuntimeConfig
    from export.bundle import read_manifest

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: OpenVINO runs f32 whatever the hint")
    b = tmp_path / "ov-bf16"
    shutil.copytree(bundles("openvino"), b)
    manifest = json.loads((b / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["tower"] == "image":
            f["inference_precision"] = "bf16"
    (b / "manifest.json").write_text(json.dumps(manifest))
    rt = get_runtime("openvino")
    manifest = read_manifest(b)

    def hint(cfg, tower="image"):
        return rt.load(b, manifest, tower, cfg).compiled.get_property("INFERENCE_PRECISION_HINT")

    assert hint(RuntimeConfig(threads=1)) == ov.Type.bf16
    assert hint(RuntimeConfig(threads=1), "text") == ov.Type.f32
    assert hint(RuntimeConfig(threads=1, precision_hint="f32")) == ov.Type.f32
    entry = next(f for f in manifest["files"] if f["tower"] == "image" and f["path"].endswith(".xml"))
    run16, _ = load_openvino(str(b / entry["path"]), 1, entry)
    run32, _ = load_openvino(str(b / entry["path"]), 1, {})
    x = {"pixel_values": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    y16, y32 = np.array(run16(x)).ravel(), np.array(run32(x)).ravel()
    cos = float(y16 @ y32 / np.linalg.norm(y16) / np.linalg.norm(y32))
    assert 0.99 < cos and not np.allclose(y16, y32, rtol=0, atol=1e-7)  # bf16 rounding, yet the same embedding
