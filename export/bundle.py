"""`compact export TARGET MODEL -o OUT`: one bundle per run, parity-checked, written atomically.

    OUT/
      manifest.json          every file: target, tower, precision, inputs/outputs, parity; preprocessing,
                             tokenizer, embed dim, normalisation, source model hash
      image.* / text.*       the target's artifacts
      tokenizer_config.json  (+ tokenizer.json)  the tokenizer, as compact's model folders hold it
      compact_tokenizer.py   a standard-library reader of those files, for apps without `tokenizers`
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from compact.errors import CompactError
from compact.utils.io import atomic_dir, atomic_write_text, check_output_dir, locked
from export.parity import (ParityResult, Samples, check_image, check_text, data_samples, reference_embeddings,
                           reference_samples, text_inputs)
from export.targets import TARGETS, Artifact, get_target, list_targets
from export.towers import Prepared, model_hash, prepare, towers

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "compact-export"
VERSION = 1
STANDALONE = Path(__file__).parent / "standalone"
STANDALONE_TOKENIZER = STANDALONE / "compact_tokenizer.py"
STANDALONE_RUNNER = STANDALONE / "compact_bundle.py"  # ONNX bundles only

Progress = Callable[[str, int, int], None]


class ParityError(CompactError):
    """The exported artifact does not reproduce the torch model within the target's tolerance."""


@dataclass
class ExportConfig:
    opset: Optional[int] = None  # None: the target's default (onnx 20, tensorrt 18)
    normalize: bool = True  # L2-normalise the embeddings inside the graphs
    optimize: bool = False  # onnx: also write ORT-optimised graphs (attention / LayerNorm / GELU fusion)
    # onnx, per tower: "plain" or "optimized" writes only that graph (a tower the optimizer cannot fuse keeps its
    # plain graph); towers not named follow `optimize`. `compact quantize` keeps one graph per tower, so it asks
    # for that one only instead of exporting both (half of its export time).
    tower_graphs: dict = field(default_factory=dict)
    fixed_batch: Optional[int] = None  # freeze the batch axis (Core ML Neural Engine, TensorRT static engines)
    fixed_seq: Optional[int] = None  # freeze the text length
    max_batch: int = 64  # upper bound of the dynamic batch axis (and TensorRT's profile max)
    precision: str = "fp32"  # fp32 | fp16 where the target supports it
    data: Optional[str] = None  # parity samples from this data source; default: the reference generator
    min_cosine: Optional[float] = None  # override the target's parity tolerance
    overwrite: bool = False
    target_options: dict = field(default_factory=dict)  # per-target knobs (coreml shape mode, trt profiles, ...)
    name: Optional[str] = None  # a display name for reports (bench tables, Pareto charts)
    # onnx / openvino: also time a fixed-shape export (batch 1, 16 tokens) against the flexible one on the
    # target's runtime and record both in the manifest (the coremltools #2022 question, answered here).
    compare_shapes: bool = False
    skip_transforms: tuple[str, ...] = ()  # export.deploy transforms not to run (default: every one that applies)

    def __post_init__(self) -> None:
        if self.opset is not None:
            check_opset(self.opset)
        if self.max_batch <= 0 or (self.fixed_batch is not None and self.fixed_batch <= 0):
            raise CompactError("batch sizes must be positive")
        if self.fixed_seq is not None and self.fixed_seq < 2:
            raise CompactError("--fixed-seq must be at least 2 (BOS/EOS)")
        from export.deploy import get_transform

        for tower, graphs in self.tower_graphs.items():
            if tower not in ("image", "text") or graphs not in ("plain", "optimized"):
                raise CompactError(f"tower_graphs takes image/text -> plain/optimized, got {tower!r}: {graphs!r}")
        for name in self.skip_transforms:
            get_transform(name)  # a one-line error naming the known transforms
        if self.precision not in ("fp32", "fp16"):
            raise CompactError(f"precision {self.precision!r} is not one of fp32, fp16; int8 comes from "
                               "`compact quantize`")


MIN_OPSET = 18  # torch's dynamo exporter writes opset 18 and newer; below that it silently writes 18


def check_opset(opset: int) -> None:
    """A one-line error for an opset the exporter cannot write (rather than a graph that says otherwise)."""
    import onnx

    top = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= top:
        raise CompactError(f"--opset {opset} is not supported: use {MIN_OPSET}..{top} (default: 20 for onnx, "
                           "18 for tensorrt)")


def load_for_export(spec: str):
    from compact.models.teachers import load_teacher

    return load_teacher(str(spec))


