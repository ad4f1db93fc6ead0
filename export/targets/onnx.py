"""ONNX: image and text encoders as separate graphs, dynamic batch and sequence, opset recorded.

Exported through `torch.export` (dynamo). If that fails, the legacy TorchScript exporter is tried with
PyTorch's fused MHA fast path off (it emits `aten::_native_multi_head_attention`, which ONNX cannot express).
Optionally (`--optimize`) a second graph per tower for onnxruntime only: attention exported as ORT's fused
`com.microsoft.Attention` (`export/ort_attention.py`), then ORT's transformer optimizer fuses LayerNorm / GELU /
residual adds; the fused-op counts are recorded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from compact.errors import CompactError
from compact.utils.io import raise_if_disk_full
from export.targets import Artifact, ExportTarget, Runner, register_target
from export.towers import Tower

log = logging.getLogger(__name__)

# 20: GELU is one ONNX op (instead of Erf/Div/Mul/Add), 15-24% faster on ORT CPU for fp32 and int8 (measured on
# the student); onnxruntime 1.32 and onnxruntime-web 1.30 (the browser app's test) run it.
DEFAULT_OPSET = 20


def export_onnx(tower: Tower, path: Path, opset: int = DEFAULT_OPSET, fuse_attention: bool = False) -> dict:
    """Write `tower` to `path`; returns {"exporter", "opset"}. Raises CompactError naming the failing op.
    `fuse_attention`: CompactCLIP attention blocks become onnxruntime's `com.microsoft.Attention` (dynamo only)."""
    if fuse_attention:
        return _export_fused(tower, path, opset)
    names = list(tower.input_names)
    errors = []
    with torch.no_grad():
        try:
            _dynamo_export(tower, path, opset)
            return {"exporter": "dynamo", "opset": opset}
        except Exception as e:  # the dynamo exporter raises many types; fall back and keep the reason
            raise_if_disk_full(e)  # a full disk is not a conversion problem
            errors.append(f"dynamo: {_first_line(e)}")
            log.info("dynamo ONNX export of the %s tower failed (%s); trying the legacy exporter", tower.name, e)
        axes = {n: {i: v[0] for i, v in tower.dynamic.get(n, {}).items()} for n in names if tower.dynamic.get(n)}
        if tower.dynamic:
            axes[tower.output_name] = {0: "batch"}
        prev = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            torch.onnx.export(tower.module, tower.example, str(path), dynamo=False, input_names=names,
                              output_names=[tower.output_name], opset_version=opset, dynamic_axes=axes or None)
            return {"exporter": "legacy", "opset": opset, "dynamo_error": errors[0]}
        except Exception as e:
            raise_if_disk_full(e)  # a full disk is not a conversion problem
            errors.append(f"legacy: {_first_line(e)}")
        finally:
            torch.backends.mha.set_fastpath_enabled(prev)
    op = next((m.group(1) for m in map(_OP.search, errors) if m), None)
    where = _locate(tower, op) if op else None
    what = f"op {op} in {where}" if where else (f"op {op}" if op else "; ".join(errors))
    raise CompactError(f"ONNX opset {opset} cannot express {what} of the {tower.name} tower ({'; '.join(errors)}). "
                       "Replace that op in the model, or export a model compact can convert (open_clip ViT, HF CLIP)")


def _dynamo_export(tower: Tower, path: Path, opset: int, table: Optional[dict] = None) -> None:
    names = list(tower.input_names)
    dyn = {n: {i: torch.export.Dim(v[0], min=v[1], max=v[2]) for i, v in tower.dynamic.get(n, {}).items()} or None
           for n in names}
    with contextlib.redirect_stdout(io.StringIO()):
        prog = torch.onnx.export(tower.module, tower.example, str(path), dynamo=True, input_names=names,
                                 output_names=[tower.output_name], opset_version=opset, verbose=False,
                                 dynamic_shapes=dyn if tower.dynamic else None, optimize=True,
                                 external_data=False, custom_translation_table=table)
    if prog is not None and not path.exists():
        prog.save(str(path))


def _export_fused(tower: Tower, path: Path, opset: int) -> dict:
    from export.ort_attention import fused_attention

    with torch.no_grad(), fused_attention(tower.module) as table:
        try:
            _dynamo_export(tower, path, opset, table)
        except Exception as e:  # the dynamo exporter raises many types
            raise_if_disk_full(e)  # a full disk is not a conversion problem
            raise CompactError(f"the {tower.name} tower could not be exported with fused attention "
                               f"({_first_line(e)}); export without --optimize") from None
    return {"exporter": "dynamo", "opset": opset, "fused_attention": op_counts(path).get("Attention", 0),
            "fused_pooled_attention": op_counts(path).get("MultiHeadAttention", 0)}


_OP = re.compile(r"operator '(aten::[A-Za-z0-9_.]+)'")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _locate(tower: Tower, op: str) -> Optional[str]:
    """The module (path in the tower, and its class) whose forward calls `op`, from torch.export's module stack."""
    name = op.split("::")[-1]
    try:
        with torch.no_grad():
            prog = torch.export.export(tower.module, tower.example, strict=False)
    except Exception:  # nothing more to say than the exporter's own message
        return None
    for node in prog.graph.nodes:
        if node.op == "call_function" and name in str(node.target):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, cls = list(stack.values())[-1]
                cls = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1]
                return f"layer '{path or tower.name}' ({cls})"
    return None


