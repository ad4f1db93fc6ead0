"""Core ML: one `.mlpackage` ML Program per tower, for iOS / macOS (CPU, GPU and the Neural Engine).

Each tower goes `torch.export.export` -> `run_decompositions({})` -> `coremltools.convert(convert_to="mlprogram")`.

Shapes (`target_options["coreml_shapes"]`):
  fixed       static shapes: batch = `fixed_batch` or 1, text length = `fixed_seq` or the context. The Neural
              Engine's fast path; callers pad to these shapes.
  enumerated  `ct.EnumeratedShapes` over batch {1, 8} x text lengths {16, 32, 64, context} (clipped to the
              context; `coreml_batch_sizes` / `coreml_seq_lengths` override). Two enumerated inputs (the text
              tower) need iOS 18 / macOS 15.

Precision: fp32, or fp16 compute. For fp16 an overflow scan runs the tower in fp32 on its example inputs plus
`target_options["calibration"]` ({input name: array}, or an .npz path) and keeps in fp32 every op whose inputs or
output exceed half the fp16 range (vector norms: whose square does), via `FP16ComputePrecision(op_selector=...)`,
mapped op by op through the debug handles coremltools carries from the exported graph into MIL.
`details["overflow_scan"]` records the layers (`overflow_scan`, forward hooks), their maxima and what was done.

Weights (`target_options["coreml_weights"]`): int8 (linear symmetric, per output channel; token embeddings per
row), palettize4 / palettize6 (k-means look-up tables, per tensor) over every Linear/Conv/Embedding weight. They
are compressed in torch with `coremltools.optimize.torch` (`PostTrainingQuantizer` / `PostTrainingPalettizer`),
and that model is what is exported and converted:
coremltools reads the compression metadata and writes `constexpr_affine_dequantize` / `constexpr_lut_to_dense`
ops, so the weights checked in torch are exactly the weights in the package. If a future coremltools ignores
the metadata, `coremltools.optimize.coreml` compresses the package instead and the details say so.

Parity: `MLModel.predict` exists only on macOS. There the runner feeds the package itself. Elsewhere it runs
the very `ExportedProgram` handed to coremltools (with fp16 compute emulated op by op, fp32 where the scan kept
fp32), padded to the package's shapes exactly as a caller must. `validate_mlpackage` checks the saved package's
structure (inputs, outputs, dtypes, shapes, MIL op types) on any platform. The parity tolerance stays 0.999:
fp32, fp16, int8 and palettize6 met it in our tests; palettize4 needs `--min-cosine` (about 0.98), and
the export warns before parity when the torch-side cosine is already below the tolerance.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from compact.errors import CompactError
from compact.utils.io import raise_if_disk_full
from export.targets import Artifact, ExportTarget, Runner, register_target
from export.towers import Tower

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
FP16_MARGIN = 0.5  # keep an op in fp32 once its range passes this fraction of the fp16 maximum
SHAPE_MODES = ("fixed", "enumerated")
WEIGHT_MODES = (None, "int8", "palettize4", "palettize6")
ENUM_BATCHES = (1, 8)
ENUM_SEQS = (16, 32, 64)  # plus the context
LICENSE = "see the source model's license"
LINUX_RUNTIME = "torch (the program handed to coremltools; MLModel.predict needs macOS)"
MAC_RUNTIME = "coreml MLModel.predict (macOS)"

# MIL op types a CLIP-style transformer (or timm conv stem) converts to. Others are reported, not fatal.
EXPECTED_OPS = frozenset({
    "const", "cast", "linear", "matmul", "einsum", "softmax", "layer_norm", "batch_norm", "instance_norm", "gelu",
    "silu", "sigmoid", "relu", "tanh", "erf", "exp", "sqrt", "rsqrt", "pow", "inverse", "add", "sub", "mul",
    "real_div", "floor_div", "mod", "maximum", "minimum", "clip", "reshape", "transpose", "squeeze", "expand_dims",
    "tile", "concat", "split", "stack", "slice_by_index", "slice_by_size", "gather", "gather_nd",
    "gather_along_axis", "select", "band_part", "fill", "fill_like", "range_1d", "shape", "conv", "avg_pool",
    "max_pool", "pad", "upsample_nearest_neighbor", "upsample_bilinear", "reduce_l2_norm", "reduce_sum",
    "reduce_mean", "reduce_max", "reduce_min", "reduce_argmax", "equal", "not_equal", "less", "less_equal",
    "greater", "greater_equal", "logical_and", "logical_or", "logical_not", "identity", "scaled_dot_product_attention",
    "constexpr_affine_dequantize", "constexpr_lut_to_dense", "constexpr_blockwise_shift_scale",
    "constexpr_sparse_to_dense", "constexpr_cast",
})
COMPRESSED_OPS = {"int8": ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"),
                  "palettize4": ("constexpr_lut_to_dense",), "palettize6": ("constexpr_lut_to_dense",)}
NORM_OPS = ("linalg_vector_norm", "norm", "frobenius_norm")  # aten ops that sum squares of their input


# --------------------------------------------------------------------------------------------- overflow scan

def _float_leaves(obj: Any) -> list[torch.Tensor]:
    leaves, _ = torch.utils._pytree.tree_flatten(obj)
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]


def _abs_max(tensors: Iterable[torch.Tensor]) -> float:
    return max((float(t.detach().abs().max()) for t in tensors), default=0.0)


def _as_batches(inputs: Any) -> list[tuple]:
    """One input tuple, or a sequence of them, as a list of tuples."""
    if isinstance(inputs, torch.Tensor):
        return [(inputs,)]
    if isinstance(inputs, tuple) and all(isinstance(t, torch.Tensor) for t in inputs):
        return [inputs]
    return [tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in inputs]


@torch.no_grad()
def overflow_scan(module: nn.Module, inputs: Any, limit: float = FP16_MAX) -> list[dict]:
    """Run `module` in fp32 on `inputs` (one input tuple or a sequence of them) and return every submodule whose
    largest |input| or |output| exceeds `limit`, largest first: {"module", "type", "max_abs", "max_abs_input",
    "max_abs_output"}. Forward hooks only; the module is not changed. Pass `limit=FP16_MAX * margin` for
    headroom."""
    seen: dict[str, list[float]] = {}
    types: dict[str, str] = {}

    def hook(name: str):
        def record(mod, args, kwargs, out):
            rng = seen.setdefault(name, [0.0, 0.0])
            rng[0] = max(rng[0], _abs_max(_float_leaves((args, kwargs))))
            rng[1] = max(rng[1], _abs_max(_float_leaves(out)))
        return record

    handles = []
    for name, sub in module.named_modules():
        if name:
            types[name] = type(sub).__name__
            handles.append(sub.register_forward_hook(hook(name), with_kwargs=True))
    try:
        for batch in _as_batches(inputs):
            module(*batch)
    finally:
        for h in handles:
            h.remove()
    flagged = [{"module": n, "type": types[n], "max_abs": _num(max(r)), "max_abs_input": _num(r[0]),
                "max_abs_output": _num(r[1])} for n, r in seen.items() if max(r) > limit or not math.isfinite(max(r))]
    return sorted(flagged, key=lambda d: -float(d["max_abs"]))


def _num(x: float):
    """A JSON-safe float (inf and nan as strings)."""
    return round(float(x), 3) if math.isfinite(x) else str(x)


# ------------------------------------------------------------------------------------ graph interpretation

def _is_assert(node: torch.fx.Node) -> bool:
    return "_assert" in str(node.target) or "sym_constrain" in str(node.target)


class _RangeRecorder(torch.fx.Interpreter):
    """Runs an exported `GraphModule` node by node in fp32, keeping the largest |value| of every node: graph
    inputs, weights (once) and op outputs."""

    def __init__(self, gm: torch.fx.GraphModule):
        super().__init__(gm)
        self.ranges: dict[str, float] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if n.op in ("call_function", "placeholder") or (n.op == "get_attr" and n.name not in self.ranges):
            self.ranges[n.name] = max(self.ranges.get(n.name, 0.0), _abs_max(_float_leaves(out)))
        return out


def _cast_floats(obj: Any, dtype: torch.dtype) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() and obj.dtype != dtype else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cast_floats(o, dtype) for o in obj)
    return obj


def emulate_fp16(gm: torch.fx.GraphModule, keep_fp32: Iterable[str] = ()) -> torch.fx.GraphModule:
    """A copy of an exported graph computing as Core ML's fp16 program does: every op takes fp16 inputs (weights
    stored in fp16) except the ops named in `keep_fp32`, which take fp32 (FP16ComputePrecision's op_selector).
    Outputs stay in the dtype of the last op; callers cast to float32. Export-time dtype asserts are dropped."""
    keep = set(keep_fp32)
    gm = copy.deepcopy(gm)
    graph = gm.graph
    floats = (torch.float32, torch.float16)
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if _is_assert(node):  # dtype asserts from export time would reject the fp16 tensors
            if not node.users:
                graph.erase_node(node)
            continue
        dtype = torch.float32 if node.name in keep else torch.float16

        def cast(a, node=node, dtype=dtype):
            if isinstance(a, torch.fx.Node):
                with graph.inserting_before(node):
                    return graph.call_function(_cast_floats, (a, dtype))
            # dtype arguments (to(), arange(), ...) follow the op's precision
            return dtype if isinstance(a, torch.dtype) and a in floats else a

        node.args = tuple(cast(a) if not isinstance(a, (list, tuple)) else type(a)(cast(x) for x in a)
                          for a in node.args)
        node.kwargs = {k: cast(v) for k, v in node.kwargs.items()}
    # Weights read only by fp16 ops are stored in fp16 once, rather than cast on every call.
    for node in graph.nodes:
        if node.op == "get_attr" and node.users and all(u.args[1] is torch.float16 for u in node.users
                                                        if u.target is _cast_floats):
            owner, _, name = node.target.rpartition(".")
            mod = gm.get_submodule(owner) if owner else gm
            value = getattr(mod, name)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                half = value.detach().to(torch.float16)
                if isinstance(value, nn.Parameter):
                    half = nn.Parameter(half, requires_grad=False)
                setattr(mod, name, half)
    graph.lint()
    gm.recompile()
    return gm


def _first(out: Any) -> torch.Tensor:
    while isinstance(out, (list, tuple)):
        out = out[0]
    return out


def _hot_nodes(gm: torch.fx.GraphModule, batches: list[tuple], limit: float) -> dict[str, float]:
    """Ops of the exported graph that must stay fp32: their output or any float input (activation, graph input or
    weight) passes `limit` (vector norms: their square does). Returns {node name: the range that flagged it}."""
    recorder = _RangeRecorder(gm)
    with torch.no_grad():
        for batch in batches:
            recorder.run(*batch)
    ranges = recorder.ranges
    hot: dict[str, float] = {}
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.name not in ranges:
            continue
        ins = [ranges.get(a.name, 0.0) for a in n.all_input_nodes]
        worst = max([ranges[n.name], *ins])
        packet = getattr(n.target, "overloadpacket", None)
        squared = getattr(packet, "__name__", "") in NORM_OPS and ranges[n.name] ** 2 > limit
        if worst > limit or squared or not math.isfinite(worst):
            hot[n.name] = worst
    return hot


# ------------------------------------------------------------------------------------------------- shapes

@dataclass
class ShapePlan:
    """The shapes the package accepts. `shapes` lists whole input shapes (every input of a tower shares its
    leading axes); `fit_axes` are the axes a caller pads up to an accepted shape (batch; text length)."""

    mode: str
    shapes: list[tuple[int, ...]]
    example: tuple[torch.Tensor, ...]  # what torch.export traces with
    dynamic: dict[str, dict[int, tuple[str, int, int]]] = field(default_factory=dict)
    fit_axes: tuple[int, ...] = (0,)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "shapes": [list(s) for s in self.shapes]}


def _rebuild(x: torch.Tensor, name: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """An example input like `x` at `shape` (the tower's example may have another batch or length)."""
    if tuple(x.shape) == tuple(shape):
        return x
    g = torch.Generator().manual_seed(seed)
    if x.is_floating_point():
        return torch.randn(*shape, generator=g, dtype=x.dtype)
    if name == "attention_mask":
        return torch.ones(*shape, dtype=x.dtype)
    lo, hi = int(x.min()), int(x.max()) + 1
    return torch.randint(lo, max(hi, lo + 1), shape, generator=g, dtype=x.dtype)


def _examples_at(tower: Tower, shape: tuple[int, ...], is_text: bool) -> tuple[torch.Tensor, ...]:
    return tuple(_rebuild(x, n, tuple(shape) if is_text else (shape[0], *x.shape[1:]))
                 for n, x in zip(tower.input_names, tower.example))


def shape_plan(tower: Tower, cfg, mode: str) -> ShapePlan:
    """The shapes the package will accept. fixed: batch = `fixed_batch` or 1, text length = `fixed_seq` or the
    context (the example's length when the tower's length is not dynamic). enumerated: every batch size in
    `coreml_batch_sizes` (default 1, 8) the tower allows, times every length in `coreml_seq_lengths` (default
    16, 32, 64 and the context) clipped to the tower's range; one resulting shape is exported as fixed."""
    opts = cfg.target_options or {}
    lead = tower.example[0]
    dyn = tower.dynamic.get(tower.input_names[0], {})
    is_text = tower.name == "text" or lead.dim() == 2
    fit = (0, 1) if is_text else (0,)
    seq_dyn = dyn.get(1) if is_text else None
    if mode == "fixed":
        batch = cfg.fixed_batch or 1
        shape = (batch, cfg.fixed_seq or (seq_dyn[2] if seq_dyn else int(lead.shape[1]))) if is_text else \
            (batch, *lead.shape[1:])
        shape = tuple(int(v) for v in shape)
        return ShapePlan("fixed", [shape], _examples_at(tower, shape, is_text), {}, fit)
    batches = [int(lead.shape[0])]
    if 0 in dyn:
        lo, hi = dyn[0][1], dyn[0][2]
        batches = sorted({int(b) for b in opts.get("coreml_batch_sizes", ENUM_BATCHES) if lo <= b <= hi}) or [hi]
    shapes: list[tuple[int, ...]]
    if is_text:
        seqs = [int(lead.shape[1])]
        if seq_dyn:
            lo, hi = seq_dyn[1], seq_dyn[2]
            seqs = sorted({min(max(int(v), lo), hi) for v in opts.get("coreml_seq_lengths", ENUM_SEQS)} | {hi})
        shapes = [(b, q) for b in batches for q in seqs]
    else:
        shapes = [(b, *(int(v) for v in lead.shape[1:])) for b in batches]
    if len(shapes) == 1:
        log.info("the %s tower has one shape only; exporting it as fixed", tower.name)
        return ShapePlan("fixed", shapes, _examples_at(tower, shapes[0], is_text), {}, fit)
    return ShapePlan("enumerated", shapes, tower.example, tower.dynamic, fit)


def fit_feeds(feeds: dict[str, np.ndarray], names: Sequence[str], plan: ShapePlan,
              run: Callable[[dict[str, np.ndarray]], np.ndarray]) -> np.ndarray:
    """Run `run` on `feeds` reshaped to the package's accepted shapes: the batch split into chunks no larger
    than the largest accepted batch and padded with repeats of the last row, the text padded with zeros (mask 0)
    up to the next accepted length. Returns the outputs of the real rows."""
    arrays = [np.asarray(feeds[n]) for n in names]
    n, fit = len(arrays[0]), plan.fit_axes
    max_b = max(s[0] for s in plan.shapes)
    outs = []
    for start in range(0, n, max_b):
        chunk = [a[start:start + max_b] for a in arrays]
        k = len(chunk[0])
        need = chunk[0].shape
        fits = [s for s in plan.shapes if len(s) == len(need)
                and all(s[d] >= need[d] if d in fit else s[d] == need[d] for d in range(len(s)))]
        if not fits:
            raise CompactError(f"inputs of shape {tuple(need)} fit none of the Core ML package's shapes "
                               f"{plan.shapes}; cut the batch/text to fit (manifest.json lists the shapes)")
        target = min(fits, key=lambda s: (int(np.prod(s)), s))
        padded = []
        for a in chunk:
            if target[0] > k:
                a = np.concatenate([a, np.repeat(a[-1:], target[0] - k, 0)])
            if len(fit) > 1 and a.ndim > 1 and target[1] > a.shape[1]:
                a = np.concatenate([a, np.zeros((a.shape[0], target[1] - a.shape[1], *a.shape[2:]), a.dtype)], 1)
            padded.append(a)
        outs.append(np.asarray(run(dict(zip(names, padded))))[:k])
    return np.concatenate(outs)


# --------------------------------------------------------------------------------------- export + compress

def _export_program(module: nn.Module, plan: ShapePlan, names: Sequence[str]):
    dyn = None
    if plan.dynamic:
        dims: dict[str, torch.export.Dim] = {}

        def dim(spec):
            name, lo, hi = spec
            return dims.setdefault(name, torch.export.Dim(name, min=lo, max=hi))

        dyn = {n: {i: dim(v) for i, v in plan.dynamic.get(n, {}).items()} or None for n in names}
    with torch.no_grad():
        ep = torch.export.export(module, plan.example, dynamic_shapes=dyn)
        ep = ep.run_decompositions({})
    # A slice over a whole axis (positions[:, :T] at T == context) exports as aten.alias, which coremltools 9
    # cannot convert ("Unsupported fx node alias"); it is an identity, so drop it.
    changed = False
    for node in list(ep.graph.nodes):
        if node.op == "call_function" and node.target in (torch.ops.aten.alias.default,
                                                          torch.ops.aten.alias_copy.default):
            node.replace_all_uses_with(node.args[0])
            ep.graph.erase_node(node)
            changed = True
    if changed:
        ep.graph_module.recompile()
    return ep


@contextlib.contextmanager
def _quiet(prefix: str = "coremltools"):
    """coremltools.optimize.torch logs every k-means step at INFO through its own handlers; hush them."""
    names = [prefix] + [n for n in logging.root.manager.loggerDict if n.startswith(prefix + ".")]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def compress_torch(module: nn.Module, weights: str, used_params: Iterable[str]) -> tuple[nn.Module, list[str]]:
    """A compressed deepcopy of `module` (coremltools.optimize.torch) restricted to the layers whose weights the
    exported tower uses; returns it and the compressed parameter names. The compressed model carries the
    compression metadata coremltools converts into constexpr ops."""
    used = set(used_params)
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
    if weights == "int8":
        from coremltools.optimize.torch.quantization import (
            PostTrainingQuantizer,
            PostTrainingQuantizerConfig,
        )

        class Quantizer(PostTrainingQuantizer):
            # Token embeddings too (per-row scales): they are a third of a CLIP text tower, and coremltools
            # converts their metadata into a constexpr gather weight like any other.
            _supported_modules = (*PostTrainingQuantizer._supported_modules, nn.Embedding)

        per: dict[str, Any] = {"weight_dtype": "int8", "granularity": "per_channel", "quantization_scheme": "symmetric"}
    else:
        from coremltools.optimize.torch.palettization import (
            PostTrainingPalettizer,
            PostTrainingPalettizerConfig,
        )

        per = {"n_bits": 4 if weights == "palettize4" else 6}
    names = [n for n, m in module.named_modules() if isinstance(m, kinds) and f"{n}.weight" in used]
    if not names:
        raise CompactError(f"the tower has no Linear/Conv/Embedding layers for {weights} weight compression; "
                           "export without --coreml-weights")
    cfg_dict = {"global_config": None, "module_name_configs": {n: dict(per) for n in names}}
    with _quiet(), torch.no_grad():
        if weights == "int8":
            comp = Quantizer(copy.deepcopy(module), PostTrainingQuantizerConfig.from_dict(cfg_dict)).compress()
        else:
            comp = PostTrainingPalettizer(copy.deepcopy(module),
                                          PostTrainingPalettizerConfig.from_dict(cfg_dict)).compress()
    return comp.eval(), [f"{n}.weight" for n in names]


def _cosine_min(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().flatten(1), b.float().flatten(1)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())


# ------------------------------------------------------------------------------------------------ validate

def _mil_ops(block) -> Iterable:
    for op in block.operations:
        yield op
        for sub in op.blocks:
            yield from _mil_ops(sub)


def _dtype_name(code: int) -> str:
    from coremltools.proto import FeatureTypes_pb2

    return FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(code)


def check_package_paths(path: Path) -> None:
    """Every item an .mlpackage's Manifest.json names must lie inside the package's Data folder: a package from a
    stranger must not point Core ML at ../../anything or an absolute path. Plain JSON, so it runs everywhere."""
    import json

    from export.bundle import inside_folder

    path = Path(path)
    if path.suffix != ".mlpackage":
        return
    manifest = path / "Manifest.json"
    try:
        items = json.loads(manifest.read_text(encoding="utf-8")).get("itemInfoEntries", {})
    except (OSError, ValueError, AttributeError, RecursionError):
        raise CompactError(f"{path} cannot be read as a Core ML package: {manifest.name} is missing or not a "
                           "package manifest; re-export it") from None
    if not isinstance(items, dict):
        raise CompactError(f"{manifest}: itemInfoEntries must be an object; re-export the package")
    for key, item in items.items():
        rel = item.get("path") if isinstance(item, dict) else None
        if not isinstance(rel, str):
            raise CompactError(f"{manifest}: item {key!r} has no string path; re-export the package")
        inside_folder(path / "Data", rel, f"{manifest.name}: item {key!r} path")


def validate_mlpackage(path: Path, tower: Tower, shapes: Optional[list[tuple[int, ...]]] = None,
                       weights: Optional[str] = None, embed_dim: Optional[int] = None) -> dict:
    """Structural check of a saved package without compiling it (works on Linux): input/output names, dtypes
    and shapes against the tower (and the planned `shapes`), MIL op counts by type, unexpected op types, and
    the compressed-weight ops `weights` implies. Returns {"ops", "inputs", "outputs", "unexpected_ops", ...};
    raises CompactError naming the mismatch."""
    import coremltools as ct

    path = Path(path)
    where = f"{path.name} ({tower.name} tower)"
    check_package_paths(path)
    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as e:  # protobuf / package errors
        raise CompactError(f"{where} cannot be read as a Core ML package ({e}); re-export it") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise CompactError(f"{where} is a {spec.WhichOneof('Type')}, not an ML Program; re-export it")
    if "main" not in spec.mlProgram.functions:
        raise CompactError(f"{where} has no 'main' function; re-export it")
    fn = spec.mlProgram.functions["main"]
    block = fn.block_specializations[fn.opset]
    if not (path / "Data" / "com.apple.CoreML" / "weights").is_dir():
        raise CompactError(f"{where} has no weights folder; the package is incomplete, re-export it")

    inputs = []
    for f in spec.description.input:
        arr = f.type.multiArrayType
        enum = [list(s.shape) for s in arr.enumeratedShapes.shapes]
        inputs.append({"name": f.name, "dtype": _dtype_name(arr.dataType), "shape": list(arr.shape),
                       **({"enumerated_shapes": enum} if enum else {})})
    got = [i["name"] for i in inputs]
    if got != list(tower.input_names):
        raise CompactError(f"{where} has inputs {got}, expected {list(tower.input_names)}; re-export it")
    for spec_in, x in zip(inputs, tower.example):
        want = "FLOAT32" if x.is_floating_point() else "INT32"
        if spec_in["dtype"] != want:
            raise CompactError(f"{where}: input {spec_in['name']} is {spec_in['dtype']}, expected {want}; re-export it")
        accepted = [tuple(s) for s in spec_in.get("enumerated_shapes", [])] or [tuple(spec_in["shape"])]
        if len(accepted[0]) != x.dim():
            raise CompactError(f"{where}: input {spec_in['name']} has rank {len(accepted[0])}, expected {x.dim()}")
        if x.dim() == 4 and any(s[1:] != tuple(x.shape[1:]) for s in accepted):
            raise CompactError(f"{where}: input {spec_in['name']} accepts {accepted}, expected (batch, "
                               f"{', '.join(map(str, x.shape[1:]))}); re-export it")
        if shapes is not None and sorted(accepted) != sorted(tuple(s[:x.dim()]) for s in shapes):
            raise CompactError(f"{where}: input {spec_in['name']} accepts {sorted(accepted)}, planned "
                               f"{sorted(shapes)}; re-export it")

    outputs = []
    out_types = {o.name: o.type for op in _mil_ops(block) for o in op.outputs}
    for f in spec.description.output:
        arr = f.type.multiArrayType
        shape = list(arr.shape)
        if not shape and f.name in out_types:  # the description omits it for flexible shapes
            dims = out_types[f.name].tensorType.dimensions
            shape = [d.constant.size if d.WhichOneof("dimension") == "constant" else "batch" for d in dims]
        outputs.append({"name": f.name, "dtype": _dtype_name(arr.dataType), "shape": shape})
    if [o["name"] for o in outputs] != [tower.output_name]:
        raise CompactError(f"{where} has outputs {[o['name'] for o in outputs]}, expected "
                           f"[{tower.output_name!r}]; re-export it")
    if outputs[0]["dtype"] != "FLOAT32":
        raise CompactError(f"{where}: output {tower.output_name} is {outputs[0]['dtype']}, expected FLOAT32")
    if embed_dim is not None and outputs[0]["shape"] and outputs[0]["shape"][-1] != embed_dim:
        raise CompactError(f"{where}: output {tower.output_name} has shape {outputs[0]['shape']}, expected "
                           f"(batch, {embed_dim}); re-export it")

    from coremltools.proto import MIL_pb2

    ops: dict[str, int] = {}
    compute_dtypes: dict[str, int] = {}  # non-const ops by the dtype of their first output
    for op in _mil_ops(block):
        ops[op.type] = ops.get(op.type, 0) + 1
        if op.type != "const" and not op.type.startswith("constexpr") and op.outputs:
            dt = MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType).lower()
            compute_dtypes[dt] = compute_dtypes.get(dt, 0) + 1
    compute = {k: v for k, v in ops.items() if k != "const"}
    if not compute:
        raise CompactError(f"{where} contains no operations; re-export it")
    unexpected = sorted(k for k in ops if k not in EXPECTED_OPS)
    if unexpected:
        log.warning("%s contains MIL ops outside the expected set for CLIP towers: %s", where, ", ".join(unexpected))
    compressed = sum(ops.get(k, 0) for k in COMPRESSED_OPS.get(weights or "", ()))
    if weights and not compressed:
        raise CompactError(f"{where} was asked for {weights} weights but has no {'/'.join(COMPRESSED_OPS[weights])} "
                           "ops; re-export it or drop --coreml-weights")
    return {"ops": dict(sorted(ops.items())), "inputs": inputs, "outputs": outputs, "unexpected_ops": unexpected,
            "op_output_dtypes": dict(sorted(compute_dtypes.items())), "opset": fn.opset,
            "specification_version": int(spec.specificationVersion),
            **({"compressed_weight_ops": compressed} if weights else {})}


# -------------------------------------------------------------------------------------------------- target

@dataclass
class _Program:
    """What the Linux runner needs: the exact module converted, its precision and accepted shapes."""

    module: torch.fx.GraphModule
    names: tuple[str, ...]
    plan: ShapePlan
    half: bool
    keep_fp32: frozenset


DESCRIPTIONS = {
    "pixel_values": "RGB image, resized/cropped and normalised with mean/std from manifest.json (preprocess), "
                    "float32, shape (batch, 3, {s}, {s})",
    "input_ids": "token ids from the tokenizer described in manifest.json (tokenizer_config.json), padded with "
                 "zeros after the last token; int32, shape (batch, seq)",
    "attention_mask": "1 for real tokens, 0 for padding; int32, same shape as input_ids",
}


def _ct_target(opts: dict, need):
    import coremltools as ct

    name = opts.get("coreml_target")
    if not name:
        return need
    chosen = getattr(ct.target, str(name), None)
    if chosen is None:
        raise CompactError(f"unknown Core ML deployment target {name!r}; use a coremltools.target name such as "
                           "iOS16, iOS17, iOS18, macOS13")
    if chosen.value < need.value:
        raise CompactError(f"Core ML deployment target {name} is too old for these shapes/weights (need "
                           f"{need.name} or newer); raise coreml_target")
    return chosen


@register_target
class CoreMLTarget(ExportTarget):
    name = "coreml"
    description = "Core ML ML Program packages (.mlpackage) for iOS/macOS: fixed or enumerated shapes, fp16/fp32"
    packages = ("coremltools",)
    extra = "coreml"
    min_cosine = 0.999  # fp32 and fp16 meet it; palettized weights of large models need --min-cosine

    def __init__(self) -> None:
        self._programs: dict[str, _Program] = {}

    def export(self, tower: Tower, out: Path, cfg) -> list[Artifact]:
        import coremltools as ct

        opts = cfg.target_options or {}
        mode = opts.get("coreml_shapes", "fixed") or "fixed"
        weights = opts.get("coreml_weights") or None
        if mode not in SHAPE_MODES:
            raise CompactError(f"coreml_shapes {mode!r} is not one of {', '.join(SHAPE_MODES)}")
        if weights not in WEIGHT_MODES:
            raise CompactError(f"coreml_weights {weights!r} is not one of none, int8, palettize4, palettize6")
        plan = shape_plan(tower, cfg, mode)
        names = tuple(tower.input_names)
        scan_batches = [plan.example] + self._calibration(tower, opts)

        ep32 = self._export(tower, tower.module, plan, names)
        module, details = tower.module, {}
        if weights:
            module, compressed = compress_torch(tower.module, weights, _used_params(ep32))
            with torch.no_grad():
                cos = min(_cosine_min(module(*b), tower.module(*b)) for b in scan_batches)
            ep = self._export(tower, module, plan, names)
            details["weights"] = {"mode": weights, "compressed_params": len(compressed),
                                  "via": "coremltools.optimize.torch, converted from its compression metadata"}
            details["torch_side_cosine"] = round(cos, 6)
            need = cfg.min_cosine if cfg.min_cosine is not None else self.min_cosine
            if cos < need:
                log.warning("%s weights move the %s tower to cosine %.4f in torch, below the parity tolerance %s; "
                            "the export will fail parity unless you pass --min-cosine %.2f or lighter compression",
                            weights, tower.name, cos, need, math.floor((cos - 0.01) * 100) / 100)
        else:
            ep = ep32

        half = cfg.precision == "fp16"
        hot: dict[str, float] = {}
        if half:
            margin = float(opts.get("fp16_margin", FP16_MARGIN))
            limit = FP16_MAX * margin
            layers = overflow_scan(module, scan_batches, limit)
            gm_batches = [self._fit_batch(b, names, plan) for b in scan_batches]
            hot = _hot_nodes(ep.module(), [b for chunks in gm_batches for b in chunks], limit)
            details["overflow_scan"] = {"limit": limit, "margin": margin, "batches": len(scan_batches),
                                        "calibration": len(scan_batches) > 1, "layers": layers,
                                        "ops_kept_fp32": sorted(hot), "action": "none: every op fits fp16"}

        path = out / f"{tower.name}.mlpackage"
        ml, kept, precision, target = self._convert(ct, ep, tower, plan, names, half, hot, opts)
        if half:
            scan = details["overflow_scan"]
            if hot and kept:
                scan["action"] = (f"kept {len(hot)} exported ops ({kept} MIL ops) in fp32, the rest fp16 "
                                  "(FP16ComputePrecision op_selector)")
            elif hot:
                scan["action"] = "the flagged ops could not be mapped to MIL ops; the whole model was kept fp32"
        if weights and not _has_compressed_ops(ml, weights):
            log.warning("coremltools did not convert the %s tower's compression metadata; compressing the package "
                        "with coremltools.optimize.coreml instead", tower.name)
            ml = self._compress_coreml(ml, weights)
            details["weights"]["via"] = ("coremltools.optimize.coreml on the package (this coremltools ignored the "
                                         "torch compression metadata); the torch-side check is an approximation")
        self._describe(ml, tower, plan, precision, weights, opts)
        ml.save(str(path))
        structure = validate_mlpackage(path, tower, plan.shapes, weights, _out_dim(ep))
        details.update({
            "compute_precision": precision,
            "deployment_target": target,
            "coreml_shapes": plan.to_dict(),
            "structure": structure,
            "parity_runtime": MAC_RUNTIME if sys.platform == "darwin" else LINUX_RUNTIME,
            # The manifest's input/output entries, as the package declares them (int32 ids, its own shapes).
            "inputs": self._input_specs(tower, plan),
            "outputs": [{"name": tower.output_name, "dtype": "float32", "shape": structure["outputs"][0]["shape"]}],
        })
        keep = frozenset(hot) if precision != "fp32" else frozenset()
        self._programs[str(path.resolve())] = _Program(ep.module(), names, plan, precision != "fp32", keep)
        return [Artifact(path.name, tower.name, precision, details)]

    # ---------------------------------------------------------------------------------------------- pieces

    def _export(self, tower: Tower, module: nn.Module, plan: ShapePlan, names: tuple[str, ...]):
        try:
            return _export_program(module, plan, names)
        except Exception as e:  # torch.export raises many error types
            raise_if_disk_full(e)  # a full disk is not a conversion problem
            raise CompactError(f"torch.export cannot trace the {tower.name} tower for Core ML: "
                               f"{str(e).strip().splitlines()[0][:300]}; try `compact export onnx`") from None

    @staticmethod
    def _calibration(tower: Tower, opts: dict) -> list[tuple]:
        """`calibration`: {input name: array} or the path of an .npz with those arrays (a path keeps the
        manifest's export_config JSON-serialisable)."""
        calib = opts.get("calibration")
        if not calib:
            return []
        if isinstance(calib, (str, Path)):
            if not Path(calib).is_file():
                raise CompactError(f"calibration file {calib} does not exist; give an .npz with arrays named "
                                   "pixel_values / input_ids / attention_mask")
            with np.load(calib) as npz:
                calib = {k: npz[k] for k in npz.files}
        present = [n for n in tower.input_names if n in calib]
        if not present:
            return []  # calibration for the other tower
        missing = [n for n in tower.input_names if n not in calib]
        if missing:
            raise CompactError(f"calibration data for the {tower.name} tower lacks {', '.join(missing)}; give "
                               f"every input of the tower ({', '.join(tower.input_names)})")
        return [tuple(torch.as_tensor(np.asarray(calib[n])).to(x.dtype)
                      for n, x in zip(tower.input_names, tower.example))]

    @staticmethod
    def _fit_batch(batch: tuple, names: tuple[str, ...], plan: ShapePlan) -> list[tuple]:
        """`batch` as inputs the exported program accepts (its fixed or enumerated shapes)."""
        chunks: list[tuple] = []

        def keep(feeds: dict[str, np.ndarray]) -> np.ndarray:
            chunks.append(tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names))
            return np.zeros((len(feeds[names[0]]), 1))

        fit_feeds({n: t.numpy() for n, t in zip(names, batch)}, names, plan, keep)
        return chunks

    def _convert(self, ct, ep, tower: Tower, plan: ShapePlan, names, half: bool, hot: dict, opts: dict):
        from coremltools.converters.mil.mil.scope import ScopeSource

        enumerated = plan.mode == "enumerated"
        need = ct.target.iOS18 if enumerated and len(names) > 1 else ct.target.iOS16
        target = _ct_target(opts, need)
        inputs = []
        for n, x in zip(names, plan.example):
            dtype = np.float32 if x.is_floating_point() else np.int32
            rank = x.dim()
            if enumerated:
                shapes = [tuple(s[:rank]) if rank == 2 else s for s in plan.shapes]
                default = max(shapes, key=lambda s: (-s[0], s))  # batch 1, longest text
                shape: Any = ct.EnumeratedShapes(shapes=shapes, default=default)
            else:
                shape = tuple(int(s) for s in x.shape)
            inputs.append(ct.TensorType(name=n, shape=shape, dtype=dtype))
        outputs = [ct.TensorType(name=tower.output_name, dtype=np.float32)]

        handles: dict[int, str] = {}
        for i, node in enumerate(ep.graph.nodes):
            if node.op == "call_function":
                node.meta["debug_handle"] = i
                handles[i] = node.name
        kept = [0]

        def selector(op) -> bool:
            h = (op.scopes.get(ScopeSource.EXIR_DEBUG_HANDLE) or [None])[0]
            if h is not None and handles.get(h) in hot:
                if op.op_type != "const":
                    kept[0] += 1
                return False
            return True

        if not half:
            precision_arg, precision = ct.precision.FLOAT32, "fp32"
        elif hot:
            precision_arg, precision = ct.transform.FP16ComputePrecision(op_selector=selector), "fp16"
        else:
            precision_arg, precision = ct.precision.FLOAT16, "fp16"

        def convert(prec):
            with _quiet():
                return ct.convert(ep, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                                  compute_precision=prec, minimum_deployment_target=target, skip_model_load=True)

        try:
            ml = convert(precision_arg)
            if half and hot and not kept[0]:
                log.warning("the %s tower's overflowing ops could not be mapped to Core ML ops; converting it "
                            "in fp32", tower.name)
                ml, precision = convert(ct.precision.FLOAT32), "fp32"
        except CompactError:
            raise
        except Exception as e:  # coremltools raises ValueError/NotImplementedError/RuntimeError for unsupported ops
            raise_if_disk_full(e)  # a full disk is not a conversion problem
            raise CompactError(f"coremltools cannot convert the {tower.name} tower: "
                               f"{str(e).strip().splitlines()[0][:300]}; try `compact export onnx`") from None
        return ml, kept[0], precision, target.name

    @staticmethod
    def _describe(ml, tower: Tower, plan: ShapePlan, precision: str, weights: Optional[str], opts: dict) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("compact-clip")
        except PackageNotFoundError:
            ours = "source"
        ml.author = "compact"
        ml.license = str(opts.get("license", LICENSE))
        ml.short_description = (f"compact CLIP {tower.name} encoder: {', '.join(tower.input_names)} -> "
                                f"{tower.output_name} ({precision}, {plan.mode} shapes"
                                f"{', ' + weights + ' weights' if weights else ''})")
        ml.version = ours
        size = tower.example[0].shape[-1]
        for n in tower.input_names:
            ml.input_description[n] = DESCRIPTIONS.get(n, n).format(s=size)
        norm = "L2-normalised " if getattr(tower.module, "normalize", True) else ""
        ml.output_description[tower.output_name] = f"{norm}{tower.name} embedding, float32, shape (batch, dim)"
        ml.user_defined_metadata.update({"compact.tower": tower.name, "compact.shapes": plan.mode,
                                         "compact.precision": precision, "compact.weights": weights or "none",
                                         "compact.manifest": "manifest.json"})

    @staticmethod
    def _compress_coreml(ml, weights: str):
        import coremltools.optimize.coreml as cto

        if weights == "int8":
            op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
            return cto.linear_quantize_weights(ml, cto.OptimizationConfig(global_config=op))
        op = cto.OpPalettizerConfig(nbits=4 if weights == "palettize4" else 6, mode="kmeans")
        return cto.palettize_weights(ml, cto.OptimizationConfig(global_config=op))

    @staticmethod
    def _input_specs(tower: Tower, plan: ShapePlan) -> list[dict]:
        specs = []
        for n, x in zip(tower.input_names, plan.example):
            dtype = "float32" if x.is_floating_point() else "int32"
            rank = x.dim()
            shapes = [list(s[:rank]) if rank == 2 else list(s) for s in plan.shapes]
            if plan.mode == "fixed":
                specs.append({"name": n, "dtype": dtype, "shape": shapes[0], "dynamic_axes": {}})
            else:
                shape = ["batch" if len({s[0] for s in shapes}) > 1 else shapes[0][0],
                         *(["seq"] if rank == 2 and len({s[1] for s in shapes}) > 1 else shapes[0][1:])]
                specs.append({"name": n, "dtype": dtype, "shape": shape, "dynamic_axes": {},
                              "enumerated_shapes": shapes})
        return specs

    # ---------------------------------------------------------------------------------------------- parity

    def runner(self, artifact: Artifact, bundle: Path, cfg) -> Optional[Runner]:
        path = Path(bundle) / artifact.path
        prog = self._programs.get(str(path.resolve()))
        if sys.platform == "darwin":
            import coremltools as ct

            check_package_paths(path)
            ml = ct.models.MLModel(str(path))
            plan = prog.plan if prog else _plan_from_spec(ml.get_spec())
            names = tuple(i.name for i in ml.get_spec().description.input)
            out_name = ml.get_spec().description.output[0].name
            artifact.details["parity_runtime"] = MAC_RUNTIME

            def predict(feeds: dict[str, np.ndarray]) -> np.ndarray:
                typed = {k: (v.astype(np.int32) if v.dtype.kind in "iu" else v.astype(np.float32))
                         for k, v in feeds.items()}
                return np.asarray(ml.predict(typed)[out_name], dtype=np.float32)

            return lambda feeds: fit_feeds(feeds, names, plan, predict)
        if prog is None:
            return None
        artifact.details["parity_runtime"] = LINUX_RUNTIME
        # fp32: the exported module itself; fp16: the same graph node by node, each op in its Core ML precision
        call = emulate_fp16(prog.module, prog.keep_fp32) if prog.half else prog.module

        @torch.no_grad()
        def run_torch(feeds: dict[str, np.ndarray]) -> np.ndarray:
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in prog.names]
            return _first(call(*args)).float().numpy()

        return lambda feeds: fit_feeds(feeds, prog.names, prog.plan, run_torch)

    def unverified_reason(self) -> str:
        return ("Core ML packages run only on macOS (MLModel.predict), and the torch program converted to them is "
                "not in this process; the structure was validated. Re-export on a Mac, or in one process on "
                "Linux, to check parity")

    def finalize(self, bundle: Path, artifacts: list[Artifact], cfg) -> dict:
        for art in artifacts:  # the parity checks are done; free the programs kept for them
            self._programs.pop(str((Path(bundle) / art.path).resolve()), None)
        return {}


