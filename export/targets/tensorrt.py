"""TensorRT: TRT-ready ONNX per tower, optimization profiles, and a `build_engine.sh` of trtexec lines.

TensorRT engines are tied to the GPU model and TensorRT version that build them, and TensorRT does not install
from PyPI alone, so the portable artifact is the ONNX TensorRT will parse:

    <tower>.trt.onnx   constants folded (onnx-graphsurgeon, when installed), dead nodes removed, topologically
                       sorted; static shapes when --fixed-batch/--fixed-seq are set, else dynamic axes with the
                       optimization profiles (min/opt/max per input) recorded in the manifest and in the ONNX's
                       metadata (`compact.trt_profiles`), so `finalize` and other tools read them from the file
    build_engine.sh    trtexec per tower and precision (fp16; int8, strongly typed, when the ONNX carries QDQ), with the
                       profiles' --minShapes/--optShapes/--maxShapes and a shared timing cache
    <tower>.<p>.plan   only where `tensorrt` imports and a CUDA device exists: engines built here, parity-checked
                       on TensorRT itself

The TRT-ready ONNX is always checked (`onnx.checker` full check, `polygraphy inspect model` when installed, a
deny-list of ops TensorRT 10's parser rejects) and its numerics are compared with torch on ONNX Runtime.
The deny-list and the profile logic are written here by hand: without TensorRT there is no parser to ask, and
polygraphy's `inspect capability` needs TensorRT too.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import stat
import subprocess
import sys
from pathlib import Path
from typing import Optional

from compact.errors import CompactError
from export.targets import Artifact, ExportTarget, Runner, register_target
from export.targets.onnx import export_onnx, op_counts, ort_session, session_runner
from export.towers import Tower
from export.trt_engine import PRECISIONS, Profiles, build_engine, engine_support, trtexec_args

log = logging.getLogger(__name__)

PROFILES_KEY = "compact.trt_profiles"
BUILD_SCRIPT = "build_engine.sh"
TIMING_CACHE = "timing.cache"
DEFAULT_OPT_BATCH = 8
DEFAULT_OPT_SEQ = 32
# TensorRT 10.0's parser reads opsets 9..20; later 10.x releases read newer ones.
# The default stays 18 (GELU as Erf/Div/Mul/Add): whether every TensorRT 10.x parses opset 20's Gelu op was not
# verifiable here (no TensorRT); pass --opset 20 to try it.
TRT_DEFAULT_OPSET = 18
TRT10_MAX_OPSET = 20

ORT_PARITY = ("onnxruntime CPU on the TRT-ready ONNX (no TensorRT here: engine not built, engine parity "
              "unverified)")
ORT_PARITY_SWITCHED_OFF = ("onnxruntime CPU on the TRT-ready ONNX (engine build switched off: engine not built, "
                           "engine parity unverified)")
ORT_PARITY_WITH_ENGINE = "onnxruntime CPU on the TRT-ready ONNX (the engines' own parity is in their entries)"
NO_ENGINE_NOTE = ("No TensorRT on the export machine: the engines were not built and their parity is unverified; "
                  "run build_engine.sh where TensorRT is installed")
SWITCHED_OFF_NOTE = ("The engine build was switched off (trt_build_engine=False): the engines were not built and "
                     "their parity is unverified; run build_engine.sh")

# ONNX ops TensorRT 10's ONNX parser does not import (onnx-tensorrt docs/operators.md), grouped by why.
_SEQUENCE_OPS = ("SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
                 "SequenceLength", "SequenceMap", "ConcatFromSequence", "SplitToSequence")
_OPTIONAL_OPS = ("Optional", "OptionalGetElement", "OptionalHasElement")
_STRING_OPS = ("StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch", "TfIdfVectorizer")
_INTEGER_OPS = ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear")
_TRAINING_OPS = ("Gradient", "Momentum", "Adagrad", "Adam", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss")
_OTHER_OPS = ("Unique", "Det", "BitShift", "MaxRoiPool", "ImageDecoder")
DENIED_OPS: dict[str, str] = {
    **{op: "sequence-typed values are not supported" for op in _SEQUENCE_OPS},
    **{op: "optional-typed values are not supported" for op in _OPTIONAL_OPS},
    **{op: "string tensors are not supported" for op in _STRING_OPS},
    **{op: "ONNX Runtime's integer quantization format; TensorRT wants QDQ (QuantizeLinear/DequantizeLinear)"
       for op in _INTEGER_OPS},
    **{op: "training op" for op in _TRAINING_OPS},
    **{op: "not implemented by the parser" for op in _OTHER_OPS},
}
_ONNX_DOMAINS = ("", "ai.onnx")
_BAD_ELEM_TYPES = {8: "string", 14: "complex64", 15: "complex128"}  # onnx.TensorProto enum values


@register_target
class TensorRTTarget(ExportTarget):
    name = "tensorrt"
    description = ("TRT-ready ONNX (folded, profiles recorded) + build_engine.sh; engines built where TensorRT "
                   "and a GPU are present")
    packages = ("onnx", "onnxscript", "onnxruntime")  # the engine build is optional (tensorrt from NVIDIA's index)
    extra = "onnx"

    def export(self, tower: Tower, out: Path, cfg) -> list[Artifact]:
        path = out / f"{tower.name}.trt.onnx"
        raw = out / f".{tower.name}.raw.onnx"
        info = export_onnx(tower, raw, cfg.opset or TRT_DEFAULT_OPSET)
        try:
            profiles = tower_profiles(tower, cfg)
            facts = make_trt_ready(raw, path, tower, profiles)
        finally:
            raw.unlink(missing_ok=True)
        facts.update(validate(path))
        can_build, why = engine_support()
        build = can_build and bool(cfg.target_options.get("trt_build_engine", True))
        details = {**info, **facts, "profiles": profiles, "parity_runtime": _ort_parity(build, can_build)}
        arts = [Artifact(path.name, tower.name, "fp32", details)]
        if not build:
            log.info("%s: TensorRT engine not built (%s)", tower.name,
                     why if not can_build else "trt_build_engine is off")
            return arts
        cache = Path(cfg.target_options.get("trt_timing_cache") or out / TIMING_CACHE)
        workspace = float(cfg.target_options.get("trt_workspace_gb", 4.0))
        for prec in engine_precisions(cfg, facts["qdq_nodes"] > 0):
            plan = out / f"{tower.name}.{prec}.plan"
            built = build_engine(path, plan, profiles, prec, timing_cache=cache, workspace_gb=workspace)
            arts.append(Artifact(plan.name, tower.name, prec,
                                 {"engine": built, "gpu": why, "source_onnx": path.name,
                                  "parity_runtime": f"TensorRT {built['tensorrt']} on {why}"}))
        return arts

    def runner(self, artifact: Artifact, bundle: Path, cfg) -> Optional[Runner]:
        path = bundle / artifact.path
        if artifact.path.endswith(".plan"):
            from export.trt_engine import TrtRunner

            return TrtRunner(path)
        built = any(p.name.startswith(f"{artifact.tower}.") and p.suffix == ".plan" for p in bundle.iterdir())
        artifact.details["parity_runtime"] = _ort_parity(built, engine_support()[0])
        return session_runner(ort_session(path))

    def unverified_reason(self) -> str:
        return "TensorRT engines run only where TensorRT and a CUDA GPU are installed"

    def finalize(self, bundle: Path, artifacts: list[Artifact], cfg) -> dict:
        onnx_arts = [a for a in artifacts if a.path.endswith(".trt.onnx")]
        plans = [a.path for a in artifacts if a.path.endswith(".plan")]
        profiles: dict[str, Profiles] = {}
        lines = []
        for art in onnx_arts:
            meta = read_trt_metadata(bundle / art.path)
            if meta["profiles"]:
                profiles[art.tower] = meta["profiles"]
            for prec in engine_precisions(cfg, meta["qdq_nodes"] > 0):
                args = trtexec_args(art.path, f"{art.tower}.{prec}.plan", meta["profiles"], prec, TIMING_CACHE,
                                    cfg.target_options.get("trt_workspace_gb"))
                lines.append(f'"$TRTEXEC" {" ".join(_sh_quote(a) for a in args)}')
        script = bundle / BUILD_SCRIPT
        script.write_text(_build_script(lines))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        facts: dict = {"engine_built": bool(plans), "engines": plans, "profiles": profiles,
                       "build_script": BUILD_SCRIPT, "timing_cache": TIMING_CACHE}
        can_build, gpu = engine_support()
        if plans:
            from export.trt_engine import tensorrt_version

            facts["note"] = (f"Engines built with TensorRT {tensorrt_version()} on {gpu}; they load only with that "
                             "TensorRT version and GPU model: elsewhere run build_engine.sh")
        else:
            facts["note"] = SWITCHED_OFF_NOTE if can_build else NO_ENGINE_NOTE
        return {"tensorrt": facts}


def _ort_parity(engine_built: bool, can_build: bool) -> str:
    """How the TRT-ready ONNX's parity was checked, as the manifest says it."""
    if engine_built:
        return ORT_PARITY_WITH_ENGINE
    return ORT_PARITY_SWITCHED_OFF if can_build else ORT_PARITY