def _first_line(e: Exception) -> str:
    text = _ANSI.sub("", str(e)).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "BiasGelu",
             "FastGelu", "Gelu", "QuickGelu", "BiasSplitGelu", "SkipSimplifiedLayerNormalization")


def ort_optimize(path: Path, out: Path, tower: Tower, num_heads: int, hidden: int) -> dict:
    """ORT's transformer optimizer (attention / LayerNorm / GELU fusion); returns the fused op counts."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = "vit" if tower.name == "image" else "clip"
    options = FusionOptions(model_type)
    # No SkipLayerNormalization (residual Add + LayerNorm in one op): on onnxruntime 1.32's CPU kernel it took
    # 91 us per call on the student's image tower against 21 + 8 us for the LayerNorm and Add it replaces, and
    # the fused towers ran 0.73x (fp32) and 0.63x (int8) as fast. The optimizer fuses it whenever symbolic shape
    # inference succeeds on the graph, which it does not on today's exports (opset-18 ReduceL2 of the final
    # normalization) but may on tomorrow's.
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    opt = optimize_model(str(path), model_type=model_type, num_heads=num_heads, hidden_size=hidden, opt_level=1,
                         use_gpu=False, only_onnxruntime=False, optimization_options=options)
    opt.save_model_to_file(str(out))
    counts = op_counts(out)
    return {"model_type": model_type, "fused": {k: v for k, v in counts.items() if k in FUSED_OPS}}


def check_external_data(path: Path) -> None:
    """Tensors stored outside an .onnx file must live in its folder: a `location` that is absolute, climbs with '..'
    or follows a symlink out is refused before any runtime opens the file (a model from a stranger must not read
    /etc/shadow or another user's files into its weights)."""
    import onnx

    from export.bundle import inside_folder

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError types
        raise CompactError(f"{path} is not a readable ONNX model ({type(e).__name__}); re-export it") from None

    def tensors(graph):
        yield from graph.initializer
        for node in graph.node:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("g"):
                    yield from tensors(a.g)
                for g in a.graphs:
                    yield from tensors(g)

    for t in tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            inside_folder(path.parent, loc, f"{path.name}: tensor {t.name!r} external data location")


def ort_session(path: Path, threads: int = 0, optimized: bool = True, spin: bool = False):
    """A CPU session for compact's own runs (parity, `compact eval` on bundles, quantize's candidates).
    Worker threads sleep between calls (`spin=False`): a spinning pool of one session steals the cores the next
    session's call needs (image then text: 1.6x slower on ViT-B/32 with spinning; `python -m bench.photo_then_query`)."""
    import onnxruntime as ort

    check_external_data(path)
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def session_runner(sess) -> Runner:
    names = {i.name for i in sess.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]

    return run


@register_target
class OnnxTarget(ExportTarget):
    name = "onnx"
    description = "ONNX graphs (dynamic batch and sequence) for onnxruntime and any ONNX runtime"
    packages = ("onnx", "onnxscript", "onnxruntime")
    extra = "onnx"

    def export(self, tower: Tower, out: Path, cfg) -> list[Artifact]:
        path = out / f"{tower.name}.onnx"
        opset = cfg.opset or DEFAULT_OPSET
        graphs = cfg.tower_graphs.get(tower.name, "both" if cfg.optimize else "plain")
        heads, hidden = _attention_shape(tower) if graphs != "plain" else (0, 0)
        if not heads and graphs == "optimized":
            log.info("the %s tower has no attention for ORT's optimizer; writing its plain graph", tower.name)
        arts = []
        info = None
        if graphs != "optimized" or not heads:
            info = export_onnx(tower, path, opset)
            details = {**info, "ops": sum(op_counts(path).values()), "parity_runtime": "onnxruntime CPU"}
            arts.append(Artifact(path.name, tower.name, "fp32", details))
        if heads:
            opt = out / f"{tower.name}.opt.onnx"
            from export.ort_attention import fusable

            src, opt_info = path, info
            if fusable(tower.module):
                tmp = out / f"{tower.name}.fused.tmp.onnx"
                try:
                    opt_info = export_onnx(tower, tmp, opset, fuse_attention=True)
                    src = tmp
                except CompactError as e:  # keep the optimizer's other fusions on the plain graph
                    log.warning("%s; the optimised graph keeps unfused attention", e)
                    opt_info = {"fused_attention": 0, "fused_attention_error": str(e)}
            if src == path and info is None:  # the optimized graph alone: its plain source is a temporary
                src = out / f"{tower.name}.plain.tmp.onnx"
                opt_info = {**export_onnx(tower, src, opset), **(opt_info or {})}
            elif src == path:
                opt_info = {**info, **(opt_info or {})}
            fused = ort_optimize(src, opt, tower, heads, hidden)
            if src != path:
                src.unlink()
            arts.append(Artifact(opt.name, tower.name, "fp32", {**opt_info, "ort_optimizer": fused,
                                                                  "optimized": True,
                                                                  "parity_runtime": "onnxruntime CPU"}))
        return arts

    def runner(self, artifact: Artifact, bundle: Path, cfg) -> Optional[Runner]:
        return session_runner(ort_session(bundle / artifact.path))


def _attention_shape(tower: Tower) -> tuple[int, int]:
    """(heads, width) of the tower's first attention block, for ORT's fusion passes; (0, 0) if unknown."""
    model = tower.module.model
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return 0, 0
    sub = cfg.vision if tower.name == "image" else cfg.text
    if tower.name == "image" and sub.type != "vit":
        return 0, 0
    return int(sub.heads_at(0)), int(sub.width)
