"""`compact run`: a tiny recipe end to end on the quick reference, resume after a kill without redoing finished
stages, the report, and every shipped recipe validated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from compact.cli.main import cli
from compact.errors import CompactError
from compact.pipeline.recipe import PipelineRecipe, load_pipeline
from compact.pipeline.run import run_pipeline
from compact.utils.config import RecipeError
from helpers import killed_at

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "compact.cli.main", "run"]

TINY = """
name: tiny
teacher: reference-quick
data: reference-quick
langs: [en, de, zh]
distill: {recipe: reference-quick, max_steps: 4}
prune: {keep: 0.8, recover_steps: 4, calib_limit: 80, latency: false}
quantize: {runtime: onnxruntime, methods: [ort_dynamic_int8], eval_limit: 60, max_drop: 100.0, min_cosine: 0.5}
export: {targets: [onnx]}
bench: {runtimes: [onnxruntime], batch: [1], iters: 3}
eval: {limit: 60}
"""


def _stamps(out: Path, stages) -> dict:
    return {s: (out / s / "stage.json").stat().st_mtime_ns for s in stages}


@pytest.mark.slow
def test_tiny_run_resumes_after_a_kill(quick_reference, tmp_path):
    """`compact run` killed with SIGKILL in the quantize stage (after its first candidate), then again in the bench
    stage (after its first result): each re-run redoes only the stage that was killed and those after it."""
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(TINY)
    out = tmp_path / "run"

    killed_at([*RUN, str(recipe_file), "-o", str(out)], "quantize.candidate:1")
    assert not (out / "quantize" / "stage.json").exists() and not (out / "report.html").exists()
    first = _stamps(out, ("distill", "prune"))

    killed_at([*RUN, str(recipe_file), "-o", str(out)], "bench.result:1")
    assert _stamps(out, ("distill", "prune")) == first  # not redone
    assert not (out / "bench" / "stage.json").exists() and not (out / "report.html").exists()
    finished = _stamps(out, ("distill", "prune", "quantize", "export", "eval"))

    events: list[tuple[str, str]] = []
    res = run_pipeline(load_pipeline(recipe_file), out, on_stage=lambda s, w: events.append((s, w)))
    ran = [s for s, w in events if w == "run"]
    assert ran == ["bench", "report"], events
    assert _stamps(out, finished) == finished  # not redone
    page = (out / "report.html").read_text()
    for needle in ("Quality per language", "student-int8", "Export parity", "data:image/png;base64", "zh"):
        assert needle in page
    zs = res["stages"]["eval"]["zero_shot"]
    assert set(zs) == {"teacher", "student", "student-pruned", "student-int8"}
    assert set(zs["student"]) == {"en", "de", "zh"}
    # The student is evaluated once, by the eval stage (not also inside distill), and the quantize candidates are
    # timed for the recipe's seconds.
    assert json.loads((out / "distill" / "report.json").read_text())["eval"] is None
    assert "latency" not in json.loads((out / "prune" / "report.json").read_text())  # prune.latency: false
    assert json.loads((out / "quantize" / "report.json").read_text())["config"]["timing_seconds"] == 1.0
    bench = json.loads((out / "bench" / "report.json").read_text())
    assert {r["model"] for r in bench["results"]} >= {"teacher", "student-pruned", "student-int8"}
    top = json.loads((out / "report.json").read_text())  # stage timings for scripts (bench/make_run.py)
    assert set(top["stages"]) == set(res["stages"])
    assert [s for s, v in top["stages"].items() if v["ran_this_time"]] == ["bench", "report"]
    assert top["stages"]["distill"]["seconds"] == res["stages"]["distill"]["seconds"] > 0
    assert top["total_seconds"] == pytest.approx(sum(v["seconds"] for v in top["stages"].values()), abs=0.2)
    assert top["machine"]["cores"] >= 1 and top["machine"]["gemm_fp32_gflops"] > 0

    # A changed stage config re-runs that stage and the ones after it, nothing before.
    recipe_file.write_text(TINY.replace("batch: [1]", "batch: [2]"))
    events.clear()
    run_pipeline(load_pipeline(recipe_file), out, on_stage=lambda s, w: events.append((s, w)))
    assert [s for s, w in events if w == "run"] == ["bench", "report"]


def test_reference_stage_is_keyed_on_what_the_reference_is_built_from(monkeypatch):
    """A finished run's reference stage is not skipped once the cache it used would be rebuilt (another generator or
    training config): the stage key carries both, for each built-in reference the recipe names."""
    from dataclasses import replace

    import compact.reference.build as build
    from compact.pipeline.run import _hash, reference_stage_config

    r = PipelineRecipe()
    key = reference_stage_config(r)
    assert set(key["builds"]) == {"small"} and key["builds"]["small"]["train"]["max_steps"] == 300
    mixed = PipelineRecipe(teacher="hf:/models/clip", data="reference-quick")
    assert set(reference_stage_config(mixed)["builds"]) == {"quick"}
    assert reference_stage_config(PipelineRecipe(teacher="hf:/m", data="/data/folder"))["builds"] == {}
    monkeypatch.setitem(build.TRAIN_SIZES, "small", replace(build.TRAIN_SIZES["small"], max_steps=301))
    assert _hash(reference_stage_config(r)) != _hash(key)
    monkeypatch.undo()
    assert _hash(reference_stage_config(r)) == _hash(key)
    monkeypatch.setattr(build, "GENERATOR_VERSION", "another")
    assert _hash(reference_stage_config(r)) != _hash(key)


def test_default_recipe_is_offline_and_reference_based():
    r = PipelineRecipe()
    assert r.teacher.startswith("reference") and r.data.startswith("reference")
    assert len(r.langs) == 8 and r.quantize.auto and "onnx" in r.export.targets


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_validate(path):
    from compact.distill.recipe import load_recipe

    if path.stem.startswith("distill-"):
        distill = load_recipe(path)
        assert distill.student is not None and distill.stages
        return
    r = load_pipeline(path)
    assert r.name and r.langs
    assert load_recipe(r.distill.recipe).stages


def test_shipped_recipes_exist():
    names = {p.stem for p in (ROOT / "recipes").glob("*.yaml")}
    assert {"openai-clip-vit-b32-multilingual", "xlm-roberta-vit-b32-smaller", "mobileclip-s0-from-vit-b16"} <= names


def test_bad_recipe_names_the_key_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprune:\n  keep: 0.5\n  keeep: 0.4\n")
    with pytest.raises(RecipeError, match=r"unknown key .*keeep at line 4"):
        load_pipeline(bad)
    bad.write_text("bench: {batch: [0]}\n")
    with pytest.raises(RecipeError, match="positive"):
        load_pipeline(bad)
    bad.write_text("quantize: {timing_seconds: 0}\n")
    with pytest.raises(RecipeError, match="timing_seconds must be positive"):
        load_pipeline(bad)


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(CompactError, match="--overwrite"):
        run_pipeline(PipelineRecipe(), tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
    r = CliRunner().invoke(cli, ["run", "-o", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--overwrite" in r.output and "Traceback" not in r.output
