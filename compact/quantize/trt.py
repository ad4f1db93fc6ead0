"""What the TensorRT quantization methods share: the placement check of an explicit-quantization (QDQ) graph,
the stacked calibration batch modelopt wants, and engine timing where TensorRT runs.

TensorRT builds explicitly quantized engines from Q/DQ nodes: it fuses a DequantizeLinear into the consuming
GEMM/conv and needs symmetric int8 (zero point 0). A Q/DQ pair elsewhere (LayerNorm, Softmax, Add) forces a
reformat layer and an fp32 round trip. `placement()` counts exactly those things in an ONNX graph, so the two
methods can be compared here even without TensorRT; their speed on TensorRT is measured only where it imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GEMM_OPS = ("MatMul", "Gemm", "Conv")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def placement(path: Path) -> dict:
    """Q/DQ facts of the graph at `path`: GEMMs with both inputs dequantized, asymmetric zero points, Q/DQ feeding
    non-GEMM ops (each a TensorRT reformat), and the integer types used."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in g.node:  # Constant nodes hold zero points too (modelopt writes some that way)
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            inits[n.output[0]] = n.attribute[0].t

    def dequantized(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    gemms = [n for n in g.node if n.op_type in GEMM_OPS]
    q_gemms = [n for n in gemms if len(n.input) >= 2 and dequantized(n.input[0]) and dequantized(n.input[1])]
    asym, dtypes = 0, set()
    for n in g.node:
        if n.op_type in QDQ_OPS and len(n.input) >= 3 and n.input[2] in inits:
            zp = numpy_helper.to_array(inits[n.input[2]])
            dtypes.add(str(zp.dtype))
            asym += int(np.any(zp != 0))
    stray = 0
    for n in g.node:
        if n.op_type == "DequantizeLinear" and not (n.input and n.input[0] in inits):
            stray += sum(1 for c in consumers.get(n.output[0], []) if c.op_type not in GEMM_OPS + QDQ_OPS)
    return {"gemms": len(gemms), "gemms_int8": len(q_gemms), "qdq_nodes": sum(n.op_type in QDQ_OPS for n in g.node),
            "asymmetric_zero_points": asym, "zero_point_dtypes": sorted(dtypes),
            "dq_into_non_gemm": stray, "trt_symmetric": asym == 0 and dtypes <= {"int8"}}


def stacked_calibration(ctx, tower: str, limit: int = 256) -> dict[str, np.ndarray]:
    """One batch holding the whole calibration set (modelopt takes arrays, not a reader). Text is re-tokenized
    together, every language interleaved, padded to the longest caption."""
    if tower == "image":
        return {"pixel_values": np.ascontiguousarray(ctx.calib.pixels[:limit])}
    texts = [t for lang in ctx.calib.langs for t in ctx.calib.texts[lang]]
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))[:limit]]
    tb = ctx.model.tokenize(texts)
    if ctx.model.variable_length_text:
        tb = tb.trimmed()
    return {"input_ids": tb.ids.numpy().astype(np.int64), "attention_mask": tb.mask.numpy().astype(np.int64)}


def trt_latency_note() -> str:
    from export.trt_engine import engine_support

    ok, why = engine_support()
    return f"TensorRT on {why}" if ok else f"not measured on TensorRT ({why}); timed on onnxruntime CPU instead"


def carry_metadata(src: Path, dst: Path) -> None:
    """Copy the TRT-ready ONNX's metadata (its optimization profiles) onto the quantized graph, which the
    quantizers write without it; `build_engine.sh` and the engine builder read the profiles from there."""
    import onnx

    a = onnx.load(str(src), load_external_data=False)
    b = onnx.load(str(dst))
    have = {p.key for p in b.metadata_props}
    for p in a.metadata_props:
        if p.key not in have:
            b.metadata_props.add(key=p.key, value=p.value)
    onnx.save(b, str(dst))