def engine_precisions(cfg, has_qdq: bool) -> list[str]:
    """Engines to build: fp16; int8 instead when the ONNX is explicitly quantized (QDQ nodes: TensorRT honours
    them in a strongly typed network, which takes no fp16 flag); or the `trt_precisions` target option."""
    chosen = cfg.target_options.get("trt_precisions")
    if chosen is None:
        return ["int8"] if has_qdq else ["fp16"]
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    bad = [p for p in chosen if p not in PRECISIONS]
    if bad:
        raise CompactError(f"trt_precisions {bad} not understood; choose from {', '.join(PRECISIONS)}")
    if "int8" in chosen and not has_qdq:
        raise CompactError("trt_precisions asks for int8 but the ONNX has no QDQ nodes; quantize first "
                           "(`compact quantize` or nvidia-modelopt's ONNX PTQ) or drop int8")
    return chosen


def _opt_value(dim: str, lo: int, hi: int, cfg) -> int:
    opts = cfg.target_options
    if dim == "batch":
        want = opts.get("trt_opt_batch", DEFAULT_OPT_BATCH)
    elif dim == "seq":
        want = opts.get("trt_opt_seq", DEFAULT_OPT_SEQ)
    else:
        want = opts.get(f"trt_opt_{dim}", hi)
    try:
        want = int(want)
    except (TypeError, ValueError):
        raise CompactError(f"trt_opt_{dim} must be an integer, got {want!r}") from None
    return max(lo, min(hi, want))