def _used_params(ep) -> list[str]:
    """Parameters the exported graph reads (torch.export lifts every parameter of the module, used or not)."""
    to_param = ep.graph_signature.inputs_to_parameters
    return [to_param[n.name] for n in ep.graph.nodes if n.op == "placeholder" and n.name in to_param and n.users]


def _out_dim(ep) -> Optional[int]:
    out = next(n for n in ep.graph.nodes if n.op == "output").args[0]
    val = _first(out).meta.get("val") if isinstance(_first(out), torch.fx.Node) else None
    return int(val.shape[-1]) if val is not None else None


def _has_compressed_ops(ml, weights: str) -> bool:
    fn = ml.get_spec().mlProgram.functions["main"]
    return any(op.type in COMPRESSED_OPS[weights] for op in _mil_ops(fn.block_specializations[fn.opset]))


def _plan_from_spec(spec) -> ShapePlan:
    """Accepted shapes read back from a package (for parity on a Mac without the export's in-memory state)."""
    first = spec.description.input[0].type.multiArrayType
    shapes = [tuple(s.shape) for s in first.enumeratedShapes.shapes] or [tuple(first.shape)]
    fit = (0, 1) if len(shapes[0]) == 2 else (0,)
    return ShapePlan("enumerated" if len(shapes) > 1 else "fixed", shapes, (), {}, fit)
