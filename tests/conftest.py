import os

# No test may touch the network: every hub lookup must be answered from local files or fail fast.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# `make test` runs two pytest-xdist workers (`pytest -n 2`): the machine's cores are split between them, so two
# workers on CI's 2 cores get one torch thread each instead of fighting over two each.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
torch.set_num_threads(max(1, CORES // WORKERS))
if WORKERS > 1:  # and the CLI runs the tests start as child processes (kill/resume, torchrun) get as many
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, CORES // WORKERS)))


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    """A private compact cache for the whole test session (never the user's ~/.cache)."""
    root = tmp_path_factory.mktemp("compact-cache")
    os.environ["COMPACT_CACHE"] = str(root)
    return root


def _shared_reference_root(basetemp):
    return basetemp / "shared-reference"


def _wants_quick_reference(config) -> bool:
    """Whether the test files this run names (or all of tests/) use the quick_reference fixture."""
    from pathlib import Path

    here = Path(__file__).parent
    paths = [Path(a.split("::")[0]) for a in config.args] or [here]
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("test_*.py")) if p.is_dir() else [])]
    return any("quick_reference" in f.read_text(encoding="utf-8") for f in files)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """Under xdist, the controller builds the quick reference before it starts the workers, with every core and
    nothing else running (xdist starts its workers in its own, trylast, sessionstart). Built lazily by one worker
    instead, it took 300 s of that worker in the suite against 65 s alone: the other worker's ONNX Runtime,
    OpenVINO and browser tests share the two cores with it. The workers then only link the finished build."""
    config = session.config
    if getattr(config, "workerinput", None) is not None or not getattr(config.option, "numprocesses", None):
        return
    if config.option.collectonly or not _wants_quick_reference(config):
        return
    from compact.reference.build import ReferenceBuildConfig, build_reference

    base = config._tmp_path_factory.getbasetemp()
    os.environ["COMPACT_CACHE"] = str(base / "controller-cache")  # never the user's cache, as in the workers
    build_reference(ReferenceBuildConfig(size="quick", cache=_shared_reference_root(base)))


@pytest.fixture(scope="session")
def quick_reference(cache_root, tmp_path_factory):
    """The --quick reference build (data + teacher), built once per session: under xdist once for all workers, in a
    folder they share (build_reference makes the second worker wait for the first), linked into each one's cache."""
    from compact.reference.build import ReferenceBuildConfig, build_reference, reference_paths

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build_reference(ReferenceBuildConfig(size="quick"))
    shared = _shared_reference_root(tmp_path_factory.getbasetemp().parent)  # the controller built it (above)
    summary = build_reference(ReferenceBuildConfig(size="quick", cache=shared))
    mine = reference_paths("quick").root
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.symlink_to(reference_paths("quick", root=shared).root, target_is_directory=True)
    return summary


@pytest.fixture(autouse=True)
def _default_teacher_options():
    """`compact --allow-pickle ...` sets process-wide loading options; CLI tests must not leak them."""
    from compact.models.teachers import TeacherOptions, set_default_options

    yield
    set_default_options(TeacherOptions())