def tower_profiles(tower: Tower, cfg) -> Profiles:
    """min/opt/max shapes per input with a dynamic axis, from the tower's `dynamic` bounds: batch min 1 / opt
    `trt_opt_batch` (8) / max `max_batch`; seq min 2 / opt min(32, context) / max context."""
    profiles: Profiles = {}
    for name, x in zip(tower.input_names, tower.example):
        dyn = tower.dynamic.get(name, {})
        if not dyn:
            continue
        shape = [int(s) for s in x.shape]
        lo_s, opt_s, hi_s = list(shape), list(shape), list(shape)
        for axis, (dim, lo, hi) in dyn.items():
            lo_s[axis], opt_s[axis], hi_s[axis] = int(lo), _opt_value(dim, int(lo), int(hi), cfg), int(hi)
        profiles[name] = {"min": lo_s, "opt": opt_s, "max": hi_s}
    return profiles


def make_trt_ready(raw: Path, path: Path, tower: Tower, profiles: Profiles) -> dict:
    """Fold, clean and check the exported graph for TensorRT; write it to `path`. Returns manifest facts."""
    import onnx

    model = onnx.load(str(raw))
    ops_before = sum(1 for _ in model.graph.node)
    _freeze_static_axes(model, tower)
    model, folding = _fold(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # shape inference is only needed for the If check; the checker runs later anyway
        log.debug("shape inference failed before the TensorRT op check: %s", e)
        inferred = model
    problems = trt_blockers(inferred)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CompactError(f"TensorRT 10 cannot parse the {tower.name} tower: {shown}. Export the plain model "
                           "(no ORT optimizer or ORT int8), or use the onnx target")
    opset = next((o.version for o in model.opset_import if o.domain in _ONNX_DOMAINS), None)
    if opset is not None and opset > TRT10_MAX_OPSET:
        log.warning("%s: opset %d needs TensorRT newer than 10.0 (10.0 reads opsets up to %d); pass --opset %d "
                    "for older TensorRT", tower.name, opset, TRT10_MAX_OPSET, TRT10_MAX_OPSET)
    del model.metadata_props[:]
    for key, value in (("compact.tower", tower.name), (PROFILES_KEY, json.dumps(profiles))):
        model.metadata_props.add(key=key, value=value)
    _save(model, path)
    int64 = [i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.INT64]
    return {"ops_before": ops_before, "ops": sum(op_counts(path).values()), "constant_folding": folding,
            "static_shapes": not profiles, "qdq_nodes": _count_qdq(model),
            "int64_inputs": int64,
            **({"int64_note": "TensorRT 10 takes int64 inputs as they are; the interface is kept int64"}
               if int64 else {})}


def _freeze_static_axes(model, tower: Tower) -> None:
    """Give every axis the tower does not declare dynamic its concrete size (an exporter may leave a symbol)."""
    shapes = {n: x.shape for n, x in zip(tower.input_names, tower.example)}
    for inp in model.graph.input:
        if inp.name not in shapes:
            continue
        dyn = tower.dynamic.get(inp.name, {})
        for axis, dim in enumerate(inp.type.tensor_type.shape.dim):
            if axis not in dyn and not dim.HasField("dim_value"):
                dim.dim_value = int(shapes[inp.name][axis])


def _fold(model):
    """Constant folding and cleanup with onnx-graphsurgeon; the model unchanged (and why) when it cannot."""
    if importlib.util.find_spec("onnx_graphsurgeon") is None:
        return model, "skipped: onnx-graphsurgeon is not installed (pip install onnx-graphsurgeon)"
    import onnx_graphsurgeon as gs

    try:
        graph = gs.import_onnx(model)
        graph.fold_constants()
        graph.cleanup().toposort()
        folded = gs.export_onnx(graph)
    except Exception as e:  # graphsurgeon's folding raises assorted errors on odd graphs; keep the unfolded one
        log.warning("onnx-graphsurgeon could not fold constants (%s); writing the graph unfolded", e)
        return model, f"failed ({type(e).__name__}); graph written unfolded"
    folded.ir_version = model.ir_version
    if not folded.producer_name:
        folded.producer_name = model.producer_name
    return folded, f"onnx-graphsurgeon {gs.__version__}"


def _save(model, path: Path) -> None:
    import onnx

    if model.ByteSize() > (2 << 30) - (64 << 20):  # protobuf's 2 GiB ceiling, with headroom
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{path.name}.data")
    else:
        onnx.save_model(model, str(path))


def _count_qdq(model) -> int:
    return sum(1 for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))


