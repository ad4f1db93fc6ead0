"""`compact reference build`: generate the benchmark, train the teacher, evaluate it; all cached and resumable."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from compact.data.reference.dataset import DATA_SIZES, GENERATOR_VERSION, build_reference_data, is_reference_data, \
    reference_eval_data
from compact.eval.runner import EvalConfig, evaluate
from compact.reference.teacher import TeacherTrainConfig, train_teacher
from compact.utils.cache import cache_dir
from compact.utils.io import output_lock, read_json, write_json

log = logging.getLogger(__name__)

TRAIN_SIZES = {
    "full": TeacherTrainConfig(),
    # Tests only: batch 128 reads English as well as 256 did here (test split: en zero-shot 16.3 vs 16.2%, t2i R@10
    # 25% against <= 2.3% in the other languages) in half the time (54 s against 129 s of training on an AVX2-only
    # 2-core host), and the suite builds it before any test can start.
    "quick": TeacherTrainConfig(max_steps=60, batch_size=128, val_every=30, target_val_zero_shot=1.01),
    "small": TeacherTrainConfig(max_steps=300, batch_size=128, val_every=100, target_val_zero_shot=1.01),
}


@dataclass(frozen=True)
class ReferencePaths:
    root: Path
    data: Path
    teacher: Path


def reference_paths(size: str = "full", seed: int = 0, root: Optional[Path] = None) -> ReferencePaths:
    base = Path(root) if root else cache_dir() / "reference"
    r = base / f"{size}-seed{seed}"
    return ReferencePaths(root=r, data=r / "data", teacher=r / "teacher")


@dataclass(frozen=True)
class ReferenceBuildConfig:
    size: str = "full"  # "full" (the benchmark), "small" (compact run's default) or "quick" (tests)
    seed: int = 0
    cache: Optional[Path] = None  # default: compact's cache dir
    overwrite: bool = False  # rebuild even if cached


# progress(stage, done, total, info)
BuildProgress = Callable[[str, int, int, dict], None]


def build_reference(cfg: ReferenceBuildConfig, progress: Optional[BuildProgress] = None) -> dict:
    """Build (or reuse) the data and the teacher, evaluate the teacher on the test split, return a summary.
    Two processes sharing a cache (two `compact run`s, parallel test workers) take turns: the second waits for the
    first and then reuses what it built."""
    paths = reference_paths(cfg.size, cfg.seed, cfg.cache)
    with output_lock(paths.root, wait=True):
        return _build_reference(cfg, paths, progress)


def _build_reference(cfg: ReferenceBuildConfig, paths: ReferencePaths, progress: Optional[BuildProgress]) -> dict:
    data_cfg, train_cfg = _size_configs(cfg.size, cfg.seed)
    summary: dict = {"size": cfg.size, "seed": cfg.seed, "data": str(paths.data), "teacher": str(paths.teacher)}

    t0 = time.perf_counter()
    stale = _stale_data(paths.data, data_cfg)
    if stale:
        log.info("rebuilding the reference data in %s: %s", paths.data, stale)
    data_rebuilt = cfg.overwrite or bool(stale)
    if data_rebuilt:
        build_reference_data(data_cfg, paths.data, overwrite=True,
                             progress=(lambda s, d, t: progress(s, d, t, {})) if progress else None)
        summary["data_seconds"] = round(time.perf_counter() - t0, 1)
    else:
        summary["data_seconds"] = 0.0
        log.info("reusing reference data in %s", paths.data)

    t1 = time.perf_counter()
    stale = "its data was rebuilt" if data_rebuilt else _stale_teacher(paths.teacher, train_cfg)
    if stale:
        log.info("training the reference teacher in %s: %s", paths.teacher, stale)
    trained = cfg.overwrite or bool(stale)
    if trained:
        train_teacher(paths.data, paths.teacher, train_cfg, overwrite=True,
                      progress=(lambda s, t, info: progress("train teacher", s, t, info)) if progress else None)
        summary["train_seconds"] = round(time.perf_counter() - t1, 1)
    else:
        summary["train_seconds"] = 0.0
        log.info("reusing reference teacher in %s", paths.teacher)

    report_path = paths.teacher / "eval_test.json"
    if trained or not report_path.is_file():
        report = evaluate_reference(paths, "test", progress=progress)
        write_json(report_path, report)
    summary["eval"] = read_json(report_path, "re-run `compact reference build --overwrite`")
    summary["training"] = read_json(paths.teacher / "training.json", "re-run `compact reference build --overwrite`")
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def _size_configs(size: str, seed: int) -> tuple:
    """The data and teacher-training configs a reference build of `size` and `seed` is made with."""
    return replace(DATA_SIZES[size], seed=seed), replace(TRAIN_SIZES[size], seed=seed)


def build_identity(size: str, seed: int = 0) -> dict:
    """What a reference build of `size` is made from (generator version, data and training configs): a cached build
    is reused only if these match, and `compact run` keys its reference stage on them."""
    data_cfg, train_cfg = _size_configs(size, seed)
    return {"generator": GENERATOR_VERSION, "data": _as_json(data_cfg), "train": _as_json(train_cfg)}


def _as_json(cfg) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


# A cached build is reused only if it was made by this config (and generator): the cache is keyed by size and seed,
# so a changed size definition or a new compact version must not silently keep an older benchmark or teacher.
def _stale_data(path: Path, cfg) -> Optional[str]:
    """Why the data at `path` cannot be reused for `cfg` (None: it can)."""
    if not is_reference_data(path):
        return "none built yet"
    meta = read_json(path / "meta.json", "rebuild it with `compact reference build --overwrite`")
    if meta.get("generator") != GENERATOR_VERSION:
        return f"made by generator {meta.get('generator')}, this is {GENERATOR_VERSION}"
    if meta.get("config") != _as_json(cfg):
        return "made with another config"
    return None


def _stale_teacher(path: Path, cfg: TeacherTrainConfig) -> Optional[str]:
    """Why the teacher at `path` cannot be reused for `cfg` (None: it can)."""
    if not (path / "open_clip_model.safetensors").is_file() or not (path / "training.json").is_file():
        return "none trained yet"
    if read_json(path / "training.json", "rebuild it with `compact reference build --overwrite`").get("config") \
            != _as_json(cfg):
        return "trained with another config"
    return None


def evaluate_reference(paths: ReferencePaths, split: str = "test", langs=None,
                       progress: Optional[BuildProgress] = None) -> dict:
    from compact.models.teachers.openclip import load_open_clip
    from compact.models.teachers import TeacherOptions

    teacher = load_open_clip(f"local-dir:{paths.teacher}", None, TeacherOptions())
    data = reference_eval_data(paths.data, split)
    report = evaluate(teacher, data, EvalConfig(langs=tuple(langs) if langs else None),
                      progress=(lambda s, d, t: progress(f"eval {s}", d, t, {})) if progress else None)
    report["model"] = "reference teacher"
    return report
