"""Structured pruning: every importance metric through the registry, plans that meet targets, real shrinking."""

import json

import pytest
import torch
from click.testing import CliRunner

from compact.cli.main import cli
from compact.errors import CompactError, DataError
from compact.models.compact_clip import count_parameters
from compact.models.surgery import slice_model
from compact.prune.importance import Calibration, compute_importance, list_importance
from compact.prune.plan import PlanConfig, build_plan
from helpers import tiny_compact


def _tiny_data(n=80, langs=("en", "de")):
    """A small parallel EvalData with a classification view, from random images (scores only need to run)."""
    import numpy as np

    from compact.data.reference.dataset import ArrayImageSource
    from compact.data.types import ClassificationView, EvalData

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, size=(n, 32, 32, 3), dtype=np.uint8)
    pairs = {lg: [(i, f"{lg} caption {i % 7}") for i in range(n)] for lg in langs}
    view = ClassificationView(labels=[i % 4 for i in range(n)], class_names={lg: ["a", "b", "c", "d"] for lg in langs},
                              prompts={lg: [[f"{lg} {c}"] for c in "abcd"] for lg in langs})
    return EvalData(name="tiny", images=ArrayImageSource(imgs, "t"), pairs=pairs, classification=view, parallel="en")


TESTED = {"magnitude", "taylor", "mope", "latency"}


def test_every_metric_is_tested():
    assert set(list_importance()) == TESTED


def _fake_table(model, cfg=None, towers=("vision", "text")):
    """A latency table with known costs: layer 0 units cost 4x layer 1's."""
    table = {}
    for t in towers:
        d = getattr(model.cfg, t).depth
        table[t] = {"heads": [0.4 if i == 0 else 0.1 for i in range(d)], "mlp": [0.004 if i == 0 else 0.001 for i in range(d)],
                    "layers": [2.0 if i == 0 else 0.5 for i in range(d)], "tower_ms": 3.0}
    return {"runtime": "onnxruntime", "batch": 8, "per_unit_ms": table}


@pytest.mark.parametrize("name", sorted(TESTED))
def test_metric_scores_every_unit(name, monkeypatch):
    monkeypatch.setattr("compact.prune.latency.latency_table", _fake_table)
    m = tiny_compact()
    s = compute_importance(name, m, Calibration(data=_tiny_data(), langs=("en", "de"), batch_size=32))
    for tower in ("vision", "text"):
        cfg = getattr(m.cfg, tower)
        assert len(s.heads[tower]) == cfg.depth and len(s.mlp[tower]) == cfg.depth
        assert s.heads[tower][0].shape == (cfg.heads_at(0),) and s.mlp[tower][0].shape == (cfg.mlp_at(0),)
        assert s.layers[tower].shape == (cfg.depth,)
        assert all(torch.isfinite(t).all() for t in s.heads[tower] + s.mlp[tower])
    if name != "mope":  # magnitude/taylor are positive sums; mope drops can be 0 or negative
        assert all((t >= 0).all() for t in s.heads["text"])


def test_latency_aware_divides_the_base_score_by_the_measured_cost(monkeypatch):
    monkeypatch.setattr("compact.prune.latency.latency_table", _fake_table)
    m = tiny_compact()
    calib = Calibration(base_metric="magnitude")
    lat = compute_importance("latency", m, calib)
    base = compute_importance("magnitude", m, Calibration())
    hmean = torch.cat(base.heads["text"]).mean()
    mmean = torch.cat(base.mlp["vision"]).mean()
    assert lat.per_cost and not base.per_cost
    assert torch.allclose(lat.heads["text"][0], base.heads["text"][0] / hmean / 0.4)
    assert torch.allclose(lat.mlp["vision"][1], base.mlp["vision"][1] / mmean / 0.001)
    lmean = base.layers["text"].mean()
    assert torch.allclose(lat.layers["text"], base.layers["text"] / lmean / torch.tensor([2.0, 0.5]))
    # Ranked as importance per ms: the planner removes the expensive layer-0 units first.
    plan = build_plan(m, lat, PlanConfig(keep_params=0.9, granularity=("mlp",)))
    per_layer = plan.removed["text"]["per_layer"]
    assert per_layer["0"]["mlp_removed"] > per_layer["1"]["mlp_removed"]
    assert calib.latency_table["per_unit_ms"]["text"]["tower_ms"] == 3.0