def trt_blockers(model) -> list[str]:
    """What TensorRT 10's ONNX parser rejects in `model`, as "<op> node '<name>': why" lines (empty: none)."""
    problems: list[str] = []
    for vi in [*model.graph.input, *model.graph.output]:
        why = _bad_value_type(vi.type)
        if why:
            problems.append(f"graph value {vi.name!r} is {why}")
    _walk(model.graph, problems)
    return problems


def _bad_value_type(tp) -> Optional[str]:
    kind = tp.WhichOneof("value")
    if kind in ("sequence_type", "map_type", "optional_type", "sparse_tensor_type"):
        return f"{kind.replace('_type', '')}-typed, which TensorRT cannot hold"
    if kind == "tensor_type" and tp.tensor_type.elem_type in _BAD_ELEM_TYPES:
        return f"a {_BAD_ELEM_TYPES[tp.tensor_type.elem_type]} tensor, which TensorRT cannot hold"
    return None


def _walk(graph, problems: list[str]) -> None:
    for node in graph.node:
        label = f"{node.op_type} node {node.name or '(unnamed)'!r}"
        if node.domain not in _ONNX_DOMAINS and not node.domain.startswith("trt"):
            problems.append(f"{label}: custom domain {node.domain!r} (ONNX Runtime contrib ops need a TensorRT "
                            "plugin)")
        elif node.op_type in DENIED_OPS:
            problems.append(f"{label}: {DENIED_OPS[node.op_type]}")
        subgraphs = {a.name: a.g for a in node.attribute if a.HasField("g")}
        if node.op_type == "If" and len(subgraphs) == 2:
            then_g, else_g = subgraphs.get("then_branch"), subgraphs.get("else_branch")
            if then_g is not None and else_g is not None:
                why = _if_mismatch(then_g, else_g)
                if why:
                    problems.append(f"{label}: {why}")
        for sub in [*subgraphs.values(), *(g for a in node.attribute for g in a.graphs)]:
            _walk(sub, problems)