@locked("out")
def export_model(model, target_name: str, out: Path, cfg: ExportConfig = ExportConfig(),
                 progress: Optional[Progress] = None, samples: Optional[Samples] = None,
                 source: Optional[str] = None) -> dict:
    """Export `model` (a spec string or a DualEncoder) for one target into `out`; returns the manifest."""
    target = get_target(target_name)
    target.require()
    out = Path(out)
    check_output_dir(out, cfg.overwrite)
    source = source or (str(model) if isinstance(model, (str, Path)) else type(model).__name__)
    original = load_for_export(str(model)) if isinstance(model, (str, Path)) else model.eval()
    _refuse_torch_quantized(original)
    prep = prepare(original, tuple(cfg.skip_transforms))
    samples = samples or (data_samples(cfg.data) if cfg.data else reference_samples())
    min_cos = cfg.min_cosine if cfg.min_cosine is not None else target.min_cosine
    tws = towers(prep, cfg.normalize, cfg.fixed_batch, cfg.fixed_seq, cfg.max_batch)
    texts = text_inputs(original, samples.texts, prep.context_length, prep.variable_length_text, cfg.fixed_seq)
    pixels, img_ref, txt_refs = reference_embeddings(original, samples, texts, cfg.normalize)
    en_ref = next((r for t, r in zip(texts, txt_refs) if t.length == texts[0].length), None)

    files, failures = [], []
    total = len(tws) + 1
    with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        for step, tower in enumerate(tws):
            if progress:
                progress(f"export {target.name}", step, total)
            t0 = time.perf_counter()
            with warnings.catch_warnings():  # exporters warn about their own internals (deprecations, tracing)
                warnings.simplefilter("ignore")
                arts = target.export(tower, tmp, cfg)
            seconds = time.perf_counter() - t0
            for art in arts:
                entry = _file_entry(art, target.name, tower, prep, tmp, seconds)
                run = target.runner(art, tmp, cfg)
                if run is None:
                    entry["parity"] = {"verified": False, "reason": target.unverified_reason()}
                else:
                    if cfg.fixed_batch or (tower.name == "text" and cfg.fixed_seq):
                        res = _fixed_shape_parity(run, tower, cfg, pixels, img_ref, texts, txt_refs, min_cos)
                    elif tower.name == "image":
                        res = check_image(run, pixels, img_ref, min_cos, en_ref)
                    else:
                        res = check_text(run, texts, txt_refs, min_cos, img_ref)
                    entry["parity"] = {"verified": True, "runtime": art.details.get("parity_runtime", target.name),
                                       **res.to_dict()}
                    if not res.passed:
                        failures.append(f"{art.path}: {res.summary()}")
                files.append(entry)
        if failures:
            raise ParityError(f"{target.name} export failed parity, nothing written: {'; '.join(failures)}")
        extra = target.finalize(tmp, [Artifact(f["path"], f["tower"], f["precision"]) for f in files], cfg)
        if cfg.compare_shapes and target.name in SHAPE_STUDY_TARGETS and not (cfg.fixed_batch or cfg.fixed_seq):
            extra["shape_study"] = _shape_study(target, prep, cfg, tmp, files)
        _write_tokenizer(prep, tmp)
        if target.name in ("onnx", "tensorrt"):
            shutil.copy2(STANDALONE_RUNNER, tmp / STANDALONE_RUNNER.name)
        text = json.dumps(_manifest(target.name, source, prep, files, cfg, extra), indent=2, ensure_ascii=False)
        (tmp / MANIFEST).write_text(text)
        manifest = json.loads(text)  # what readers of the file get (lists, not tuples)
        if progress:
            progress(f"export {target.name}", total, total)
    return manifest


SHAPE_STUDY_TARGETS = ("onnx", "openvino")
SHAPE_STUDY_SEQ = 16