@pytest.mark.slow
def test_latency_table_is_measured_on_ort():
    from compact.prune.latency import LatencyConfig, compare_models, latency_table

    m = tiny_compact()
    # One tower: the table's code is the same for both, and each row is an ONNX export (~3 s of CI each).
    lut = latency_table(m, LatencyConfig(batch=4, seconds=0.2), towers=("text",))
    assert set(lut["per_unit_ms"]) == {"text"}
    for tower in ("text",):
        t = lut["per_unit_ms"][tower]
        assert t["tower_ms"] > 0 and len(t["heads"]) == len(t["mlp"]) == len(t["layers"]) == 2
        assert all(v is None or v >= 0 for k in ("heads", "mlp", "layers") for v in t[k])
    half = slice_model(m, build_plan(m, compute_importance("magnitude", m, Calibration()),
                                     PlanConfig(keep_params=0.6)).plan)
    r = compare_models(m, half, LatencyConfig(batch=4, seconds=0.5))
    assert r["towers"]["image"]["onnx_size_ratio"] < 0.9 and r["towers"]["text"]["onnx_bytes_after"] > 0


def test_magnitude_ranks_a_zeroed_head_last():
    m = tiny_compact()
    hd = m.cfg.text.dim_per_head
    with torch.no_grad():
        m.text.blocks[0].attn.qkv.weight.view(3, 2, hd, 32)[:, 1] *= 0.01
        m.text.blocks[0].attn.out.weight.view(32, 2, hd)[:, 1] *= 0.01
    s = compute_importance("magnitude", m, Calibration())
    assert s.heads["text"][0][1] < s.heads["text"][0][0] * 0.1


def test_taylor_is_weight_times_gradient():
    from compact.prune.importance._objective import calibration_batches, objective

    m = tiny_compact()
    calib = Calibration(data=_tiny_data(), batch_size=32)
    s = compute_importance("taylor", m, calib)
    m.zero_grad()
    for batch in calibration_batches(m, calib):
        objective(m, *batch).backward()
    b = m.visual.blocks[1]
    want = (b.fc1.weight * b.fc1.weight.grad).abs().sum(1) + (b.fc1.bias * b.fc1.bias.grad).abs() + \
        (b.fc2.weight * b.fc2.weight.grad).abs().sum(0)
    assert torch.allclose(s.mlp["vision"][1], want.detach(), rtol=1e-4, atol=1e-8)


def test_mope_score_is_the_measured_drop(tmp_path):
    from compact.prune.importance._objective import masked
    from compact.prune.importance.mope import _metric

    m = tiny_compact()
    calib = Calibration(data=_tiny_data(), langs=("en",), cache_dir=str(tmp_path))
    s = compute_importance("mope", m, calib)
    base = _metric(m, calib)
    with masked(m, "text", 1, "layer"):
        dropped = _metric(m, calib)
    assert s.layers["text"][1].item() == pytest.approx(base - dropped, abs=1e-6)
    assert len(list(tmp_path.glob("mope-*.json"))) == 1  # cached
    again = compute_importance("mope", m, calib)
    assert torch.equal(again.layers["text"], s.layers["text"])


def test_mope_needs_enough_calibration():
    with pytest.raises(DataError, match="at least 72"):
        compute_importance("mope", tiny_compact(), Calibration(data=_tiny_data(n=20)))


def test_plan_meets_parameter_target_and_shrinks_tensors():
    m = tiny_compact()
    s = compute_importance("magnitude", m, Calibration())
    res = build_plan(m, s, PlanConfig(keep_params=0.7, granularity=("heads", "mlp")))
    small = slice_model(m, res.plan)
    assert count_parameters(small) == res.params_after_estimate
    assert count_parameters(small) <= 0.7 * count_parameters(m)
    assert all(h >= 1 for h in (small.cfg.text.heads if isinstance(small.cfg.text.heads, list) else [small.cfg.text.heads]))
    with torch.no_grad():
        tb = small.tokenize(["a red circle"])
        assert small.encode_text(tb.ids, tb.mask).shape == (1, 32)