def _if_mismatch(then_g, else_g) -> Optional[str]:
    """TensorRT's conditional needs both branches to give the same number of outputs with equal dtypes and
    ranks; a shape-dependent branch with different ranks cannot be built."""
    if len(then_g.output) != len(else_g.output):
        return "its branches return different numbers of outputs"
    for a, b in zip(then_g.output, else_g.output):
        ta, tb = a.type.tensor_type, b.type.tensor_type
        if ta.elem_type and tb.elem_type and ta.elem_type != tb.elem_type:
            return f"branch outputs {a.name!r}/{b.name!r} differ in dtype"
        if ta.HasField("shape") and tb.HasField("shape") and len(ta.shape.dim) != len(tb.shape.dim):
            return f"branch outputs {a.name!r}/{b.name!r} differ in rank (dynamic-shape If)"
    return None


def validate(path: Path) -> dict:
    """`onnx.checker` full check (raises CompactError), then `polygraphy inspect model` when installed."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CompactError(f"the TRT-ready ONNX {path.name} fails onnx.checker: {first}; re-export with another "
                           "--opset or report it as a compact bug") from None
    return {"checker": "onnx.checker full_check passed", "polygraphy": polygraphy_inspect(path)}


def _polygraphy_cli() -> list[str]:
    script = Path(sys.executable).parent / "polygraphy"
    if script.is_file():
        return [str(script)]
    entry = "import sys; from polygraphy.tools import main; sys.argv[0] = 'polygraphy'; sys.exit(main())"
    return [sys.executable, "-c", entry]


def polygraphy_inspect(path: Path, timeout_s: float = 300) -> dict:
    """Run `polygraphy inspect model` on the ONNX (no TensorRT needed); record whether it passed and the node
    count it reports."""
    if importlib.util.find_spec("polygraphy") is None:
        return {"ran": False, "reason": "polygraphy is not installed (pip install polygraphy)"}
    import re

    cmd = [*_polygraphy_cli(), "inspect", "model", str(path)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("polygraphy inspect model %s did not run: %s", path.name, e)
        return {"ran": False, "reason": f"{type(e).__name__}: {e}"}
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = [ln for ln in text.splitlines() if ln.strip()][-1:] or [f"exit code {proc.returncode}"]
        log.warning("polygraphy inspect model %s failed: %s", path.name, tail[0])
        return {"ran": True, "passed": False, "error": tail[0][:300]}
    nodes = re.search(r"----\s+(\d+)\s+Node\(s\)\s+----", text)
    import polygraphy

    return {"ran": True, "passed": True, "version": polygraphy.__version__,
            "nodes": int(nodes.group(1)) if nodes else None}


def read_trt_metadata(path: Path) -> dict:
    """The profiles recorded in a TRT-ready ONNX, and whether it is explicitly quantized."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if PROFILES_KEY not in meta:
        raise CompactError(f"{path.name} has no {PROFILES_KEY} metadata, so it was not written by the tensorrt "
                           "target; re-export it with `compact export tensorrt`")
    return {"profiles": json.loads(meta[PROFILES_KEY]), "qdq_nodes": _count_qdq(model)}


def _sh_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _build_script(lines: list[str]) -> str:
    return "\n".join([
        "#!/usr/bin/env bash",
        "# Build TensorRT engines from the TRT-ready ONNX in this bundle (written by `compact export tensorrt`).",
        "# Needs TensorRT 10 (trtexec). Engines only load with the TensorRT version and GPU model that built them.",
        "# The optimization profiles match manifest.json (tensorrt.profiles); timing.cache speeds up rebuilds.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-trtexec}"',
        ('command -v "$TRTEXEC" >/dev/null || { echo "trtexec not found: install TensorRT or set TRTEXEC" >&2; '
         "exit 1; }"),
        *lines,
        "",
    ])