def _shape_study(target, prep: Prepared, cfg: ExportConfig, bundle: Path, files: list[dict]) -> dict:
    """Fixed (batch 1, SHAPE_STUDY_SEQ tokens) against flexible shapes, timed in alternating blocks on the target's runtime
    with the same inputs. Both graphs come from the same model; only the shape contract differs."""
    import tempfile

    import numpy as np

    from bench.harness import TimingConfig, compare_callables

    seq = min(SHAPE_STUDY_SEQ, prep.context_length)
    fixed_cfg = ExportConfig(**{**asdict(cfg), "fixed_batch": 1, "fixed_seq": seq, "optimize": False,
                                "compare_shapes": False})
    out: dict = {"runtime": files[0].get("parity", {}).get("runtime", target.name), "batch": 1, "seq": seq}
    with tempfile.TemporaryDirectory(prefix="compact-shapes-") as tmpdir:
        tmp = Path(tmpdir)
        for tower in towers(prep, cfg.normalize, 1, seq, cfg.max_batch):
            flexible = next(f for f in files if f["tower"] == tower.name and not f.get("optimized"))
            run_flex = target.runner(Artifact(flexible["path"], tower.name, flexible["precision"], flexible), bundle, cfg)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fixed = target.export(tower, tmp, fixed_cfg)[0]
            run_fixed = target.runner(fixed, tmp, fixed_cfg)
            feeds = {n: x.numpy() for n, x in zip(tower.input_names, tower.example)}
            if tower.name == "text":
                feeds["attention_mask"] = np.ones_like(feeds["input_ids"])
            r = compare_callables(lambda: run_flex(feeds), lambda: run_fixed(feeds),
                                  TimingConfig(warmup=3, min_iters=20, max_seconds=3.0))
            out[tower.name] = {"flexible_ms": round(r.a.median_s * 1e3, 4), "fixed_ms": round(r.b.median_s * 1e3, 4),
                               "fixed_over_flexible": round(r.ratio_b_over_a, 4),
                               "ci95": [round(r.ratio_ci_low, 4), round(r.ratio_ci_high, 4)], "iters": r.a.n}
    return out


def _refuse_torch_quantized(model) -> None:
    """torch-runtime quantized models (torchao tensor subclasses, fp16/bf16 casts) are for torch; exporters
    need the fp32 graph and quantize it their own way."""
    odd = {type(p.data).__name__ for p in model.parameters()} - {"Tensor", "Parameter"}
    dtypes = {p.dtype for p in model.parameters()} - {torch.float32}
    if odd or dtypes:
        raise CompactError(f"this model is quantized for the torch runtime ({', '.join(sorted(odd) or map(str, dtypes))} "
                           "weights); export the fp32 model and quantize for the target instead: `compact quantize "
                           "--runtime onnxruntime|openvino`, or `compact export coreml --coreml-weights int8`")


def _fixed_shape_parity(run, tower, cfg, pixels, img_ref, texts, txt_refs, min_cos) -> ParityResult:
    """Parity for graphs with frozen axes: feed exactly the frozen shapes (padding the batch with repeats)."""
    import numpy as np

    bs = cfg.fixed_batch

    def batched(feeds: dict, n: int) -> np.ndarray:
        if not bs:
            return run(feeds)
        outs = []
        for s in range(0, n, bs):
            chunk = {k: v[s:s + bs] for k, v in feeds.items()}
            k = len(next(iter(chunk.values())))
            if k < bs:
                chunk = {key: np.concatenate([v, np.repeat(v[-1:], bs - k, 0)]) for key, v in chunk.items()}
            outs.append(run(chunk)[:k])
        return np.concatenate(outs)

    if tower.name == "image":
        return check_image(lambda f: batched(f, len(f["pixel_values"])), pixels, img_ref, min_cos)
    return check_text(lambda f: batched(f, len(f["input_ids"])), texts, txt_refs, min_cos)


def _file_entry(art: Artifact, target: str, tower, prep: Prepared, bundle: Path, seconds: float) -> dict:
    size = sum(_size(bundle / p) for p in [art.path, *art.companions])
    return {"path": art.path, **({"companions": art.companions} if art.companions else {}),
            "target": target, "tower": tower.name, "precision": art.precision,
            "inputs": tower.input_specs(), "outputs": [tower.output_spec(prep.model.embed_dim)],
            "size_bytes": size, "export_seconds": round(seconds, 2), **art.details}


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_tokenizer(prep: Prepared, bundle: Path) -> None:
    tok = getattr(prep.model, "tokenizer", None)
    if tok is not None and hasattr(tok, "save"):
        tok.save(bundle)
    shutil.copy2(STANDALONE_TOKENIZER, bundle / STANDALONE_TOKENIZER.name)