def test_plan_removes_layers_when_width_is_not_enough():
    m = tiny_compact()
    s = compute_importance("magnitude", m, Calibration())
    res = build_plan(m, s, PlanConfig(keep_params=0.75, granularity=("layers",)))
    small = slice_model(m, res.plan)
    assert small.cfg.vision.depth + small.cfg.text.depth < 4
    assert count_parameters(small) == res.params_after_estimate <= 0.75 * count_parameters(m)
    both = build_plan(m, s, PlanConfig(keep_params=0.5))  # width first, then depth
    assert count_parameters(slice_model(m, both.plan)) <= 0.5 * count_parameters(m)


def test_impossible_targets_are_clear_errors():
    m = tiny_compact()
    s = compute_importance("magnitude", m, Calibration())
    with pytest.raises(CompactError, match="cannot reach"):
        build_plan(m, s, PlanConfig(keep_params=0.05, granularity=("heads",)))
    with pytest.raises(CompactError, match="every head of a layer"):
        PlanConfig(min_heads=0)


def test_cli_prunes_reference_teacher_with_vocab(quick_reference, tmp_path):
    r = CliRunner().invoke(cli, ["prune", "reference-quick", "-o", str(tmp_path / "p"), "--keep", "0.3", "--langs",
                                 "en", "--calib", "reference-quick:val", "--eval-data", "reference-quick:test",
                                 "--calib-limit", "200", "--recover-steps", "3", "--no-latency"])
    assert r.exit_code == 0, r.output  # (the latency report: test_cli_iterative_schedule_and_latency_report)
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    assert rep["parameters"]["ratio"] <= 0.3 and "latency" not in rep
    assert rep["vocab"]["after"] < 2000 and rep["vocab"]["before"] == 49408
    assert rep["flops"]["after"]["image"] <= rep["flops"]["before"]["image"]
    assert set(rep["eval"]) == {"before", "after_pruning", "after_recovery"}
    assert len(rep["recovery"][0]["loss_curve"]) >= 1
    from compact.models.folder import load_model

    p = load_model(tmp_path / "p")
    assert p.cfg.text.vocab_size == rep["vocab"]["after"]


def test_cli_unsupported_architecture(tmp_path):
    import open_clip

    m = open_clip.create_model("RN50", pretrained=None)
    d = tmp_path / "rn"
    d.mkdir()
    r = CliRunner().invoke(cli, ["prune", "open_clip:RN50", "-o", str(tmp_path / "o"), "--eval-data", ""])
    assert r.exit_code == 1 and "ModifiedResNet" in r.output and "Traceback" not in r.output
    del m