# ---- identical exports, exported once per session ------------------------------------------------------------
# torch's dynamo ONNX exporter takes 5-12 s per tiny tower on CI's cores, and the suite exports the same seeded tiny
# models dozens of times (the same tiny_compact() tower 20+ times: 600 of the 890 s the in-process tests spent in
# it). Its output is byte-identical for identical input (checked), so a repeat is copied from the first export;
# so are whole OpenVINO and ExecuTorch tower exports (with the export config and the target's code).
# The key is everything the graph depends on that a test can change: the class and code of every submodule
# (including methods patched onto instances, as fused attention does) and the module-level functions of the
# modules that define them, every parameter and buffer, train/eval modes, the example inputs, dynamic axes, opset
# and translation table. Only successful exports are kept; a patched torch.onnx.export bypasses the cache, and so
# do big models (hashing costs more than it saves: they are exported once). COMPACT_TEST_EXPORT_CACHE=0 turns it
# off. Subprocess tests (CLI kill/resume) always export for real.
@pytest.fixture(scope="session", autouse=True)
def _export_cache(tmp_path_factory):
    if os.environ.get("COMPACT_TEST_EXPORT_CACHE", "1") == "0":
        yield None
        return
    import shutil

    import export.targets.onnx as onnx_target
    from helpers import export_cache_key

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "export-cache"  # the workers share it
    root.mkdir(exist_ok=True)
    real, real_torch_export, stats = onnx_target._dynamo_export, torch.onnx.export, {"hits": 0, "misses": 0}

    def cached(tower, path, opset, table=None):
        try:
            key = None if torch.onnx.export is not real_torch_export else export_cache_key(tower, opset, table)
        except Exception:  # a tensor type that cannot be viewed as bytes (quantized, sparse): export it
            key = None
        hit = root / f"{key}.onnx"
        if key and hit.is_file():
            stats["hits"] += 1
            shutil.copyfile(hit, path)
            return
        stats["misses"] += 1
        real(tower, path, opset, table)
        if key:
            tmp = root / f".{key}.{os.getpid()}.tmp"
            shutil.copyfile(path, tmp)
            os.replace(tmp, hit)

    onnx_target._dynamo_export = cached
    wrapped = [(cls, cls.export) for cls in _cached_targets()]
    for cls, real_export in wrapped:
        cls.export = _cached_target_export(real_export, root, stats)
    yield stats
    onnx_target._dynamo_export = real
    for cls, real_export in wrapped:
        cls.export = real_export
    import json  # hits and misses per worker, beside the cache, for whoever tunes it

    (root / f"stats-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.json").write_text(json.dumps(stats))


def _cached_targets():
    """The targets whose whole per-tower export is cached (OpenVINO; ExecuTorch: its lowering of one tiny model
    takes a minute here). ONNX and TensorRT go through the dynamo cache above and keep their own steps; Core ML
    keeps the converted program in the process for its parity check, which a copied package would not have."""
    from export.targets import TARGETS

    return [type(t) for name, t in TARGETS.items() if name not in ("onnx", "tensorrt", "coreml")]


def _cached_target_export(real_export, root, stats):
    """`ExportTarget.export(tower, out, cfg)` served from the cache: the files this call wrote into `out` and the
    artifacts it returned. The key adds the target, the export config and the code of the target's module."""
    import dataclasses
    import json
    import shutil

    from export.targets import Artifact
    from helpers import export_cache_key

    def export(self, tower, out, cfg):
        cls = type(self)
        try:
            key = export_cache_key(tower, 0, extra=f"{cls.name}:{cfg!r}", extra_modules=(cls.__module__,))
        except Exception:  # a tensor type that cannot be viewed as bytes: export it
            key = None
        hit = root / f"{cls.name}-{key}"
        if key and (hit / "artifacts.json").is_file():
            stats["hits"] += 1
            for f in sorted((hit / "files").iterdir()):
                (shutil.copytree if f.is_dir() else shutil.copyfile)(f, out / f.name)
            return [Artifact(**a) for a in json.loads((hit / "artifacts.json").read_text())]
        stats["misses"] += 1
        before = set(out.iterdir())
        artifacts = real_export(self, tower, out, cfg)
        if key:
            tmp = root / f".{cls.name}-{key}.{os.getpid()}.tmp"
            (tmp / "files").mkdir(parents=True)
            for f in sorted(set(out.iterdir()) - before):
                (shutil.copytree if f.is_dir() else shutil.copyfile)(f, tmp / "files" / f.name)
            try:
                (tmp / "artifacts.json").write_text(json.dumps([dataclasses.asdict(a) for a in artifacts]))
                os.replace(tmp, hit)
            except (TypeError, OSError):  # details that JSON cannot hold, or the other worker stored it first
                shutil.rmtree(tmp, ignore_errors=True)
        return artifacts

    return export