def _manifest(target: str, source: str, prep: Prepared, files: list[dict], cfg: ExportConfig, extra: dict) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("compact-clip")
    except PackageNotFoundError:  # running from a source tree without an install
        ours = "source"
    tok = getattr(prep.model, "tokenizer", None)
    tok_cfg = tok.config() if tok is not None and hasattr(tok, "config") else None
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": cfg.name,
        "target": target,
        "created_by": f"compact {ours}",
        "source": {"model": source, "sha256": model_hash(prep.source if prep.source is not None else prep.model),
                   "class": type(prep.original).__name__, "converted_to_compact": prep.converted},
        # Structural rewrites before export (export.deploy); parity above is against the model before them.
        "deploy_transforms": prep.deploy_transforms,
        "embed_dim": int(prep.model.embed_dim),
        "normalized": cfg.normalize,
        "logit_scale": float(prep.original.logit_scale),
        "languages": list(prep.original.languages) if prep.original.languages else None,
        "preprocess": prep.model.preprocess_cfg.to_dict(),
        "tokenizer": None if tok_cfg is None else {
            **tok_cfg, "config_file": "tokenizer_config.json", "max_length": prep.context_length,
            "pad_to": "longest" if prep.variable_length_text and not cfg.fixed_seq else "max_length",
            "fixed_length": cfg.fixed_seq, "reader": STANDALONE_TOKENIZER.name},
        # Values JSON cannot hold (arrays in target_options) are named, not written.
        "export_config": json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k != "overwrite"},
                                               default=lambda o: f"<{type(o).__name__}>")),
        "files": files,
        **extra,
    }


def read_manifest(bundle: Path) -> dict:
    path = Path(bundle) / MANIFEST
    if not Path(bundle).is_dir():
        raise CompactError(f"export folder {bundle} does not exist; write one with `compact export TARGET MODEL -o DIR`")
    if not path.is_file():
        raise CompactError(f"{bundle} has no {MANIFEST}, so it is not a compact export bundle; "
                           "write one with `compact export TARGET MODEL -o DIR`")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CompactError(f"{path} is {path.stat().st_size:,} bytes, not a compact manifest (at most "
                           f"{MAX_MANIFEST_BYTES:,}); re-export the bundle")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CompactError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); re-export the bundle") from None
    except UnicodeDecodeError:
        raise CompactError(f"{path} is not UTF-8 text; re-export the bundle") from None
    except RecursionError:
        raise CompactError(f"{path} is nested too deeply to be a compact manifest; re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CompactError(f"{path} is not a compact export manifest (format {got!r})")
    check_manifest(manifest, Path(bundle))
    return manifest


MAX_MANIFEST_BYTES = 16 << 20


def check_manifest(manifest: dict, bundle: Path) -> None:
    """The fields compact reads, with the types it expects; every file path stays inside the bundle (a manifest
    from a stranger must not make compact open ../../anything)."""
    where = bundle / MANIFEST
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise CompactError(f"{where}: 'files' must be a non-empty list; re-export the bundle")
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or f.get("tower") not in ("image", "text"):
            raise CompactError(f"{where}: files[{i}] needs a string 'path' and a 'tower' of image or text")
        inside_folder(bundle, f["path"], f"{where}: files[{i}].path")
    dim = manifest.get("embed_dim")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= 1 << 16):
        raise CompactError(f"{where}: embed_dim must be an integer in 1..65536, got {dim!r}")
    for key in ("preprocess", "tokenizer", "source"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise CompactError(f"{where}: {key!r} must be an object, got {type(manifest[key]).__name__}")


def inside_folder(folder: Path, rel: str, what: str) -> Path:
    """`folder/rel`, refusing absolute paths, '..' and symlinks that lead outside `folder`."""
    p = Path(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\x00" in rel:
        raise CompactError(f"{what} {rel!r} points outside its folder; refusing it")
    full = folder / p
    try:
        full.resolve().relative_to(folder.resolve())
    except ValueError:
        raise CompactError(f"{what} {rel!r} resolves outside its folder (a symlink?); refusing it") from None
    return full


@locked("out")
def export_all(model, out: Path, cfg: ExportConfig = ExportConfig(), progress: Optional[Progress] = None,
               targets: Optional[list[str]] = None) -> dict:
    """Every target usable here into OUT/<target>/; the ones skipped are listed with their reason."""
    out = Path(out)
    check_output_dir(out, cfg.overwrite)
    names = targets or list_targets()
    original = load_for_export(str(model)) if isinstance(model, (str, Path)) else model
    samples = data_samples(cfg.data) if cfg.data else reference_samples()
    written, skipped = {}, {}
    with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        for name in names:
            target = TARGETS[name] if name in TARGETS else get_target(name)
            why = target.missing()
            if why:
                skipped[name] = why
                continue
            sub = asdict(cfg) | {"overwrite": False}
            m = export_model(original, name, tmp / name, ExportConfig(**sub), progress, samples,
                             source=str(model) if isinstance(model, (str, Path)) else None)
            written[name] = [f["path"] for f in m["files"]]
        summary = {"written": written, "skipped": skipped}
        atomic_write_text(tmp / "export-all.json", json.dumps(summary, indent=2))
    return summary