def test_cli_mope_calibration_too_small(quick_reference, tmp_path):
    r = CliRunner().invoke(cli, ["prune", "reference-quick", "-o", str(tmp_path / "o"), "--importance", "mope",
                                 "--calib", "reference-quick:val", "--calib-limit", "40", "--eval-data", ""])
    assert r.exit_code == 1 and "at least 72" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_iterative_schedule_and_latency_report(quick_reference, tmp_path):
    r = CliRunner().invoke(cli, ["prune", "reference-quick", "-o", str(tmp_path / "p"), "--keep", "0.2",
                                 "--langs", "en", "--schedule", "iterative", "--iterations", "2", "--recover-steps", "4",
                                 "--calib", "reference-quick:val", "--calib-limit", "100", "--eval-data",
                                 "reference-quick:test", "--latency-batch", "2"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    it = rep["iterations"]
    assert [x["granularity"] for x in it] == [["heads", "mlp"], ["heads", "mlp", "layers"]]
    assert it[0]["keep_total"] > it[1]["keep_total"] and rep["parameters"]["ratio"] <= 0.2
    assert len(rep["recovery"]) == 2
    for tower in ("image", "text"):
        lat = rep["latency"]["towers"][tower]
        assert lat["onnx_bytes_after"] < lat["onnx_bytes_before"] and lat["before_ms"] > 0
    assert "ORT p50" in r.output


@pytest.mark.slow
def test_flops_target_is_met(quick_reference, tmp_path):
    from compact.prune.prune import PruneConfig, run_prune

    rep = run_prune("reference-quick", PruneConfig(keep_flops=0.6, langs=("en",), calib="reference-quick:val",
                                                   calib_limit=100,
                                                   eval_data=None, measure_latency=False), tmp_path / "p")
    f = rep["flops"]
    before = f["before"]["image"] + f["before"]["text"]
    after = f["after"]["image"] + f["after"]["text"]
    assert after <= 0.6 * before and after > 0.3 * before  # met, and not by pruning far past it


def test_bad_targets_are_clear():
    from compact.prune.prune import PruneConfig

    with pytest.raises(CompactError, match="one target"):
        PruneConfig(keep_flops=0.5, target_latency_ms=3.0)
    with pytest.raises(CompactError, match="schedule"):
        PruneConfig(schedule="gradual")


def test_width_pruning_slices_the_residual_stream():
    m = tiny_compact()
    s = compute_importance("magnitude", m, Calibration())
    res = build_plan(m, s, PlanConfig(keep_params=0.8, granularity=("width",), min_width_frac=0.5))
    small = slice_model(m, res.plan)
    assert small.cfg.vision.width < 32 and small.cfg.text.width < 32
    assert res.removed["text"]["width_removed"] == 32 - small.cfg.text.width
    assert count_parameters(small) == res.params_after_estimate <= 0.8 * count_parameters(m)
    ids = torch.randint(3, 250, (2, 7))
    out = small.encode_text(ids, torch.ones_like(ids))
    assert out.shape == (2, 32) and torch.isfinite(out).all()


def test_latency_target_is_met_by_bisection(monkeypatch):
    """The latency target search, with the ORT timing replaced by a deterministic cost model."""
    from compact.prune.prune import PruneConfig, _resolve_keep

    m = tiny_compact()
    full = count_parameters(m)
    monkeypatch.setattr("compact.prune.prune._latency_ms", lambda model, cfg: 10.0 * count_parameters(model) / full)
    s = compute_importance("magnitude", m, Calibration())
    cfg = PruneConfig(target_latency_ms=7.0)
    keep = _resolve_keep(m, m, s, cfg, None, ("heads", "mlp", "layers"))
    small = slice_model(m, build_plan(m, s, PlanConfig(keep_params=keep)).plan)
    assert 10.0 * count_parameters(small) / full <= 7.0  # met
    assert keep > 0.6  # and not by pruning far past it
    with pytest.raises(CompactError, match="cannot be met"):
        _resolve_keep(m, m, s, PruneConfig(target_latency_ms=0.01), None, ("heads", "mlp", "layers"))


def test_recovery_caches_the_teacher_only_when_it_draws_more_than_twice_the_data(quick_reference, tmp_path):
    """Recovery embeds every training sample once when its steps draw at least twice as many samples as the split
    holds (compact run's default prune), and the cached targets are the unpruned model's own embeddings."""
    from compact.distill.cache import OnlineTeacher, TeacherCache
    from compact.distill.recipe import DistillRecipe
    from compact.distill.trainer import open_recipe_data
    from compact.models.teachers import load_teacher
    from compact.prune.prune import _recovery_cache

    recipe = DistillRecipe(teacher="reference-quick", data="reference-quick", langs=["en", "de"])
    n = len(open_recipe_data(recipe)[0].images)
    assert _recovery_cache(recipe, 2 * n - 1, tmp_path, None) is None and not (tmp_path / "teacher-cache").exists()
    seen = []
    cache = _recovery_cache(recipe, 2 * n, tmp_path, lambda *a: seen.append(a))
    assert cache == tmp_path / "teacher-cache" and seen[-1][1] == seen[-1][2]
    train = open_recipe_data(recipe)[0]
    online = OnlineTeacher(load_teacher("reference-quick"), train)
    idx = torch.tensor([0, 7, n - 1])
    cached = TeacherCache(cache).image(idx)
    assert torch.nn.functional.cosine_similarity(cached, online.image(idx)).min() > 0.9999
